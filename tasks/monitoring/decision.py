"""Retrain or not, and why: one decision per monitored window, every one recorded.

A window *triggers* when

- **drift**: the share of drifted input columns reached ``monitor.drift.share_threshold``, or the
  score drifted (when ``monitor.decision.on_prediction_drift``), in this window and in the
  ``confirm_windows - 1`` windows before it of the same model version (one noisy window does not
  retrain a model);
- **performance**: live performance was judged and at least one metric fell below the champion's
  hold-out number by more than its tolerance (the lookback already spans many windows, so no
  confirmation is needed);
- **estimated performance** (only with ``monitor.estimation.trigger``, off by default): the
  performance estimated from the champion's recent scores (``estimation``, labelled or not) is
  trusted and fell below the same estimate of its hold-out by more than the same tolerances.

The reason is ``performance`` when performance triggered (the labels say the model is wrong), else
``estimated_performance``, else ``drift``; ``triggers`` lists every threshold crossed, with its
numbers. A triggered window retrains unless a retrain is running, the cooldown holds it back, or the
last retrain failed and its shorter back-off has not passed (``retrain.hold_back``). The last
retrain is the later of what the caller knows (the train DAG's last run, from Airflow) and the last
retrain this monitor decided (from the store), so a storm is stopped even when the caller knows
nothing; the state of the train run that retrain triggered (from Airflow, through ``run_state``) is
recorded with the decision (``last_retrain_run_id``, ``last_retrain_state``), so a failed retrain is
a visible state.

``decide`` is pure; ``decide_and_record`` reads the store, decides once per window (a retried
task gets the recorded decision back instead of a second one) and records the decision.
``decide_window`` and ``retrain_conf`` are what the monitor DAG's ``decide`` and
``should_retrain`` tasks call, on the XCom forms (``as_dict``) of the window and the decision.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from tasks.common.clock import utc_timestamp
from tasks.common.values import json_safe
from tasks.monitoring import estimation, gauges, pages, store
from tasks.monitoring.results import WindowResult
from tasks.monitoring.retrain import (
    COOLDOWN,
    FAILED_RETRY,
    RUNNING,
    LastRetrain,
    hold_back,
    run_id_for,
    text,
)

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)

DRIFT = "drift"
PERFORMANCE = "performance"
ESTIMATED = "estimated_performance"
NONE = "none"
BLOCKED_BY = (RUNNING, COOLDOWN, FAILED_RETRY)
RunState = Callable[[str], str | None]
"""Airflow's state of a train DAG run by id (``missing`` when there is none)."""


