"""Whether a window that calls for a retrain may start one now, and what became of the last one.

A triggered window retrains unless

- a retrain is running (``blocked_by="running"``): the train DAG has a queued or running run, or
  the last train run the monitor triggered is still queued or running;
- the last retrain started less than ``monitor.decision.cooldown_hours`` ago
  (``blocked_by="cooldown"``): no retrain storms;
- **the last retrain the monitor triggered failed** (its train run ended ``failed``, or was never
  created because the trigger itself failed): the cooldown does not apply, since nothing was
  retrained. The next triggered window retries once ``monitor.decision.failed_retry_hours`` have
  passed since that retrain was decided (``blocked_by="failed_retry"`` until then), and the
  decision that retries names the failed run (``retry_of``).

The outcome of the last retrain (``LastRetrain``: its train run id and Airflow's state of it) is
recorded with every decision, so the summary page says when the loop is stalled on a failed
retrain, and the next decision knows it without asking again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from config import Settings

RUNNING, COOLDOWN, FAILED_RETRY = "running", "cooldown", "failed_retry"
RUN_PREFIX = "monitor__"
"""The train DAG's run id for a retrain the monitor triggers: ``monitor__<window id>``."""
FAILED, MISSING = "failed", "missing"
"""Train run states that mean nothing was retrained (``missing``: the run was never created)."""
IN_FLIGHT = ("queued", "running")


def text(value: Any) -> str | None:
    """A text column of a stored decision row (None: empty, or missing in a row written before
    the column existed)."""
    return value if isinstance(value, str) and value else None


def run_id_for(window_id: str) -> str:
    """The train run a retrain decided on ``window_id`` triggers."""
    return f"{RUN_PREFIX}{window_id}"


@dataclass(frozen=True)
class LastRetrain:
    """The latest retrain the monitor decided: its train run and what Airflow says of it."""

    run_id: str
    decided_at: pd.Timestamp
    state: str | None
    """``queued``, ``running``, ``success``, ``failed``, ``missing``; None: not known (no Airflow)."""

    @property
    def failed(self) -> bool:
        return self.state in (FAILED, MISSING)

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT

    def describe(self) -> str:
        what = "was never created" if self.state == MISSING else (self.state or "state unknown")
        return f"train run {self.run_id} (decided {self.decided_at.isoformat()}): {what}"


@dataclass(frozen=True)
class HoldBack:
    """What stands in a triggered window's way (``blocked_by`` None: it retrains)."""

    blocked_by: str | None
    until: str | None
    detail: str
    retry_of: str | None = None


def hold_back(
    settings: Settings,
    *,
    reason: str,
    decided: pd.Timestamp,
    running: bool,
    last: pd.Timestamp | None,
    last_retrain: LastRetrain | None,
) -> HoldBack:
    """Whether a window triggered for ``reason`` retrains at ``decided``; ``last``: the latest
    retrain start known from any source; ``last_retrain``: the monitor's own latest one."""
    cfg = settings.monitor.decision
    if running or (last_retrain is not None and last_retrain.in_flight):
        return HoldBack(RUNNING, None, f"{reason} would retrain, but a retrain is running")
    failed = last_retrain if last_retrain is not None and last_retrain.failed else None
    if failed is not None and last is not None and failed.decided_at < last:
        failed = None  # a retrain started since (the weekly one, by hand): the cooldown applies
    hours = min(cfg.failed_retry_hours, cfg.cooldown_hours) if failed else cfg.cooldown_hours
    if last is not None and decided - last < timedelta(hours=hours):
        until = (last + timedelta(hours=hours)).isoformat()
        if failed is not None:
            why = f"the last retrain failed ({failed.describe()}); retry after {hours:g} h, from {until}"
            return HoldBack(FAILED_RETRY, until, f"{reason} would retrain, but {why}")
        why = f"the last retrain started {last.isoformat()}, within the {hours:g} h cooldown (until {until})"
        return HoldBack(COOLDOWN, until, f"{reason} would retrain, but {why}")
    if failed is not None:
        return HoldBack(
            None, None, f"retry ({reason}) after a failed retrain, {failed.describe()}", failed.run_id
        )
    return HoldBack(None, None, f"retrain ({reason})")
