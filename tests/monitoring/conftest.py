"""Monitoring fixtures: a simulated world with a registered champion and an inference log.

Built once per session, through the real components:

- the simulator's days go through the real ingest path (Great Expectations, curated Parquet),
  features are refreshed and applied to Feast: 7 warm-up days first (the 7-day window features
  of a simulated world only settle after a week), then the training days, then the monitored
  days: ``STABLE`` (two days), ``CONCEPT`` (concept drift: fraud changes, inputs do not), ``GAP``
  (stable again, so that no label of the concept day is within a day of the next one) and
  ``COVARIATE`` (covariate drift);
- a real ``mlflow server`` (the local stack's own service, started while the data is prepared)
  and ``tasks.training.run.run`` on the training days' training set register the champion;
- every monitored event gets point-in-time features (``tasks.features.offline.training_set``) and the
  champion's score and is written to the inference log with the serving module's own writer, as
  ``champion`` traffic marked ``live``; 10% of it is mirrored as ``shadow`` traffic of another
  version with inverted scores, and a load test's one request repeated (5% more rows on the
  ``champion`` route, marked ``synthetic``, labelled fraud), both of which the monitor must leave
  out; delayed labels land 1 to 6 hours after their prediction through
  ``inference_log.write_labels``.

Windows are cut the way the monitor DAG's sensor cuts them (``sensor_windows``): from the last
window's end to the first hour boundary by which ``monitor.min_new_predictions`` live
predictions have arrived.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from config import Settings, read_config
from tasks.common.net import free_port
from tests.services import MLFLOW_LOGIN

START = pd.Timestamp("2026-01-01T00:00:00Z")
ROWS_PER_DAY = 6000
WARMUP_DAYS, TRAIN_DAYS = 7, 3
PLAN = (
    ["stable"] * (WARMUP_DAYS + TRAIN_DAYS + 2)  # warm-up, training, STABLE x2
    + ["concept_drift", "stable", "covariate_drift"]  # CONCEPT, GAP, COVARIATE
)
TRAIN_FROM = START + pd.Timedelta(days=WARMUP_DAYS)
STABLE = (TRAIN_FROM + pd.Timedelta(days=TRAIN_DAYS), TRAIN_FROM + pd.Timedelta(days=TRAIN_DAYS + 2))
CONCEPT = (STABLE[1], STABLE[1] + pd.Timedelta(days=1))
GAP = (CONCEPT[1], CONCEPT[1] + pd.Timedelta(days=1))
COVARIATE = (GAP[1], GAP[1] + pd.Timedelta(days=1))
SHADOW_VERSION = "999"

ENV = {
    **MLFLOW_LOGIN,
    "AIRLOOP__SIMULATE__BATCH_MINUTES": "1440",
    "AIRLOOP__SIMULATE__N_CUSTOMERS": "1000",
    "AIRLOOP__SIMULATE__N_MERCHANTS": "150",
    "AIRLOOP__TRAIN__FAMILIES": "[xgboost]",
    "AIRLOOP__TRAIN__XGBOOST__GRID__MAX_DEPTH": "[4]",
    "AIRLOOP__TRAIN__XGBOOST__MAX_ROUNDS": "150",
    "AIRLOOP__TRAIN__XGBOOST__EARLY_STOPPING_ROUNDS": "15",
    "AIRLOOP__TRAIN__LATENCY_ROWS": "500",
    "AIRLOOP__TRAIN__DEVICE": "cpu",
    "AIRLOOP__MLFLOW__REGISTERED_MODEL": "fraud-monitored",
}


@dataclass(frozen=True)
class World:
    home: Path
    env: dict[str, str]
    tracking_uri: str
    predictions: pd.DataFrame
    """Every live and shadow prediction written to the inference log (with its label)."""
    version: str
    """The champion's registered version."""

    def settings(self, store: str = "monitoring", **overrides: Any) -> Settings:
        """Settings for this world with the monitor's store and reports under ``store`` and
        ``overrides`` as ``section__key=value`` (e.g. ``monitor__decision__cooldown_hours=24``)."""
        extra = {f"AIRLOOP__{k.upper()}": str(v) for k, v in overrides.items()}
        extra |= {"AIRLOOP__MONITOR__STORE_DIR": store, "AIRLOOP__MONITOR__REPORTS_DIR": store}
        return read_config("local", {**self.env, **extra})

    def live(self) -> pd.DataFrame:
        """The live predictions: champion route, not synthetic."""
        log = self.predictions
        return log[(log["route"] == "champion") & (log["traffic"] != "synthetic")]

    def live_times(self) -> pd.Series:
        return self.live()["timestamp"]