@dataclass
class Decision:
    """The decision on one window: what the train DAG is told (``conf``) and what is recorded."""

    window_id: str
    end: str
    decided_at: str
    retrain: bool
    reason: str
    """``drift``, ``performance``, ``estimated_performance`` or ``none``."""
    detail: str
    """One line that says why."""
    triggers: list[str] = field(default_factory=list)
    blocked_by: str | None = None
    """``running``, ``cooldown`` or ``failed_retry`` when a trigger did not lead to a retrain."""
    pending: list[str] = field(default_factory=list)
    """Drift seen but not yet confirmed by enough consecutive windows."""
    cooldown_until: str | None = None
    last_retrain_at: str | None = None
    model_name: str = ""
    model_version: str = ""
    report_uri: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    train_run_id: str | None = None
    """The train DAG run this decision triggers (when it retrains)."""
    retry_of: str | None = None
    """The failed train run this retrain retries."""
    last_retrain_run_id: str | None = None
    last_retrain_state: str | None = None
    """What became of the last retrain the monitor triggered (``retrain.LastRetrain.state``)."""
    replayed: bool = False
    """True when this decision was recorded before (a retried task) and is returned as it was."""

    @property
    def triggered(self) -> bool:
        return self.reason != NONE

    def conf(self) -> dict[str, Any]:
        """The train DAG run's conf: ``reason`` and, under ``drift``, the window and its numbers
        (``tasks.training.context.RunContext`` reads both)."""
        conf: dict[str, Any] = json_safe(
            {
                "reason": self.reason,
                "drift": {
                    "window_id": self.window_id,
                    "window_end": self.end,
                    "model": f"{self.model_name} v{self.model_version}",
                    "triggers": self.triggers,
                    "report_uri": self.report_uri,
                    **self.numbers,
                },
            }
        )
        return conf

    def as_dict(self) -> dict[str, Any]:
        """What XCom gets: every field, and the train run's ``conf`` when it retrains."""
        out: dict[str, Any] = json_safe(asdict(self) | {"conf": self.conf() if self.retrain else None})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """The decision back from ``as_dict()`` (``conf`` is derived, so it is left out)."""
        return cls(**{k: v for k, v in data.items() if k != "conf"})

    def row(self) -> dict[str, Any]:
        return {
            "window_id": self.window_id,
            "end": utc_timestamp(self.end),
            "decided_at": utc_timestamp(self.decided_at),
            "retrain": self.retrain,
            "reason": self.reason,
            "detail": self.detail,
            "triggers": json.dumps(self.triggers),
            "blocked_by": self.blocked_by or "",
            "pending": json.dumps(self.pending),
            "cooldown_until": self.cooldown_until or "",
            "last_retrain_at": self.last_retrain_at or "",
            "model_name": self.model_name,
            "model_version": self.model_version,
            "report_uri": self.report_uri or "",
            "numbers": json.dumps(json_safe(self.numbers)),
            "train_run_id": self.train_run_id or "",
            "retry_of": self.retry_of or "",
            "last_retrain_run_id": self.last_retrain_run_id or "",
            "last_retrain_state": self.last_retrain_state or "",
        }

    @classmethod
    def from_row(cls, row: dict[str, Any], *, replayed: bool = False) -> Decision:
        return cls(
            window_id=str(row["window_id"]),
            end=utc_timestamp(row["end"]).isoformat(),
            decided_at=utc_timestamp(row["decided_at"]).isoformat(),
            retrain=bool(row["retrain"]),
            reason=str(row["reason"]),
            detail=str(row["detail"]),
            triggers=json.loads(row["triggers"] or "[]"),
            blocked_by=row["blocked_by"] or None,
            pending=json.loads(row["pending"] or "[]"),
            cooldown_until=row["cooldown_until"] or None,
            last_retrain_at=row["last_retrain_at"] or None,
            model_name=str(row["model_name"]),
            model_version=str(row["model_version"]),
            report_uri=row["report_uri"] or None,
            numbers=json.loads(row["numbers"] or "{}"),
            train_run_id=text(row.get("train_run_id")),
            retry_of=text(row.get("retry_of")),
            last_retrain_run_id=text(row.get("last_retrain_run_id")),
            last_retrain_state=text(row.get("last_retrain_state")),
            replayed=replayed,
        )


def _drift_lines(settings: Settings, result: WindowResult) -> list[str]:
    """What crossed a drift threshold in this window (empty: nothing)."""
    d = result.drift
    lines = []
    if d.data_drift:
        cols = ", ".join(d.drifted_columns)
        lines.append(
            f"data drift: {len(d.drifted_columns)} of {len(d.tested)} input columns drifted "
            f"(share {d.share:.2f} >= {d.share_threshold:.2f}): {cols}"
        )
    if settings.monitor.decision.on_prediction_drift and d.prediction_drift and d.prediction:
        p = d.prediction
        lines.append(f"prediction drift: score {p.method} {p.score:.4g} (threshold {p.threshold:g})")
    return lines


def _drifted_row(settings: Settings, row: pd.Series) -> bool:
    if bool(row.get("data_drift", False)):
        return True
    return settings.monitor.decision.on_prediction_drift and bool(row.get("prediction_drift", False))


