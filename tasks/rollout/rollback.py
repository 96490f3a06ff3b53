"""Rolling a rollout back: all traffic on the champion, the challenger slot emptied, the version
tagged rejected (``tasks.common.registry.reject``).

A failing step calls it at once, inside the step; the deploy DAG's ``rollback`` teardown calls it
again (``after_failed_task``) for a step whose task died without doing it (a killed worker, a
lost connection). Rolling back is idempotent: a rollout that already ended is left as it is.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tasks.common import registry
from tasks.common.clock import now_iso
from tasks.common.outcomes import Skip
from tasks.rollout.application import client_for, say, slot_version
from tasks.rollout.record import (
    FAILED,
    NOTHING_TO_DO,
    PASSED,
    PROMOTED,
    ROLLED_BACK,
    RUNNING,
    RolloutRecord,
    StepRecord,
    load,
    save,
)
from tasks.serving.client import ServingClient, ServingError

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)


def _restore_traffic(record: RolloutRecord, client: ServingClient) -> None:
    """The champion takes all traffic again, from the version it served when the rollout began."""
    status = client.status()
    if status["challenger_weight"] or status["shadow"]:
        client.set_traffic(challenger_weight=0.0, shadow=False)
    if record.champion_version and slot_version(status, "champion") != record.champion_version:
        client.load("champion", version=record.champion_version)  # a promotion that died halfway
    try:
        client.unload("challenger")
    except ServingError as exc:
        log.warning("could not empty the challenger slot: %s", exc)


def rollback(
    settings: Settings, record: RolloutRecord, *, reason: str, client: ServingClient | None = None
) -> RolloutRecord:
    """All traffic back to the champion, the challenger slot emptied, the version tagged rejected."""
    if record.status in (ROLLED_BACK, PROMOTED, NOTHING_TO_DO):
        return record
    step = StepRecord(name="rollback", kind="rollback", status=RUNNING, started_at=now_iso(), reason=reason)
    _restore_traffic(record, client or client_for(settings))
    failed_step = next((s.name for s in reversed(record.steps) if s.status == FAILED), None)
    registry.reject(
        registry.client(settings.mlflow.url),
        record.model,
        record.version,
        reason,
        failed_step,
        rollout_id=record.id,
        first=record.first,
    )
    step.end(PASSED, reason)
    record.steps.append(step)
    record.end(ROLLED_BACK, reason)
    save(settings, record)
    say(f"rolled back {record.model} version {record.version}: {reason}")
    return record


def after_failed_task(settings: Settings, rollout_id: str) -> RolloutRecord:
    """The deploy DAG's teardown: roll back a rollout that a step's task left running (it died
    before it could); ``Skip`` when the rollout already ended, as it does after every good run."""
    record = load(settings, rollout_id)
    if record.finished:
        raise Skip(f"the rollout already ended: {record.status}")
    running = [s.name for s in record.steps if s.status == RUNNING]
    where = f"step {running[-1]}" if running else "a step"
    return rollback(settings, record, reason=f"{where} did not finish: its task failed")
