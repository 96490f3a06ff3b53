"""A traffic step's life: started, held for its window while live traffic flows, judged against
the champion, ended; or failed, which rolls back first.

A step is measured as the difference of two scrapes of ``/metrics`` (``judge``), read from the
application or from Prometheus (``rollout.metrics_source``: ``prometheus_source.step_metrics``).
It is held until both its ``hold_seconds`` have passed and the challenger has answered
``min_requests``; errors
fail it as soon as enough calls show them; ``rollout.max_hold_seconds`` without enough traffic
fails it too (too little to judge).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from tasks.common.outcomes import Fail, Skip
from tasks.rollout import judge
from tasks.rollout.application import say, slot_version
from tasks.rollout.prometheus_source import step_metrics
from tasks.rollout.record import FAILED, PASSED, RolloutRecord, StepRecord, save
from tasks.rollout.rollback import rollback
from tasks.rollout.scores import BaseRate

if TYPE_CHECKING:
    from config import Settings
    from tasks.serving.client import ServingClient


class StepFailed(Fail):
    """A step's judgment failed; traffic is already back on the champion."""


@dataclass(frozen=True)
class Hold:
    """How a traffic step is held: on which route, how long at least, how many calls at least."""

    route: str
    hold_seconds: float
    min_requests: int


def start_step(record: RolloutRecord, name: str, kind: str, **kw: Any) -> StepRecord:
    """A new running step of ``record``; ``Skip`` when the rollout already ended."""
    if record.finished:
        raise Skip(f"the rollout already ended: {record.status} ({record.reason})")
    return record.start(name, kind, **kw)


def fail_step(
    settings: Settings, client: ServingClient, record: RolloutRecord, step: StepRecord, reason: str
) -> NoReturn:
    """End ``step`` as failed, roll the rollout back, and raise ``StepFailed``."""
    step.end(FAILED, reason)
    say(f"{step.name} failed: {reason}")
    rollback(settings, record, reason=f"{step.name}: {reason}", client=client)
    raise StepFailed(f"rolled back: {step.name}: {reason}")


def _measure(
    settings: Settings, client: ServingClient, before: judge.Samples, record: RolloutRecord, route: str
) -> judge.Measure:
    """The challenger's numbers on ``route`` since the ``before`` scrape."""
    return judge.measure(
        judge.delta(step_metrics(settings, client), before),
        route=route,
        version=record.version,
        champion_version=record.champion_version,
        reference=record.champion_reference,
        min_sample=settings.rollout.judge.min_sample,
    )


def _record_measure(step: StepRecord, m: judge.Measure) -> None:
    step.measured, step.requests = m.summary(), m.requests


def hold(
    settings: Settings,
    client: ServingClient,
    record: RolloutRecord,
    step: StepRecord,
    how: Hold,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> judge.Measure:
    """Keep the step's traffic for its window, then measure it; fail early on errors."""
    cfg = settings.rollout
    started = time.monotonic()
    before = step_metrics(settings, client)
    while True:
        sleep(cfg.poll_seconds)
        elapsed = time.monotonic() - started
        try:
            m = _measure(settings, client, before, record, how.route)
        except judge.CounterReset as exc:
            fail_step(settings, client, record, step, str(exc))
        enough = m.requests >= how.min_requests
        if enough and not judge.error_check(m, cfg.judge).passed:
            _record_measure(step, m)
            return m  # judged (and failed) now: no need to keep sending traffic to a failing model
        if enough and elapsed >= how.hold_seconds:
            return m
        if elapsed >= cfg.max_hold_seconds:
            _record_measure(step, m)
            fail_step(
                settings,
                client,
                record,
                step,
                f"too little traffic to judge: the challenger answered {m.requests} of the "
                f"{how.min_requests} requests needed in {elapsed:.0f} s",
            )
        slot = slot_version(client.status(), "challenger")
        if slot != record.version:
            fail_step(
                settings,
                client,
                record,
                step,
                f"the challenger slot now serves {slot!r}, not {record.version}",
            )


def judge_step(
    settings: Settings, client: ServingClient, record: RolloutRecord, step: StepRecord, m: judge.Measure
) -> None:
    """Hold the step's measurements to ``rollout.judge``: passed and saved, or failed (rolled back)."""
    cfg = settings.rollout.judge
    found = judge.checks(m, cfg, BaseRate.from_dict(record.base_rate))
    step.checks = [c.as_dict() for c in found]
    _record_measure(step, m)
    if ref := judge.reference(m, cfg.min_sample):
        record.champion_reference = ref
    if reason := judge.failed(found):
        fail_step(settings, client, record, step, reason)
    step.end(PASSED)
    save(settings, record)
    say(
        f"{step.name} passed: {m.requests} challenger calls ({m.champion.calls} champion), error rate "
        f"{m.error_rate:.4f}, service p99 {m.service_p99_ms} ms, score mean {m.challenger.score_mean}, "
        f"PSI {m.score_psi}"
    )