def _consecutive(settings: Settings, result: WindowResult, history: pd.DataFrame | None) -> int:
    """How many windows right before this one (same model version) drifted too."""
    if history is None or history.empty:
        return 0
    before = history[
        (history["window_id"] != result.window_id) & (history["end"] <= utc_timestamp(result.end))
    ]
    before = before.sort_values("end")
    n = 0
    for _, row in before[::-1].iterrows():
        if str(row["model_version"]) != result.model_version or not _drifted_row(settings, row):
            break
        n += 1
    return n


def _when(value: Any) -> pd.Timestamp | None:
    """A time given by a caller (``None`` or empty: not known)."""
    return utc_timestamp(value) if value is not None and str(value) else None


def _blank(result: WindowResult, decided: pd.Timestamp, last: pd.Timestamp | None) -> Decision:
    """The decision on ``result`` before any rule ran: no retrain, the window's numbers."""
    return Decision(
        window_id=result.window_id,
        end=result.end,
        decided_at=decided.isoformat(),
        retrain=False,
        reason=NONE,
        detail="",
        last_retrain_at=last.isoformat() if last is not None else None,
        model_name=result.model_name,
        model_version=result.model_version,
        report_uri=result.report_uri,
        numbers=result.numbers(),
    )


def _hold_back(
    settings: Settings,
    out: Decision,
    *,
    running: bool,
    last: pd.Timestamp | None,
    last_retrain: LastRetrain | None,
) -> None:
    """A triggered decision retrains unless ``retrain.hold_back`` says what stands in its way."""
    decided = utc_timestamp(out.decided_at)
    held = hold_back(
        settings, reason=out.reason, decided=decided, running=running, last=last, last_retrain=last_retrain
    )
    out.blocked_by, out.cooldown_until, out.retry_of = held.blocked_by, held.until, held.retry_of
    if held.blocked_by is None:
        out.retrain, out.train_run_id = True, run_id_for(out.window_id)
        out.detail = f"{held.detail}: " + "; ".join(out.triggers)
    else:
        out.detail = held.detail


def decide(
    settings: Settings,
    result: WindowResult,
    *,
    history: pd.DataFrame | None = None,
    last_retrain_at: Any = None,
    retrain_running: bool = False,
    now: Any = None,
    last_retrain: LastRetrain | None = None,
) -> Decision:
    """Retrain or not after ``result``, given the windows recorded before it (``history``, the
    store's rows), when the last retrain started, whether one is running now, and what became of
    the last retrain the monitor triggered (``last_retrain``)."""
    confirm = settings.monitor.decision.confirm_windows
    last = _when(last_retrain_at)
    out = _blank(result, utc_timestamp(now if now is not None else datetime.now(UTC)), last)
    if last_retrain is not None:
        out.last_retrain_run_id, out.last_retrain_state = last_retrain.run_id, last_retrain.state
    drift_lines = _drift_lines(settings, result)
    if drift_lines:
        seen = _consecutive(settings, result, history) + 1
        if seen >= confirm:
            out.triggers += drift_lines
        else:
            out.pending = [*drift_lines, f"drift in {seen} consecutive window(s), {confirm} needed"]
    perf_lines = [f"performance: {line}" for line in result.performance.degraded]
    est_lines = _estimate_lines(settings, result)
    out.triggers += perf_lines + est_lines
    if not out.triggers:
        out.detail = "; ".join(out.pending) if out.pending else _calm(result)
        return out
    out.reason = PERFORMANCE if perf_lines else ESTIMATED if est_lines else DRIFT
    _hold_back(settings, out, running=retrain_running, last=last, last_retrain=last_retrain)
    return out


def _estimate_lines(settings: Settings, result: WindowResult) -> list[str]:
    """The early trigger: a trusted estimate below the hold-out's beyond the tolerances."""
    if not settings.monitor.estimation.trigger or not result.estimate:
        return []
    est = estimation.Estimate.from_dict(result.estimate)
    return [f"estimated performance: {line}" for line in estimation.degraded(settings, est)]