def sensor_windows(times: pd.Series, start: pd.Timestamp, end: pd.Timestamp, min_rows: int) -> list[Any]:
    """The windows the monitor's sensor lets through in ``[start, end)``: each ends at the first
    hour boundary by which ``min_rows`` live predictions arrived since the previous one ended."""
    from tasks.monitoring.results import Window

    times = times[(times >= start) & (times < end)].sort_values()
    per_hour = times.dt.floor("h").value_counts().sort_index()
    out, lo, count = [], start, 0
    for hour in pd.date_range(start, end - pd.Timedelta(hours=1), freq="h"):
        count += int(per_hour.get(hour, 0))
        if count >= min_rows:
            out.append(Window.of(lo, hour + pd.Timedelta(hours=1)))
            lo, count = hour + pd.Timedelta(hours=1), 0
    return out


def _ingest(settings: Settings) -> None:
    from tasks.features import store as feature_store
    from tasks.features import tables as features
    from tasks.ingest.batches import ingest_batch
    from tasks.platform import simulate

    for index, scenario in enumerate(PLAN):
        frame = simulate.generate_batch(settings, scenario, index=index, rows=ROWS_PER_DAY, start=START)
        uri = simulate.write_batch(frame, settings.storage.landing_uri, simulate.batch_name(scenario, index))
        assert ingest_batch(uri, settings).status == "ingested"
    features.refresh(settings)
    feature_store.apply(settings)


def _log(settings: Settings, scored: pd.DataFrame, version: str) -> pd.DataFrame:
    """Write the monitored days' predictions and their delayed labels to the inference log."""
    from tasks.serving.inference_log import InferenceLogWriter, write_labels

    rng = np.random.default_rng(7)
    live = scored.assign(
        request_id=scored[settings.schema_.key],
        timestamp=scored[settings.schema_.timestamp],
        endpoint="score",
        route="champion",
        model_version=version,
        decision=np.where(scored["score"] >= settings.serving.threshold, "fraud", "legit"),
        threshold=settings.serving.threshold,
        latency_ms=5.0,
        customer_found=True,
        merchant_found=True,
        traffic="live",
    )
    shadow = live.sample(frac=0.1, random_state=1).assign(
        route="shadow", model_version=SHADOW_VERSION, score=lambda f: 1.0 - f["score"]
    )
    # a load test: one request sent over and over (every input far from the reference), scored fraud
    repeated = {c: live[c].iloc[0] for c in live.columns if c not in ("timestamp", "request_id")}
    bench = live.sample(frac=0.05, random_state=2)[["timestamp", "request_id"]].assign(**repeated)
    bench = bench.assign(
        request_id="bench-" + bench["request_id"].astype(str), score=0.99, traffic="synthetic"
    )
    bench["amount"] = 99_999.0
    log = pd.concat([live, shadow, bench], ignore_index=True).sort_values("timestamp", kind="stable")
    writer = InferenceLogWriter(settings, writer_id="monitoring-tests")
    assert writer.append(log.drop(columns=[settings.schema_.label]))
    writer.close()
    assert writer.rows_written == len(log)
    label = settings.schema_.label
    labels = pd.concat([live, bench.assign(**{label: 1})])[["request_id", label, "timestamp"]]
    labels = labels.rename(columns={label: "label"})
    delay = pd.to_timedelta(rng.uniform(1, 6, len(labels)), unit="h")
    landed = (labels["timestamp"] + delay).dt.ceil("h")
    for when, group in labels.groupby(landed):
        write_labels(settings, group[["request_id", "label"]], now=when)
    return log.reset_index(drop=True)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    import mlflow

    from tasks.common import registry
    from tasks.common.secrets import model_signing_key
    from tasks.features.offline import training_set
    from tasks.platform import stack
    from tasks.training import dataset as training_data
    from tasks.training import run as train
    from tasks.training.families.base import InputSpec, model_input

    home = tmp_path_factory.mktemp("airloop-monitoring")
    env = {"AIRLOOP_HOME": str(home), "AIRLOOP__MLFLOW__PORT": str(free_port()), **ENV}
    settings = read_config("local", env)
    with ThreadPoolExecutor(max_workers=1) as pool:
        starting = pool.submit(stack.start, settings, services=[stack.MLFLOW], timeout=180, quiet=True)
        try:
            _ingest(settings)
            version = training_data.build(settings, start=TRAIN_FROM.isoformat(), end=STABLE[0].isoformat())
            starting.result(timeout=240)
            tracking_uri = settings.mlflow.url
            result = train.run(settings, version.uri, tracking_uri=tracking_uri, reason="monitoring-tests")
            assert result.status == "registered", result.reasons
            assert "champion" in result.aliases

            events = training_data.labelled_events(settings, STABLE[0].isoformat(), COVARIATE[1].isoformat())
            monitored = training_set(settings, events)
            local, _ = registry.fetch_verified(
                tracking_uri,
                settings.mlflow.registered_model,
                "champion",
                home / "champion",
                key=model_signing_key(settings),
            )
            model = mlflow.pyfunc.load_model(str(local))
            spec = InputSpec.from_settings(settings, version.features)
            p = np.asarray(model.predict(model_input(monitored, spec)), "float64")
            scored = monitored.assign(score=p)
            log = _log(settings, scored, str(result.version))
            yield World(home, env, tracking_uri, log, str(result.version))
        finally:
            with contextlib.suppress(BaseException):
                starting.result()
            stack.stop(settings, quiet=True)  # MLflow and the database it started with


