"""Run a backtest: build the history once, train the first champion, replay every policy.

``backtest(spec)`` returns the whole result as plain data (``as JSON``): the spec, per policy its
summary (``summary.policy_summary``), every window's numbers and every retrain, and where the
time went. ``report.write`` turns it into the HTML report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tasks.backtest import features, source, yardsticks
from tasks.backtest.models import gate_settings, train
from tasks.backtest.replay import Observe, PolicyRun, Shared, step
from tasks.backtest.spec import policy_settings
from tasks.backtest.summary import policy_summary
from tasks.common.clock import now_iso
from tasks.common.values import json_safe

if TYPE_CHECKING:
    import pandas as pd

    from config import Settings
    from tasks.backtest.history import History
    from tasks.backtest.models import Model
    from tasks.backtest.spec import Spec

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    """Say nothing."""


def first_champion(shared: Shared, spec: Spec, run_settings: Any) -> Model:
    """The champion the replay starts with: trained on the stable training history."""
    h = shared.history
    frame = h.labelled_by(0, h.first_replayed, h.at(h.first_replayed))
    made = train(gate_settings(run_settings, spec.segment_gate), frame, "h0", None)
    if made.model is None:
        failed = "; ".join(f"{c['candidate']}: {c['failed']}" for c in made.candidates)
        raise RuntimeError(f"the first champion failed the gate ({failed}): change train_days or the gate")
    shared.timed("training", time.perf_counter() - made.seconds)
    return made.model


def _feature_context(settings: Settings, spec: Spec, history: History) -> list[pd.DataFrame]:
    """What the first hours' feature windows reach back into: simulated stable hours before a
    simulated history; a project's own first ``train.warmup_hours`` (``source.project``)."""
    if spec.history == source.PROJECT:
        return history.context
    return features.warmup_hours(settings, spec.rows_per_hour, history.start)


def backtest(
    spec: Spec, *, profile: str | None = None, say: Say = _quiet, observe: Observe | None = None
) -> dict[str, Any]:
    """Replay ``spec``'s history through each of its policies' monitor; the result as plain data."""
    started = time.perf_counter()
    settings = [policy_settings(spec, p, profile) for p in spec.policies]
    history = source.build(settings[0], spec)
    spec = history.spec  # a project history replays the hours it holds
    shared = Shared(history)
    shared.timed("history", started)
    started_features = time.perf_counter()
    context = _feature_context(settings[0], spec, history)
    features.add(settings[0], history, context)
    shared.timed("features", started_features)
    rows = sum(len(h) for h in history.hours)
    say(f"history ({spec.history}): {spec.train_hours + spec.hours} hours, {rows} transactions")
    champion = first_champion(shared, spec, settings[0])
    runs = [PolicyRun(p, s, champion) for p, s in zip(spec.policies, settings, strict=True)]
    last = history.first_replayed + spec.hours
    for hour in range(history.first_replayed, last):
        for run in runs:
            step(shared, spec, run, hour, observe)
        if (hour - history.first_replayed + 1) % 24 == 0:
            day = (hour - history.first_replayed + 1) // 24
            say(f"day {day}: " + ", ".join(f"{r.policy.name} {len(r.retrains)} retrains" for r in runs))
    started_yardsticks = time.perf_counter()
    measured = yardsticks.measure(shared, spec, settings[0], champion, context)
    shared.timed("yardsticks", started_yardsticks)
    onset = history.at(history.onset)
    out = {
        "spec": spec.as_dict(),
        "created_at": now_iso(),
        "onset": onset.isoformat() if spec.scenario != "stable" else None,
        **measured,  # the reference and the first champion serving on: quality curves (yardsticks)
        "policies": [policy_summary(r, onset) for r in runs],
        "windows": {r.policy.name: r.windows for r in runs},
        "retrains": {r.policy.name: r.retrains for r in runs},
        "seconds": {k: round(v, 2) for k, v in shared.seconds.items()}
        | {"total": round(time.perf_counter() - started, 2)},
        "cache": shared.computed | {"models": len(shared.models)},
    }
    safe: dict[str, Any] = json_safe(out)
    return safe
