"""A backtest of months of hourly windows for several policies: wall time, peak memory, and what
each window's estimated performance costs against its drift computation.

Runs ``tasks.backtest.run.backtest`` on ``config/backtest/policies.yaml`` (90 days, three
policies, covariate drift from day 30 by default) and reports:

- wall time and peak resident memory (``resource.getrusage``), against the goal of 10 minutes,
  and the process's CPU time (on a machine shared with other jobs, wall time over CPU time says
  how much of a core the run got);
- where the time went (history generation, the feature service's features of every hour
  (``features``, once for every policy; also per replayed window), scoring, building each
  window, drift, the rest of ``window.analyze``, ``decision.decide``, the quality curve,
  training), and what the caches saved: windows x policies against the drift computations
  and ``window.analyze`` calls actually run (each (window, model) computed once for the
  policies that share it);
- per window, baseline **drift**: ``drift.compute(report=False)`` (Evidently's stat tests) and
  ``drift.compute`` with the HTML report as the monitor runs it, against
  ``estimation.estimate`` (CBPE) on the scores of the window's estimation lookback
  (``monitor.estimation.lookback_hours`` of windows, up to the window): the ratios estimate / drift.

    python -m benchmarks.backtest [--policies FILE] [--days 90] [--windows 30] [--out DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before xgboost loads OpenMP

import argparse
import json
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

GOAL_SECONDS = 600.0


def _per_window(spec: Any, windows: int) -> dict[str, float]:
    """Seconds per window of drift (with and without the report) and of the estimate."""
    import pandas as pd

    from tasks.backtest import features
    from tasks.backtest import history as hist
    from tasks.backtest.models import gate_settings, train
    from tasks.backtest.spec import policy_settings
    from tasks.monitoring import drift, estimation
    from tasks.monitoring.results import SCORE
    from tasks.training.families.base import model_input

    short = replace(spec, days=windows / 24, onset_day=0)
    settings = policy_settings(short, short.policies[0])
    h = hist.build(settings, short)
    features.add(settings, h, features.warmup_hours(settings, short.rows_per_hour, h.start))
    frame = h.labelled_by(0, h.first_replayed, h.at(h.first_replayed))
    model = train(gate_settings(settings, short.segment_gate), frame, "bench", None).model
    assert model is not None, "the benchmark's champion failed the gate"
    samples = []
    for hour in range(h.first_replayed, h.first_replayed + windows):
        part = h.hours[hour]
        samples.append(model_input(part, model.model.spec).assign(**{SCORE: model.score(part)}))
    ref = model.reference
    drift.compute(settings, samples[0], ref, report=False)  # warm caches and imports
    span = max(1, int(settings.monitor.estimation.lookback_hours))
    recent = {id(s): pd.concat(samples[max(0, i + 1 - span) : i + 1])[SCORE] for i, s in enumerate(samples)}
    timings = {}
    for name, call in (
        ("drift (stat tests)", lambda s: drift.compute(settings, s, ref, report=False)),
        ("drift (with report)", lambda s: drift.compute(settings, s, ref)),
        ("estimate (CBPE)", lambda s: estimation.estimate(settings, recent[id(s)], s, ref, 0.5)),
    ):
        started = time.perf_counter()
        for s in samples:
            call(s)
        timings[name] = (time.perf_counter() - started) / len(samples)
    return timings


def main(argv: list[str] | None = None) -> int:
    from tasks.backtest import spec as spec_module
    from tasks.backtest.cli import DEFAULT_POLICIES
    from tasks.backtest.run import backtest

    p = argparse.ArgumentParser(prog="python -m benchmarks.backtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--policies", type=Path, default=DEFAULT_POLICIES)
    p.add_argument("--days", type=float, default=90.0)
    p.add_argument("--windows", type=int, default=30, help="windows timed for drift vs estimate")
    p.add_argument("--out", help="write the result JSON here")
    args = p.parse_args(argv)
    os.environ.setdefault("AIRLOOP_HOME", tempfile.mkdtemp(prefix="airloop-bench-backtest-"))
    spec = replace(spec_module.load(args.policies), days=args.days)
    per_window = _per_window(spec, args.windows)
    started, cpu = time.perf_counter(), time.process_time()
    result = backtest(spec, say=lambda m: print(f"[backtest] {m}", flush=True))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    windows = sum(len(w) for w in result["windows"].values())
    base = per_window["drift (stat tests)"]
    out = {
        "days": spec.days,
        "policies": [x.name for x in spec.policies],
        "windows_x_policies": windows,
        "wall_seconds": round(wall, 1),
        "goal_seconds": GOAL_SECONDS,
        "wall_over_goal": round(wall / GOAL_SECONDS, 2),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_mb": round(peak_mb),
        "seconds": result["seconds"],
        "features_seconds_per_window": round(result["seconds"].get("features", 0.0) / (spec.days * 24), 4),
        "cache": result["cache"],
        "drift_computations_per_window_x_policy": round(result["cache"].get("drift", 0) / windows, 3),
        "analyses_per_window_x_policy": round(result["cache"].get("analyze", 0) / windows, 3),
        "per_window_seconds": {k: round(v, 4) for k, v in per_window.items()},
        "ratio_to_drift_stat_tests": {k: round(v / base, 3) for k, v in per_window.items()},
        "retrains": {x["policy"]: x["retrains"] for x in result["policies"]},
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
