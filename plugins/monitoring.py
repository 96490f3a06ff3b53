"""The monitor DAG's Airflow pieces: a deferrable sensor on the inference log and report links.

``NewPredictionsSensor`` waits until the inference log holds ``min_new_predictions`` live
predictions (``monitor.routes``) since the end of the last monitored window (or, with none yet,
since ``monitor.first_window_hours`` before now). It checks once in the worker; when there are
too few it defers to ``NewPredictionsTrigger``, which polls in the triggerer (the Parquet read in a
thread, so the triggerer's event loop never blocks) and frees the worker slot while it waits. The
sensor returns the window to monitor: ``{"count", "start", "end"}`` (ISO 8601, UTC).

The window ends ``monitor.log_lag_seconds`` before the time of the check, so predictions still
buffered by serving's inference-log writers land before their window is read.

``MonitoringReportLink`` and ``MonitoringSummaryLink`` are the task page's "Drift report" and
"Monitoring summary" buttons: they read the ``monitoring_links`` XCom the monitor's tasks push
(``report_links``), which points into the airloop UI plugin (``/airloop/reports/monitoring/...``).
``monitoring_task`` is ``@task`` with those buttons.

Nothing heavy is imported at module level: the monitor DAG imports this file at parse time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.bases.decorator import task_decorator_factory
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout
from airflow.triggers.base import BaseTrigger, TriggerEvent

from plugins.links import XComLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from config import Settings

LINKS_XCOM_KEY = "monitoring_links"
UI_PREFIX = "/airloop"  # plugins.airloop_ui.PREFIX (not imported: that module loads FastAPI)
READY, TIMEOUT, ERROR = "ready", "timeout", "error"


# --- the window's bounds -------------------------------------------------------------------------


def _utc(value: Any) -> datetime:
    ts = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _settings() -> Settings:
    from config import load_config

    return load_config()


def window_end(settings: Settings, end: Any = None, now: datetime | None = None) -> datetime:
    """``end`` if given, else ``monitor.log_lag_seconds`` before ``now`` (default: the clock)."""
    if end:
        return _utc(end)
    now = now or datetime.now(UTC)
    return now - timedelta(seconds=settings.monitor.log_lag_seconds)


def window_start(settings: Settings, start: Any = None, end: datetime | None = None) -> datetime:
    """``start`` if given, else the end of the last monitored window, else
    ``monitor.first_window_hours`` before ``end``."""
    if start:
        return _utc(start)
    from tasks.monitoring import store

    last = store.last_window_end(settings)
    if last is not None:
        return last.to_pydatetime()
    end = end or window_end(settings)
    return end - timedelta(hours=settings.monitor.first_window_hours)


def check(settings: Settings, start: Any = None, end: Any = None) -> dict[str, Any]:
    """Count the live predictions in the window this check would monitor (blocking: reads the
    time and route columns of the inference log's hours in range)."""
    from tasks.monitoring.window import count_predictions

    hi = window_end(settings, end)
    lo = window_start(settings, start, hi)
    count = count_predictions(settings, lo, hi) if lo < hi else 0
    return {"count": count, "start": lo.isoformat(), "end": hi.isoformat()}


# --- trigger ---------------------------------------------------------------------------------------


def _enough(log: Any, seen: dict[str, Any], needed: int) -> bool:
    """Whether a count reached ``needed``; logged either way (the sensor and the trigger)."""
    log.info("%d of %d live predictions in [%s, %s)", seen["count"], needed, seen["start"], seen["end"])
    return seen["count"] >= needed


class NewPredictionsTrigger(BaseTrigger):
    """Polls the inference log until ``min_new_predictions`` live predictions are in the window.

    :param min_new_predictions: how many live predictions make a window worth monitoring.
    :param start: window start (ISO 8601); empty: the end of the last monitored window (or
        ``monitor.first_window_hours`` before the end), looked up once.
    :param end: window end (ISO 8601); empty: ``monitor.log_lag_seconds`` before each poll.
    :param poke_interval: seconds between polls.
    :param timeout_at: when to give up (ISO 8601): a ``timeout`` event; empty: never.
    :param max_errors: consecutive failed polls (storage trouble) before an ``error`` event.

    Events: ``{"status": "ready", "count", "start", "end"}``, ``{"status": "timeout", ...}`` with
    the last count, or ``{"status": "error", "message"}``. The configuration comes from the
    triggerer's environment (``config.load_config``), like every other Airflow component's.
    """

    def __init__(
        self,
        *,
        min_new_predictions: int,
        start: str | None = None,
        end: str | None = None,
        poke_interval: float = 60.0,
        timeout_at: str | None = None,
        max_errors: int = 3,
    ) -> None:
        super().__init__()
        self.min_new_predictions = int(min_new_predictions)
        self.start = start or None
        self.end = end or None
        self.poke_interval = float(poke_interval)
        self.timeout_at = timeout_at or None
        self.max_errors = int(max_errors)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "min_new_predictions": self.min_new_predictions,
                "start": self.start,
                "end": self.end,
                "poke_interval": self.poke_interval,
                "timeout_at": self.timeout_at,
                "max_errors": self.max_errors,
            },
        )

    def _check(self) -> dict[str, Any]:
        settings = _settings()
        if self.start is None:  # fixed once: the next polls count from the same start
            self.start = window_start(settings, None, window_end(settings, self.end)).isoformat()
        return check(settings, self.start, self.end)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = _utc(self.timeout_at) if self.timeout_at else None
        errors, seen = 0, None
        while True:
            try:
                seen = await asyncio.to_thread(self._check)
                errors = 0
            except Exception as exc:  # noqa: BLE001 - storage trouble: retried, then reported
                errors += 1
                self.log.warning("counting new predictions failed (%d/%d): %s", errors, self.max_errors, exc)
                if errors >= self.max_errors:
                    yield TriggerEvent({"status": ERROR, "message": f"{type(exc).__name__}: {exc}"})
                    return
            if seen is not None and _enough(self.log, seen, self.min_new_predictions):
                yield TriggerEvent({"status": READY, **seen})
                return
            if deadline is not None and datetime.now(UTC) >= deadline:
                yield TriggerEvent({"status": TIMEOUT, "timeout_at": self.timeout_at, **(seen or {})})
                return
            wait = self.poke_interval
            if deadline is not None:
                wait = max(0.0, min(wait, (deadline - datetime.now(UTC)).total_seconds()))
            await asyncio.sleep(wait)


