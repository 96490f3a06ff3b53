"""Serving fixtures: one real stack per session, the app started once.

- a private AIRLOOP_HOME with three simulated hours ingested, turned into features, applied to
  Feast and materialized into the SQLite online store (the real path of the features DAG);
- a real ``mlflow server`` (``tasks.platform.stack.MLFLOW``) on a free port;
- models registered through ``tasks.training.registration.register``: real ``FraudModel`` objects with a
  constant scorer, so a score tells which version answered (v1 0.02 = champion, v2 0.9 =
  challenger, v3 0.3 = spare for swaps, v4 fails on every call);
- the Ray Serve application started by ``tasks.serving.process.start`` on a local Ray with two CPUs, its
  HTTP port free, its serving token and model signing key set for the session, its write-ahead
  inference log on a small tmpfs of its own when the tests run as root (``faults.WalDisk``: the
  read-only fault test remounts it) and compacted every second, with the configured model placement
  (``serving.placement``, ``ingress`` by default); the application with the other placement
  (``deployments``: each slot its own Serve deployment) is started beside it, under its own name
  and route prefix, the first time a test asks for it.

``client`` (``ServingClient.from_settings``: the token, retries, requests marked synthetic) resets
the application to v1 champion, v2 challenger, no traffic on the challenger and shadow off before
each test. It is the configured placement's application; a test (or a module)
runs on both placements with ``pytest.mark.parametrize("client", PLACEMENTS, indirect=True)``.
"""

from __future__ import annotations

import os
import secrets

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# every Ray process on loopback, as python -m tasks.serving sets it for a loopback serving.host: Ray
# reads it when imported, so before anything here imports Ray
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from config import Settings, read_config
from tasks.common.net import free_port
from tests.services import MLFLOW_LOGIN, release_early
from tests.serving.faults import WalDisk

START = "2026-01-01T00:00:00+00:00"
PLACEMENTS = ("ingress", "deployments")
"""``serving.placement`` values: the model slots in the ingress replica, or each its own deployment."""
HOURS, ROWS = 3, 1500
RATES = {"1": 0.02, "2": 0.9, "3": 0.3}
"""Registered versions and the constant probability each returns."""


@dataclass
class ServingWorld:
    home: Path
    env: dict[str, str]
    settings: Settings
    events: pd.DataFrame
    versions: dict[str, str] = field(default_factory=dict)
    """``{"good", "spare", "broken", "challenger", "champion"}`` -> registered version."""
    url: str = ""
    wal: WalDisk | None = None
    """The write-ahead inference log's disk (a tmpfs when root)."""

    def client(self, url: str | None = None, **kw):
        """``ServingClient.from_settings`` of this world (its token), at ``url`` (default: the app)."""
        from tasks.serving.client import ServingClient

        return ServingClient.from_settings(self.settings, url=url or self.url, **kw)

    def transaction(self, i: int = 0, **overrides) -> dict:
        """A valid request for a known customer and merchant (the i-th landed event)."""
        row = self.events.iloc[i]
        body = {
            "transaction_id": f"t-{i}-{os.urandom(3).hex()}",
            "customer_id": int(row.customer_id),
            "merchant_id": int(row.merchant_id),
            "amount": float(row.amount),
            "merchant_category": row.merchant_category,
            "channel": row.channel,
            "region": row.region,
            "event_timestamp": "2026-01-01T03:30:00+00:00",
        }
        return {**body, **overrides}


def _signature(spec):
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    inputs = [ColSpec("double", c, required=True) for c in [*spec.features, *spec.raw_numeric]]
    inputs += [ColSpec("string", c, required=False) for c in spec.raw_categorical]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([TensorSpec(np.dtype("float64"), (-1,))]))


def register_model(settings: Settings, scorer, events: pd.DataFrame) -> str:
    """Log a ``FraudModel`` with ``scorer`` and register it the way training does; its version."""
    from importlib.metadata import version as pkg_version

    import mlflow

    from tasks.common import registry
    from tasks.features.store import feature_names
    from tasks.training import registration
    from tasks.training.families.base import Encoder, FraudModel, InputSpec

    features = feature_names(settings)
    spec = InputSpec.from_settings(settings, features)
    frame = events.head(200).copy()
    for name in features:
        frame[name] = float("nan")
    model = FraudModel(
        spec=spec, encoder=Encoder.fit(frame, spec, dense=False), scorer=scorer, family="test", params={}
    )
    mlflow.set_tracking_uri(settings.mlflow.url)
    mlflow.set_experiment(settings.mlflow.experiment)
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=_signature(spec),
            pip_requirements=[f"mlflow=={pkg_version('mlflow')}"],
        )
    reg = registration.register(
        settings,
        settings.mlflow.url,
        logged_model_uri=info.model_uri,
        logged_model_id=info.model_id,
        run_id=run.info.run_id,
        tags={registry.TAG_FEATURE_SERVICE: settings.feast.service, registry.TAG_FAMILY: "test"},
        model_card_uri="none",
    )
    return reg.version


def artifact_dir(settings: Settings, version: str) -> Path:
    """Where the MLflow server keeps a registered version's files (to tamper with them)."""
    from mlflow import MlflowClient

    mc = MlflowClient(tracking_uri=settings.mlflow.url, registry_uri=settings.mlflow.url)
    mv = mc.get_model_version(settings.mlflow.registered_model, version)
    model_id = mv.model_id or mv.source.removeprefix("models:/")  # registered from models:/<model id>
    location = mc.get_logged_model(model_id).artifact_location  # mlflow-artifacts:/<exp>/models/...
    root = settings.mlflow.artifacts_destination.removeprefix("file://")
    return Path(root) / location.split(":", 1)[1].lstrip("/")


