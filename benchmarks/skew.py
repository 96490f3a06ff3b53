"""Train/serve skew, offline: what the monitor would see on steady live traffic, with no stack.

History batches from the simulator, the feature tables ``tasks.features.tables`` computes from
them, the training set as training builds it (each event's features as of just before it, then
the on-demand features), a model trained on it, and live traffic as serving would score it: the
traffic player's transactions, each looked up as the online store answers (every entity's latest
feature row, the request's own time for the on-demand features). Then the monitor's drift
computation (``tasks.monitoring.drift``) on the live rows against the training reference, and
recall at the serving threshold on the live rows against the hold-out.

Variants: ``baseline`` (the r3 setup: 3 hourly batches, every training row kept, traffic stamped
with the wall clock), ``clock`` (the same with traffic on the simulated clock, just after the
history) and ``fixed`` (the profile as configured: 12 days of history, the 7-day warm-up left
out of training, the simulated clock). Printed per variant: drift share and the drifted columns,
prediction drift, live vs hold-out recall at the serving threshold and ROC AUC.

    python -m benchmarks.skew [--variant baseline|clock|fixed] [--live 5000] [--scenario ...]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from config import Settings, load_config
from feature_repo.definitions import REQUEST_TIME, transaction_context
from tasks.features import tables
from tasks.monitoring import drift
from tasks.monitoring.reference import build_reference
from tasks.platform import traffic
from tasks.platform.simulate import generate_batch, history_end
from tasks.training import dataset, evaluation
from tasks.training.families import xgb
from tasks.training.families.base import InputSpec, model_input

RATE = 20.0
"""Requests per second, as the demo sends them."""
KEYS = {tables.CUSTOMER_ACTIVITY.name: "customer_id", tables.MERCHANT_RISK.name: "merchant_id"}


def feature_names() -> list[str]:
    stored = [f for t in tables.TABLES for f in t.features]
    return [*stored, "seconds_since_last_txn", "amount_to_customer_mean_7d"]


def history(settings: Settings, batches: int) -> pd.DataFrame:
    frames = [generate_batch(settings, "stable", index=i) for i in range(batches)]
    events = pd.concat(frames, ignore_index=True)
    events[tables.TIMESTAMP] = tables.utc_us(events[tables.TIMESTAMP])
    return events


def _context(frame: pd.DataFrame, request_s: np.ndarray) -> pd.DataFrame:
    """The on-demand features, by the function the feature service runs."""
    out = transaction_context(
        {
            REQUEST_TIME: request_s.tolist(),
            "customer_last_txn_unix_s": frame["customer_last_txn_unix_s"].tolist(),
            "amount": frame["amount"].astype("float64").tolist(),
            "customer_amount_mean_7d": frame["customer_amount_mean_7d"].tolist(),
        }
    )
    return frame.assign(**{k: np.asarray(v, dtype="float64") for k, v in out.items()})


def training_rows(events: pd.DataFrame, tabs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each event with its entities' latest feature rows strictly before it (offline path)."""
    frame = events.assign(_row=np.arange(len(events))).sort_values(tables.TIMESTAMP, kind="stable")
    for name, key in KEYS.items():
        table = tabs[name].rename(columns={tables.TIMESTAMP: "_ft"}).sort_values("_ft", kind="stable")
        frame = pd.merge_asof(
            frame,
            table,
            left_on=tables.TIMESTAMP,
            right_on="_ft",
            by=key,
            direction="backward",
            allow_exact_matches=False,
        ).drop(columns=["_ft"])
    frame = frame.sort_values("_row").drop(columns=["_row"]).reset_index(drop=True)
    return _context(frame, np.asarray(tables.unix_seconds(frame[tables.TIMESTAMP])))