@pytest.fixture(scope="session")
def champion(world):
    """The champion's reference, built from the registry once (and cached in the store)."""
    from tasks.monitoring.reference import champion_reference

    return champion_reference(world.settings(), world.tracking_uri)


@dataclass
class Pass:
    """One monitored span: every window's result, and the decisions of each decider on them."""

    results: list[Any]
    decisions: dict[str, list[Any]]
    settings: dict[str, Settings]

    def retrains(self, decider: str) -> list[Any]:
        return [d for d in self.decisions[decider] if d.retrain]


def run_pass(
    world: World,
    reference: Any,
    span: tuple[pd.Timestamp, pd.Timestamp],
    deciders: dict[str, dict[str, Any]],
    *,
    retrain_hours: float = 1.0,
) -> Pass:
    """Monitor ``span`` window by window as the DAG does (run the window, decide, record), with
    one or more deciders, each with its own config overrides and store (named after it). A
    retrain a decider asks for "runs" for ``retrain_hours``: the DAG would pass that in."""
    from tasks.monitoring import decision, store, window

    settings = {name: world.settings(name, **over) for name, over in deciders.items()}
    first = next(iter(settings.values()))
    out = Pass([], {name: [] for name in settings}, settings)
    last: dict[str, pd.Timestamp | None] = dict.fromkeys(settings)
    for w in sensor_windows(world.live_times(), span[0], span[1], first.monitor.min_new_predictions):
        result = window.run_window(first, w, reference=reference)
        out.results.append(result)
        for name, cfg in settings.items():
            if cfg is not first:
                store.record_window(cfg, result.row())
            started = last[name]
            running = started is not None and w.end < started + pd.Timedelta(hours=retrain_hours)
            made = decision.decide_and_record(
                cfg, result, last_retrain_at=started, retrain_running=running, now=w.end
            )
            if made.retrain:
                last[name] = w.end
            out.decisions[name].append(made)
    return out


@pytest.fixture(scope="session")
def stable_pass(world, champion) -> Pass:
    return run_pass(world, champion, STABLE, {"stable": {}})


@pytest.fixture(scope="session")
def concept_pass(world, champion) -> Pass:
    return run_pass(world, champion, CONCEPT, {"concept": {"monitor__decision__cooldown_hours": 24}})


@pytest.fixture(scope="session")
def covariate_pass(world, champion) -> Pass:
    """Covariate drift for a day, decided with a one-day cooldown and with a six-hour one
    (``storm``: drift persists all day, so retrains come back as often as the cooldown allows)."""
    return run_pass(
        world,
        champion,
        COVARIATE,
        {
            "covariate": {"monitor__decision__cooldown_hours": 24},
            "storm": {"monitor__decision__cooldown_hours": 6},
        },
    )
