"""Scaling out training: the training-set build and both families' training as the rows grow.

Baselines, measured in the same run on the same data: the in-memory build (``train.build.
chunk_rows: null``, today's path) for the build, and one process (``train.workers: 1``) for training.

The history: a real seed (simulated batches -> ingest -> feature tables -> Feast) of
``--seed-days`` days, then its curated and feature-table partitions copied forward in time,
whole seeds at a time (timestamps shifted, transaction ids made unique), until the curated
history holds each ``--rows`` size: the same customers, merchants and feature rows per day, a
longer history. Each build runs in a child process (its peak RSS is that build's alone):

- in memory, up to ``--memory-max`` rows (beyond it one process would not fit this machine);
- streamed (``train.build.chunk_rows`` = ``--chunk-rows``) at every size.

Training: the most recent ``--train-rows`` rows of the history become a training set, and each
family's candidate trains in-process and then on 2 Ray Train workers (a private local Ray), with
``--rounds`` XGBoost rounds and ``--epochs`` MLP epochs at most. Then the cost model: rows per
worker-second and resident bytes per row, projected to ``--project`` rows.

    python -m benchmarks.train_scale [--rows 1000000 3000000] [--train-rows 200000]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before xgboost/torch load OpenMP

import argparse
import json
import subprocess
import sys
import tempfile
import time
from typing import Any

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from config import Settings, read_config
from tasks.common import storage

SEED_ROWS_PER_DAY = 10_000


def settings_for(home: str, **env: str) -> Settings:
    base = {"AIRLOOP_HOME": home, "AIRLOOP__TRAIN__WARMUP_HOURS": "24"}
    return read_config("local", base | {f"AIRLOOP__{k.upper()}": v for k, v in env.items()})


def seed_history(home: str, days: int) -> Settings:
    """``days`` simulated days through the real ingest, feature tables and Feast apply."""
    from tasks.features import store, tables
    from tasks.ingest.batches import ingest_batch
    from tasks.platform import simulate

    settings = settings_for(home, simulate__batch_minutes="1440")
    for i in range(days):
        frame = simulate.generate_batch(settings, "stable", index=i, rows=SEED_ROWS_PER_DAY)
        uri = simulate.write_batch(frame, settings.storage.landing_uri, simulate.batch_name("stable", i))
        ingest_batch(uri, settings)
    tables.refresh(settings)
    store.apply(settings)
    return settings


def _roots(settings: Settings) -> list[str]:
    from tasks.features import tables

    return [settings.storage.curated_uri, *(tables.table_uri(settings, t.name) for t in tables.TABLES)]


def _shift(path: str, days: int, copy: int, key: str) -> pd.DataFrame:
    frame = pq.read_table(path).to_pandas()
    for name in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[name]):
            frame[name] = frame[name] + pd.Timedelta(days=days)
    if key in frame:
        frame[key] = frame[key].astype(str) + f"-c{copy}"
    return frame.drop(columns=["event_date"], errors="ignore")


def grow(settings: Settings, seed_days: int, copies: range) -> None:
    """Copy the seed's partitions ``copies`` seeds forward, one file at a time (bounded memory)."""
    key = settings.schema_.key
    for root in _roots(settings):
        fs, path = storage.filesystem(root)
        files = fs.glob(f"{path}/event_date=*/*.parquet")
        seed = sorted(f for f in files if not f.rsplit("/", 1)[1].startswith("copy"))
        for copy in copies:
            for file in seed:
                day = pd.Timestamp(file.split("event_date=")[1].split("/")[0])
                shifted = (day + pd.Timedelta(days=copy * seed_days)).strftime("%Y-%m-%d")
                out = f"{path}/event_date={shifted}/copy{copy}-{file.rsplit('/', 1)[1]}"
                fs.makedirs(out.rsplit("/", 1)[0], exist_ok=True)
                frame = _shift(file, copy * seed_days, copy, key)
                frame.to_parquet(out, index=False)