def _calm(result: WindowResult) -> str:
    d, p = result.drift, result.performance
    parts = []
    if d.judged:
        share = d.share
        parts.append(
            f"drift share {share:.2f} < {d.share_threshold:.2f}" if share is not None else "no drift test"
        )
        if d.prediction is not None and d.prediction.judged:
            parts.append(f"score {d.prediction.method} {d.prediction.score:.4g}")
    else:
        parts.append(d.note or "drift not judged")
    parts.append("performance within tolerance" if p.judged else (p.note or "performance not judged"))
    return "no retrain: " + "; ".join(parts)


def _last_retrain(settings: Settings, since: pd.Timestamp, run_state: RunState | None) -> LastRetrain | None:
    """The monitor's latest retrain since ``since``, with Airflow's state of its train run."""
    row = store.last_retrain_decision(settings, since=since)
    if row is None:
        return None
    run_id = text(row.get("train_run_id")) or run_id_for(str(row["window_id"]))
    state = run_state(run_id) if run_state is not None else None
    return LastRetrain(run_id, utc_timestamp(row["decided_at"]), state)


def decide_and_record(
    settings: Settings,
    result: WindowResult,
    *,
    last_retrain_at: Any = None,
    retrain_running: bool = False,
    now: Any = None,
    run_state: RunState | None = None,
) -> Decision:
    """``decide`` with the store's history and last retrain, recorded; once per window.

    ``last_retrain_at``, ``retrain_running`` and ``run_state`` come from Airflow (the train DAG's
    runs); the monitor's own last retrain decision counts too. A window decided before gets its
    recorded decision back (``replayed=True``), so a retried task never triggers a second retrain.
    """
    recorded = store.decision_for(settings, result.window_id, result.end)
    if recorded is not None:
        return Decision.from_row(recorded, replayed=True)
    decided = utc_timestamp(now if now is not None else datetime.now(UTC))
    cfg = settings.monitor.decision
    end = utc_timestamp(result.end)
    history = store.history(settings, since=end - timedelta(days=7), until=end + timedelta(seconds=1))
    # windows that ended within a day and a cooldown of this one's end (live, end is about now;
    # a replay of history decides old windows today)
    last_retrain = _last_retrain(settings, end - timedelta(hours=cfg.cooldown_hours, days=1), run_state)
    ours = last_retrain.decided_at if last_retrain is not None else None
    known = [t for t in (_when(last_retrain_at), ours) if t is not None]
    made = decide(
        settings,
        result,
        history=history,
        last_retrain_at=max(known) if known else None,
        retrain_running=retrain_running,
        now=decided,
        last_retrain=last_retrain,
    )
    store.record_decision(settings, made.row())
    if result.report_uri:
        pages.write_summary(settings, now=end)
    return made


def decide_window(
    settings: Settings, result: dict[str, Any], *, running_retrains: int, run_state: RunState | None = None
) -> dict[str, Any]:
    """The monitor DAG's ``decide`` task: the window's result from XCom (``WindowResult.as_dict()``)
    decided and recorded, given how many train runs are queued or running and Airflow's state of
    a train run by id; the decision for XCom, its numbers pushed to ``monitor.pushgateway_url``."""
    made = decide_and_record(
        settings, WindowResult.from_dict(result), retrain_running=running_retrains > 0, run_state=run_state
    )
    log.info("decision on %s: %s", made.window_id, made.detail)  # the task log says why
    decided = made.as_dict()
    gauges.push_window(settings.monitor.pushgateway_url, decided)  # logs, never raises
    return decided


def retrain_conf(decision: dict[str, Any]) -> dict[str, Any] | Literal[False]:
    """The monitor DAG's ``should_retrain`` rule: the train run's conf when the decision
    (``Decision.as_dict()``) is to retrain, else ``False`` (the trigger is skipped)."""
    made = Decision.from_dict(decision)
    return made.conf() if made.retrain else False
