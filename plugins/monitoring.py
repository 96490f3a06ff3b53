"""The monitor DAG's Airflow pieces: a deferrable sensor on the inference log and report links.

``NewPredictionsSensor`` waits until the inference log holds ``min_new_predictions`` live
predictions (``monitor.routes``) since the end of the last monitored window (or, with none yet,
since ``monitor.first_window_hours`` before now). It checks once in the worker; when there are
too few it defers to ``NewPredictionsTrigger``, which polls in the triggerer (the Parquet read in a
thread, so the triggerer's event loop never blocks) and frees the worker slot while it waits. The
sensor returns the window to monitor: ``{"count", "start", "end"}`` (ISO 8601, UTC).

The window ends ``monitor.log_lag_seconds`` before the time of the check, so predictions still
buffered by serving's inference-log writers land before their window is read.

The window's bounds and the count are ``tasks.monitoring.sensing``'s (``check``): the sensor and
the trigger only schedule the checks.

``MonitoringReportLink`` and ``MonitoringSummaryLink`` are the task page's "Drift report" and
"Monitoring summary" buttons: they read the ``monitoring_links`` XCom (``report_links``), which
points into the airloop UI plugin (``/airloop/reports/monitoring/...``). ``monitoring_task`` is
``@task`` with those buttons: it pushes the links of the window its task returned, and turns
``Skip`` / ``Fail`` into Airflow's skip / fail-without-retry (``plugins.outcomes``).

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

from config import load_config
from plugins.links import XComLink
from plugins.outcomes import airflow_outcomes
from tasks.common.clock import utc
from tasks.common.reports import report_url
from tasks.monitoring.results import SUMMARY

if TYPE_CHECKING:
    from airflow.sdk import Context

    from config import Settings

LINKS_XCOM_KEY = "monitoring_links"
READY, TIMEOUT, ERROR = "ready", "timeout", "error"


def check(settings: Settings, start: Any = None, end: Any = None) -> dict[str, Any]:
    """``tasks.monitoring.sensing.check`` as the sensor's XCom and the trigger's events carry it."""
    from tasks.monitoring import sensing  # noqa: PLC0415 - pyarrow and pandas stay out of DAG parsing

    return sensing.check(settings, start, end).as_dict()


def first_start(settings: Settings, end: Any = None) -> str:
    """Where a window without a given start starts (``sensing.window_start``), as ISO 8601."""
    from tasks.monitoring import sensing  # noqa: PLC0415 - pyarrow and pandas stay out of DAG parsing

    return sensing.window_start(settings, None, sensing.window_end(settings, end)).isoformat()


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
        settings = load_config()
        if self.start is None:  # fixed once: the next polls count from the same start
            self.start = first_start(settings, self.end)
        return check(settings, self.start, self.end)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = utc(self.timeout_at) if self.timeout_at else None
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
        seen = check(load_config(), self.start or None, self.end or None)
        return PokeReturnValue(is_done=self._enough(seen), xcom_value=seen)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        seen = check(load_config(), self.start or None, self.end or None)
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


def report_links(settings: Settings, window_id: str) -> dict[str, str]:
    """The ``monitoring_links`` XCom of a window: its drift report and the summary page."""
    kind = settings.monitor.reports_dir
    return {"report": report_url(kind, window_id), "summary": report_url(kind, SUMMARY)}


def running_dag_runs(ti: Any, dag_id: str) -> int:
    """How many runs of ``dag_id`` are queued or running (what the monitor's decide task is told)."""
    return int(ti.get_dr_count(dag_id=dag_id, states=["queued", "running"]))


def dag_run_state(ti: Any, dag_id: str) -> Callable[[str], str]:
    """Airflow's state of a run of ``dag_id`` by run id (``missing``: no such run), through the
    task's own API: how the monitor's decide task learns what became of the retrain it triggered."""

    def state(run_id: str) -> str:
        if not ti.get_dr_count(dag_id=dag_id, run_ids=[run_id]):
            return "missing"
        found = ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)
        return str(getattr(found, "value", found))  # the SDK's DagRunState enum, or its text

    return state


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
    """``@task`` with the "Drift report" and "Monitoring summary" buttons, pointing at the window
    its callable returned (a dict with ``window_id``), and with ``Skip``/``Fail`` as task states."""

    operator_extra_links = (MonitoringReportLink(), MonitoringSummaryLink())
    custom_operator_name = "@monitoring_task"

    def execute(self, context: Context) -> Any:
        with airflow_outcomes():
            result = super().execute(context)
        window_id = result.get("window_id") if isinstance(result, dict) else None
        if window_id:
            context["ti"].xcom_push(key=LINKS_XCOM_KEY, value=report_links(load_config(), str(window_id)))
        return result


def monitoring_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
    """Like ``@task``, with the monitoring report buttons (``MonitoringTaskOperator``)."""
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=MonitoringTaskOperator, **kwargs
    )