@pytest.fixture(scope="session")
def serving_world(tmp_path_factory) -> Iterator[ServingWorld]:
    from tasks.features import store, tables
    from tasks.features.materialization import materialize
    from tasks.ingest.batches import ingest_batch
    from tasks.ingest.curated import read_curated
    from tasks.platform import simulate, stack
    from tests.serving.scorers import ConstantScorer, FailingScorer

    home = tmp_path_factory.mktemp("airloop-serving")
    wal = WalDisk(home / "wal")
    env = {
        "AIRLOOP_HOME": str(home),
        "AIRLOOP__MLFLOW__PORT": str(free_port()),
        "AIRLOOP__METADATA_DB__MLFLOW_DATABASE": "null",  # MLflow on its SQLite file: no Postgres here
        "AIRLOOP__MLFLOW__SIGNING_KEY": secrets.token_urlsafe(24),
        **MLFLOW_LOGIN,
        "AIRLOOP__SERVING__PORT": str(free_port()),
        "AIRLOOP__SERVING__ADMIN_TOKEN": secrets.token_urlsafe(24),
        "AIRLOOP__SERVING__REPLICA_CPUS": "0.1",
        "AIRLOOP__SERVING__INFERENCE_LOG__FLUSH_SECONDS": "1",
        "AIRLOOP__SERVING__INFERENCE_LOG__WAL_DIR": str(wal.path),
    }
    settings = read_config("local", env)
    stop_mlflow = release_early(lambda: stack.stop(settings, services=[stack.MLFLOW], quiet=True))
    # The MLflow server starts (a subprocess, ~20 s) while this process lands data and features.
    mlflow_up = ThreadPoolExecutor(1).submit(
        stack.start, settings, services=[stack.MLFLOW], timeout=180, quiet=True
    )
    try:
        for i in range(HOURS):
            frame = simulate.generate_batch(settings, "stable", index=i, rows=ROWS, start=START)
            uri = simulate.write_batch(frame, settings.storage.landing_uri, simulate.batch_name("stable", i))
            assert ingest_batch(uri, settings).status == "ingested"
        changed = tables.refresh(settings)
        store.apply(settings)
        materialize(settings, changed)
        events = read_curated(settings).reset_index(drop=True)
        mlflow_up.result()
        world = ServingWorld(home=home, env=env, settings=settings, events=events, wal=wal)
        for version, rate in RATES.items():
            assert register_model(settings, ConstantScorer(rate), events) == version
        world.versions = {"good": "1", "challenger": "2", "spare": "3"}
        world.versions["broken"] = register_model(settings, FailingScorer(), events)
        from tasks.common import registry

        registry.client(settings.mlflow.url).set_registered_model_alias(
            settings.mlflow.registered_model, registry.CHALLENGER, world.versions["challenger"]
        )
        yield world
    finally:
        stop_mlflow()
        wal.release()


@pytest.fixture(scope="session")
def serving_app(serving_world) -> Iterator[ServingWorld]:
    """The application on a local Ray; it starts with the aliases: champion v1, challenger v2."""
    from tasks.serving import process as serve

    settings = serving_world.settings
    serving_world.url = serve.start(settings, num_cpus=2)
    stop = release_early(lambda: serve.stop(settings, shutdown_ray=True))
    try:
        yield serving_world
    finally:
        stop()


def placement_settings(settings: Settings, placement: str) -> Settings:
    """``settings`` with ``placement``; another placement than the configured one gets its own
    application name and route prefix, so both run in one Serve instance."""
    serving = settings.serving
    if placement != serving.placement:
        serving = serving.model_copy(
            update={
                "placement": placement,
                "app_name": f"airloop-{placement}",
                "route_prefix": f"/{placement}",
            }
        )
    return settings.model_copy(update={"serving": serving})


@pytest.fixture(scope="session")
def other_placement_app(serving_app) -> Iterator[str]:
    """The URL of the application with the placement the configuration does not choose."""
    from ray import serve as ray_serve

    from tasks.serving import process as serve

    (other,) = set(PLACEMENTS) - {serving_app.settings.serving.placement}
    settings = placement_settings(serving_app.settings, other)
    url = serve.start(settings)
    stop = release_early(lambda: ray_serve.delete(settings.serving.app_name))
    try:
        yield url
    finally:
        stop()


def app_url(request: pytest.FixtureRequest, world: ServingWorld, placement: str) -> str:
    if placement == world.settings.serving.placement:
        return world.url
    return request.getfixturevalue("other_placement_app")


@pytest.fixture
def client(request, serving_app):
    """A client of the running app, reset to v1 champion / v2 challenger, no traffic, no shadow.

    The configured placement's application, or ``request.param``'s (indirect parametrization)."""
    placement = getattr(request, "param", serving_app.settings.serving.placement)
    c = serving_app.client(app_url(request, serving_app, placement), synthetic=True)
    c.set_traffic(challenger_weight=0.0, shadow=False)
    status = c.status()["slots"]
    if status["champion"].get("version") != serving_app.versions["good"]:
        c.load("champion", version=serving_app.versions["good"])
    if status["challenger"].get("version") != serving_app.versions["challenger"]:
        c.load("challenger", version=serving_app.versions["challenger"])
    return c


@pytest.fixture
def admin(settings, tmp_path):
    """One in-process replica's app (no Ray), champion v1, a test client with the token."""
    from tests.serving.replicas import admin_app

    yield from admin_app(settings, tmp_path)
