"""Training time per candidate, against a LogisticRegression on the same rows.

A real training set (simulated batches -> ingest -> features -> Feast point-in-time join ->
``tasks.training.dataset``) of ``--rows`` rows is built once in a temporary home. Larger sizes
(``--scale``) resample that set with replacement and spread the copies over consecutive time
ranges, so the time split still has a train, validation and hold-out part: same features and
label rate, more rows. Each configured candidate (``train.xgboost.grid``, ``train.mlp.grid``) is
then fitted exactly as ``python -m tasks.training`` fits it (encode, train with early stopping,
calibrate), and so is the baseline: scikit-learn's LogisticRegression (lbfgs, class-weighted) on
the MLP's dense encoding of the same rows. No MLflow: this measures training only.

    python -m benchmarks.train [--rows 100000] [--scale 1 10]

Prints seconds per candidate, rounds/epochs, hold-out ROC AUC, and the ratio to the baseline,
all measured in the same process on the same rows (CPU unless ``train.device`` finds CUDA).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before xgboost/torch load OpenMP

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from config import read_config
from tasks.common import storage
from tasks.training import dataset
from tasks.training.candidates import plan
from tasks.training.job import Job, prepare

ROWS_PER_BATCH = 5_000


@dataclass
class Timing:
    name: str
    seconds: float
    iterations: int
    roc_auc: float
    device: str


def build_training_set(home: str, rows: int) -> tuple[object, str]:
    """The real pipeline, on simulated data; returns (settings, training-set URI)."""
    from tasks.features import store, tables
    from tasks.ingest.batches import ingest_batch
    from tasks.platform import simulate

    settings = read_config("local", {"AIRLOOP_HOME": home, "AIRLOOP__TRAIN__WARMUP_HOURS": "0"})
    batches = max(1, rows // ROWS_PER_BATCH)
    for i in range(batches):
        frame = simulate.generate_batch(settings, "stable", index=i, rows=ROWS_PER_BATCH)
        name = simulate.batch_name("stable", i)
        ingest_batch(simulate.write_batch(frame, settings.storage.landing_uri, name), settings)
    tables.refresh(settings)
    store.apply(settings)
    return settings, dataset.build(settings).uri


def scaled(settings, uri: str, factor: int, home: str) -> str:
    """``factor`` resampled copies of the training set, each shifted past the previous one."""
    if factor == 1:
        return uri
    frame, _ = dataset.read(settings, uri)
    ts = settings.schema_.timestamp
    span = frame[ts].max() - frame[ts].min() + pd.Timedelta(seconds=1)
    rng = np.random.default_rng(0)
    copies = []
    for k in range(factor):
        part = frame.iloc[rng.integers(0, len(frame), len(frame))].copy()
        part[ts] = part[ts] + k * span
        part[settings.schema_.key] = part[settings.schema_.key] + f"-{k}"
        copies.append(part)
    big = pd.concat(copies, ignore_index=True).sort_values([ts, settings.schema_.key], kind="stable")
    out = storage.join("file://" + home, f"scaled-{factor}.parquet")
    storage.write_bytes(out, dataset.to_parquet_bytes(big))
    return out


def baseline(job: Job) -> Timing:
    """LogisticRegression (class-weighted) on the dense encoding the MLP uses."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from tasks.training.families.base import Encoder, model_input

    label = job.settings.schema_.label
    started = time.perf_counter()
    train_x = model_input(job.split.train, job.spec)
    encoder = Encoder.fit(train_x, job.spec, dense=True)
    lr = LogisticRegression(max_iter=500, class_weight={0: 1.0, 1: job.fit.pos_weight})
    lr.fit(encoder.transform(train_x), job.split.train[label].to_numpy())
    seconds = time.perf_counter() - started
    p = lr.predict_proba(encoder.transform(model_input(job.split.holdout, job.spec)))[:, 1]
    auc = roc_auc_score(job.split.holdout[label].to_numpy(), p)
    return Timing("LogisticRegression (baseline)", seconds, int(lr.n_iter_[0]), float(auc), "cpu")


def candidates(job: Job) -> list[Timing]:
    from sklearn.metrics import roc_auc_score

    from tasks.training.families.base import model_input

    label = job.settings.schema_.label
    holdout = model_input(job.split.holdout, job.spec)
    out = []
    for cand in plan(job.settings):
        fitted = cand.fit(job.fit)
        auc = roc_auc_score(job.split.holdout[label].to_numpy(), fitted.model.predict_proba(holdout))
        out.append(Timing(cand.name, fitted.seconds, fitted.best_iteration + 1, float(auc), fitted.device))
    return out


def report(rows: int, factor: int, base: Timing, results: list[Timing]) -> None:
    note = "" if factor == 1 else f" ({factor}x resampled: rows repeat across splits, AUC means little)"
    print(f"\n{rows:,} rows (train+valid+hold-out), {os.cpu_count()} CPUs{note}")
    print(f"{'candidate':<36} {'device':<6} {'seconds':>9} {'x baseline':>10} {'iters':>6} {'ROC AUC':>8}")
    for t in [base, *results]:
        ratio = t.seconds / base.seconds if base.seconds else float("nan")
        print(f"{t.name:<36} {t.device:<6} {t.seconds:>9.2f} {ratio:>10.2f}", end=" ")
        print(f"{t.iterations:>6} {t.roc_auc:>8.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the real training set")
    parser.add_argument("--scale", type=int, nargs="+", default=[1, 10], help="resampling factors to time")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="airloop-bench-train-") as home:
        t0 = time.perf_counter()
        settings, uri = build_training_set(home, args.rows)
        took = time.perf_counter() - t0
        print(f"built a {args.rows:,}-row training set through Feast in {took:.1f}s: {uri}")
        for factor in args.scale:
            job = prepare(settings, scaled(settings, uri, factor, home), say=lambda _: None)
            base = baseline(job)
            report(job.data.rows, factor, base, candidates(job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