def curated_rows(settings: Settings) -> int:
    fs, path = storage.filesystem(settings.storage.curated_uri)
    return int(ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive").count_rows())


def _rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, in MB."""
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith(field))
    return int(line.split()[1]) / 1024


def child_build(home: str, chunk_rows: str) -> None:
    """In a fresh process, Feast loaded first: one build; prints seconds, rows, RSS as JSON."""
    from tasks.features import store
    from tasks.training import dataset

    settings = settings_for(home, train__build__chunk_rows=chunk_rows)
    store.feature_service(settings)  # Feast's import and registry: not the join's cost
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM: the peak below is the build's own
    base = _rss_mb("VmRSS:")
    started = time.perf_counter()
    version = dataset.build(settings)
    seconds = time.perf_counter() - started
    peak = _rss_mb("VmHWM:")
    print(json.dumps({"seconds": seconds, "rows": version.rows, "peak_mb": peak, "base_mb": base}))


def measure_build(home: str, chunk_rows: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.train_scale", "--child-build", chunk_rows, "--home", home]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": os.getcwd()}
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def train_times(home: str, train_rows: int, rounds: int, epochs: int) -> list[dict[str, Any]]:
    """Each family in one process, then on 2 Ray Train workers, on the latest ``train_rows`` rows."""
    from tasks.training import dataset, scaleout
    from tasks.training.candidates import plan
    from tasks.training.job import prepare

    limits = {"train__xgboost__max_rounds": str(rounds), "train__mlp__max_epochs": str(epochs)}
    settings = settings_for(home, **limits)
    start = _start_for(settings, train_rows)
    uri = dataset.build(settings, start=start).uri
    out = []
    for workers in (1, 2):
        s = settings_for(home, train__workers=str(workers), **limits)
        job = prepare(s, uri, say=lambda line: None)
        with scaleout.session(s):
            for cand in plan(s):
                out.append(_fit(cand, job, workers))
    return out


def _fit(cand: Any, job: Any, workers: int) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from tasks.training.families.base import model_input

    fitted = cand.fit(job.fit)
    label = job.settings.schema_.label
    p = fitted.model.predict_proba(model_input(job.split.holdout, job.spec))
    auc = float(roc_auc_score(job.split.holdout[label].to_numpy(), p))
    rows = len(job.split.train)
    return {
        "family": cand.name,  # the baseline is the same candidate in one process
        "workers": workers,
        "seconds": fitted.seconds,
        "rows": rows,
        "roc_auc": auc,
    }


def _start_for(settings: Settings, rows: int) -> str:
    """The time from which the history's last ``rows`` rows begin (whole days)."""
    from tasks.training import streamed

    total, days = 0, list(streamed.day_rows(settings).items())
    for day, n in reversed(days):
        total += n
        if total >= rows:
            return f"{day}T00:00:00+00:00"
    return f"{days[0][0]}T00:00:00+00:00"


def report_builds(builds: list[dict[str, Any]]) -> None:
    print(f"\ntraining-set build, {os.cpu_count()} CPUs (baseline: in memory, same rows)")
    head = f"{'history rows':>13} {'path':<22} {'rows out':>10} {'seconds':>8} {'x base':>7}"
    print(f"{head} {'peak MB':>8} {'build MB':>9}")
    base: dict[int, dict[str, Any]] = {b["history"]: b for b in builds if b["path"] == "in memory"}
    for b in builds:
        ref = base.get(b["history"])
        ratio = f"{b['seconds'] / ref['seconds']:.2f}" if ref else "-"
        print(
            f"{b['history']:>13,} {b['path']:<22} {b['rows']:>10,} {b['seconds']:>8.1f} {ratio:>7}", end=" "
        )
        print(f"{b['peak_mb']:>8.0f} {b['peak_mb'] - b['base_mb']:>9.0f}")


def report_training(runs: list[dict[str, Any]]) -> None:
    print("\ntraining (baseline: the same family in one process, same rows)")
    head = f"{'candidate':<22} {'workers':>7} {'train rows':>10} {'seconds':>8} {'x base':>7}"
    print(f"{head} {'rows/worker-s':>13} {'ROC AUC':>8}")
    base = {r["family"]: r for r in runs if r["workers"] == 1}
    for r in runs:
        rate = r["rows"] / (r["seconds"] * r["workers"])
        print(f"{r['family']:<22} {r['workers']:>7} {r['rows']:>10,} {r['seconds']:>8.1f}", end=" ")
        print(f"{r['seconds'] / base[r['family']]['seconds']:>7.2f} {rate:>13,.0f} {r['roc_auc']:>8.4f}")


def report_cost(builds: list[dict[str, Any]], runs: list[dict[str, Any]], target: int) -> None:
    """Rows per second and bytes per row, measured at the largest size, projected to ``target``."""
    print(f"\ncost model, projected to {target:,} history rows")
    for path in ("in memory", "streamed"):
        done = [b for b in builds if b["path"].startswith(path)]
        if not done:
            continue
        big = max(done, key=lambda b: b["history"])
        rate, per_row = (
            big["history"] / big["seconds"],
            (big["peak_mb"] - big["base_mb"]) * 2**20 / big["history"],
        )
        memory = f"{per_row * target / 2**30:,.0f} GiB"
        if path == "streamed":
            bound = big["peak_mb"] - big["base_mb"]
            memory = f"bounded by chunk_rows ({bound:,.0f} MB at {big['history']:,} rows)"
        per = f" {per_row:,.0f} B/row ->" if path == "in memory" else ""
        print(
            f"  build {path:<10}: {rate:,.0f} history rows/s -> {target / rate / 3600:.1f} h;{per} {memory}"
        )
    for r in runs:
        rate = r["rows"] / (r["seconds"] * r["workers"])
        hours = target / (rate * r["workers"]) / 3600
        print(
            f"  train {r['family']:<22} x{r['workers']}: {rate:,.0f} rows/worker-s"
            f" -> {hours:.1f} h for {target:,} rows (same rounds)"
        )


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="airloop-bench-scale-") as home:
        t0 = time.perf_counter()
        settings = seed_history(home, args.seed_days)
        seed_rows = curated_rows(settings)
        print(
            f"seed history: {seed_rows:,} rows over {args.seed_days} days in {time.perf_counter() - t0:.0f}s"
        )
        builds, copies = [], 1
        for target in sorted(args.rows):
            want = max(1, -(-target // seed_rows))
            grow(settings, args.seed_days, range(copies, want))
            copies = max(copies, want)
            history = curated_rows(settings)
            paths = [("streamed", str(args.chunk_rows))]
            if history <= args.memory_max:
                paths.insert(0, ("in memory", "null"))
            for name, chunk in paths:
                b = measure_build(home, chunk)
                label = name if name == "in memory" else f"streamed ({args.chunk_rows:,})"
                builds.append(b | {"history": history, "path": label})
                print(
                    f"  built {history:,} rows {label}: {b['seconds']:.1f}s, peak {b['peak_mb']:.0f} MB",
                    flush=True,
                )
        report_builds(builds)
        runs = train_times(home, args.train_rows, args.rounds, args.epochs) if args.train_rows else []
        if runs:
            report_training(runs)
        report_cost(builds, runs, args.project)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train_scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000, 50_000_000])
    parser.add_argument("--seed-days", type=int, default=14)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument("--memory-max", type=int, default=3_000_000, help="largest in-memory build")
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--project", type=int, default=500_000_000)
    parser.add_argument("--child-build", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_build:
        child_build(args.home, args.child_build)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