# --- sensor ----------------------------------------------------------------------------------------


class NewPredictionsSensor(BaseSensorOperator):
    """Waits for ``min_new_predictions`` live predictions since the last monitored window.

    :param min_new_predictions: how many make a window (``monitor.min_new_predictions``).
    :param start: window start (templated, ISO 8601); empty: the end of the last monitored window.
    :param end: window end (templated, ISO 8601); empty: the time of the check, less
        ``monitor.log_lag_seconds``.
    :param deferrable: wait in the triggerer (default) rather than in a worker slot.

    Returns ``{"count", "start", "end"}``: the window the monitor's next task measures.
    ``poke_interval`` and ``timeout`` (seconds) are ``BaseSensorOperator``'s.
    """

    template_fields: Sequence[str] = ("start", "end")
    ui_color = "#fde0c5"

    def __init__(
        self,
        *,
        min_new_predictions: int,
        start: str | None = None,
        end: str | None = None,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.min_new_predictions = int(min_new_predictions)
        self.start = start
        self.end = end
        self.deferrable = deferrable

    def _enough(self, seen: dict[str, Any]) -> bool:
        return _enough(self.log, seen, self.min_new_predictions)

    def poke(self, context: Context) -> PokeReturnValue:
        seen = check(_settings(), self.start or None, self.end or None)
        return PokeReturnValue(is_done=self._enough(seen), xcom_value=seen)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        settings = _settings()
        seen = check(settings, self.start or None, self.end or None)
        if self._enough(seen):
            return seen
        timeout_at = datetime.now(UTC) + timedelta(seconds=self.timeout)
        self.defer(
            trigger=NewPredictionsTrigger(
                min_new_predictions=self.min_new_predictions,
                start=seen["start"],
                end=self.end or None,
                poke_interval=self.poke_interval,
                timeout_at=timeout_at.isoformat(),
            ),
            method_name="execute_complete",
            # a net under the trigger's own timeout event, should the triggerer be gone
            timeout=timedelta(seconds=self.timeout + max(2 * self.poke_interval, 60.0)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        event = dict(event or {})
        status = event.pop("status", None)
        if status == READY:
            self.log.info(
                "window ready: %d live predictions in [%s, %s)", event["count"], event["start"], event["end"]
            )
            return event
        if status == TIMEOUT:
            raise AirflowSensorTimeout(
                f"only {event.get('count', 0)} of {self.min_new_predictions} live predictions since "
                f"{event.get('start', self.start)} by {event.get('timeout_at')}: not enough to monitor"
            )
        raise AirflowException(f"the new-predictions trigger failed: {event.get('message', event)}")


# --- report links ----------------------------------------------------------------------------------


def report_url(kind: str, name: str) -> str:
    """Where the airloop UI plugin serves a report."""
    return f"{UI_PREFIX}/reports/{kind}/{name}"


def report_links(settings: Settings, window_id: str) -> dict[str, str]:
    """The ``monitoring_links`` XCom of a window: its drift report and the summary page."""
    from tasks.monitoring.pages import INDEX

    kind = settings.monitor.reports_dir
    return {"report": report_url(kind, window_id), "summary": report_url(kind, INDEX.removesuffix(".html"))}


class _MonitoringLink(XComLink):
    source_key = LINKS_XCOM_KEY


class MonitoringReportLink(_MonitoringLink):
    """The window's Evidently report: drift test, score and distributions per input column."""

    name = "Drift report"
    field = "report"


class MonitoringSummaryLink(_MonitoringLink):
    """The monitor's summary page: drift share, score drift and live ROC AUC over time, decisions."""

    name = "Monitoring summary"
    field = "summary"


class MonitoringTaskOperator(_PythonDecoratedOperator):
    """``@task`` with the "Drift report" and "Monitoring summary" buttons."""

    operator_extra_links = (MonitoringReportLink(), MonitoringSummaryLink())
    custom_operator_name = "@monitoring_task"


def monitoring_task(python_callable: Callable | None = None, **kwargs: Any) -> Any:
    """Like ``@task``; the task pushes ``report_links(...)`` as the ``monitoring_links`` XCom."""
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=MonitoringTaskOperator, **kwargs
    )
