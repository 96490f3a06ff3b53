"""The deploy DAG's shape, from config: which rollout steps run, in which order, after what.

``steps(settings)`` is the whole chain: ``begin``, ``smoke``, ``shadow``, one ``canary_<n>`` per
``rollout.canary`` entry, ``promote``, and the ``rollback`` teardown that runs after every step
whatever happened (rolling back a rollout a dead task left half done; a no-op otherwise). The
DAG file loops over it; the operators are chosen per ``StepSpec.kind``.

Imported while the DAG file is parsed: plain Python only, nothing heavy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config import Settings

BEGIN, SMOKE, SHADOW, CANARY, PROMOTE, ROLLBACK = "begin", "smoke", "shadow", "canary", "promote", "rollback"
KINDS = (BEGIN, SMOKE, SHADOW, CANARY, PROMOTE, ROLLBACK)

ALL_SUCCESS, NONE_FAILED = "all_success", "none_failed"
"""Airflow trigger rules, by the names Airflow gives them."""


@dataclass(frozen=True)
class StepSpec:
    """One task of the rollout chain."""

    task_id: str
    """The task id, and the step's name in the rollout record."""
    kind: str
    """One of ``KINDS``: what the task does."""
    upstream: tuple[str, ...] = ()
    """Task ids that run before it."""
    trigger_rule: str = ALL_SUCCESS
    """``none_failed`` after ``shadow``: a skipped shadow (first model, shadow off) lets the
    canary steps and ``promote`` run."""
    canary_index: int | None = None
    """For a canary step: its entry in ``rollout.canary``."""
    teardown_of: str | None = None
    """For the teardown: the setup task it belongs to (the run's state is the steps' own)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown rollout step kind {self.kind!r}; one of {KINDS}")
        if (self.kind == CANARY) != (self.canary_index is not None):
            raise ValueError(f"{self.task_id}: a canary step, and only a canary step, has a canary_index")


def steps(settings: Settings) -> list[StepSpec]:
    """The deploy DAG's tasks in order, each after the one before it; the teardown last."""
    chain = [StepSpec(BEGIN, BEGIN), StepSpec(SMOKE, SMOKE, (BEGIN,)), StepSpec(SHADOW, SHADOW, (SMOKE,))]
    for index, canary in enumerate(settings.rollout.canary):
        after = (chain[-1].task_id,)
        chain.append(StepSpec(canary.name, CANARY, after, NONE_FAILED, canary_index=index))
    chain.append(StepSpec(PROMOTE, PROMOTE, (chain[-1].task_id,), NONE_FAILED))
    every_step = tuple(spec.task_id for spec in chain[1:])
    return [*chain, StepSpec(ROLLBACK, ROLLBACK, every_step, teardown_of=BEGIN)]


def announced_version(extras: Iterable[Mapping[str, Any]]) -> str | None:
    """The version announced by the newest registered-model asset event that has one (``extras``:
    the events' ``extra``, oldest first, as ``plugins.assets.event_extras`` gives them)."""
    versions = [str(extra["version"]) for extra in extras if extra.get("version") is not None]
    return versions[-1] if versions else None