def serving_rows(requests: pd.DataFrame, tabs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each request with its entities' latest feature rows in the store (online path)."""
    frame = requests.reset_index(drop=True)
    for name, key in KEYS.items():
        latest = tabs[name].sort_values(tables.TIMESTAMP).drop_duplicates(key, keep="last")
        frame = frame.merge(latest.drop(columns=[tables.TIMESTAMP]), on=key, how="left")
    return _context(frame, np.asarray(tables.unix_seconds(frame[tables.TIMESTAMP])))


def live_requests(settings: Settings, scenario: str, n: int, clock: traffic.Clock) -> pd.DataFrame:
    """``n`` transactions as the traffic player sends them at ``RATE``, stamped by ``clock``."""
    rows: Iterator[dict[str, Any]] = traffic.transactions(
        settings, traffic.Mix(scenario), traffic.FIRST_INDEX, clock
    )
    frame = pd.DataFrame([next(rows) for _ in range(n)])
    sent = pd.to_timedelta(np.arange(n) / RATE, unit="s")
    frame[tables.TIMESTAMP] = tables.utc_us(pd.Series(pd.Timestamp(clock.now()) + sent))
    return frame


def train(settings: Settings, frame: pd.DataFrame, spec: InputSpec) -> tuple[Any, evaluation.Split]:
    split = evaluation.time_split(frame, settings)
    label = settings.schema_.label
    y = split.train[label].to_numpy()
    params = {k: v[0] for k, v in settings.train.xgboost.grid.model_dump().items()}
    fitted = xgb.fit(
        model_input(split.train, spec),
        y,
        model_input(split.valid, spec),
        split.valid[label].to_numpy(),
        spec=spec,
        params=params,
        family=settings.train.xgboost,
        pos_weight=float((y == 0).sum() / max(1, (y == 1).sum())),
        seed=0,
        device="cpu",
    )
    return fitted.model, split


def quality(y: np.ndarray, p: np.ndarray, threshold: float) -> str:
    recall = ((p >= threshold) & (y == 1)).sum() / max(1, (y == 1).sum())
    auc = roc_auc_score(y, p) if 0 < y.sum() < len(y) else float("nan")
    mean = f"mean score {p.mean():.4f} (fraud {y.mean():.4f})"
    return f"recall@{threshold:g} {recall:.2f}, ROC AUC {auc:.3f}, {mean}"


def variant(settings: Settings, name: str) -> tuple[Settings, bool]:
    """The settings of a variant, and whether its traffic runs on the simulated clock."""
    if name == "fixed":
        return settings, True
    sim = settings.simulate.model_copy(update={"batch_minutes": 60, "batch_rows": 5000})
    train = settings.train.model_copy(update={"warmup_hours": 0.0})
    return settings.model_copy(update={"simulate": sim, "train": train}), name == "clock"


def run(settings: Settings, batches: int, live: int, scenarios: list[str], *, simulated: bool) -> None:
    events = history(settings, batches)
    tabs = tables.compute(events)
    frame = dataset.after_warmup(settings, training_rows(events, tabs)).reset_index(drop=True)
    frame["event_date"] = frame[tables.TIMESTAMP].dt.strftime("%Y-%m-%d")
    end = history_end(settings, batches)
    print(f"  history to {end}: {len(events)} events, {len(frame)} training rows")
    spec = InputSpec.from_settings(settings, feature_names())
    model, split = train(settings, frame, spec)
    ref = build_reference(
        settings, frame, model.predict_proba, features=feature_names(), model_name="m", model_version="1"
    )
    threshold = settings.serving.threshold
    hold = model.predict_proba(model_input(split.holdout, spec))
    print(f"  hold-out: {quality(split.holdout[settings.schema_.label].to_numpy(), hold, threshold)}")
    for scenario in scenarios:
        clock = traffic.Clock(end.to_pydatetime()) if simulated else traffic.Clock()
        requests = live_requests(settings, scenario, live, clock)
        current = serving_rows(requests, tabs)
        scores = model.predict_proba(model_input(current, spec))
        result, _ = drift.compute(settings, model_input(current, spec).assign(score=scores), ref)
        drifted = [f"{c.column} ({c.score:.2f})" for c in result.columns if c.drifted]
        pred = result.prediction
        print(f"  live {scenario}, requests from {requests[tables.TIMESTAMP].min()}:")
        print(f"    drift share {result.share:.2f}: {', '.join(drifted) or 'none'}")
        print(f"    prediction drift {pred.method} {pred.score:.3f} drifted={pred.drifted}" if pred else "")
        print(f"    {quality(requests[settings.schema_.label].to_numpy(), scores, threshold)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.skew", description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=["baseline", "clock", "fixed"], default="fixed")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--live", type=int, default=5000)
    parser.add_argument("--scenario", nargs="+", default=["stable", "covariate_drift"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("ignore")
    settings, simulated = variant(load_config(), args.variant)
    started = time.perf_counter()
    sim = settings.simulate
    print(f"{args.variant}: {args.batches} batches of {sim.batch_rows} rows / {sim.batch_minutes} min")
    run(settings, args.batches, args.live, args.scenario, simulated=simulated)
    print(f"  ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
