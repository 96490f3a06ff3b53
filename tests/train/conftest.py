"""Training fixtures: one real MLflow server and one real Feast training set per session.

The server is the local stack's own ``mlflow`` service (``tasks.platform.stack.MLFLOW``: SQLite backend,
artifacts proxied into a folder) on a free port in a private home, polled until ``/health``
answers and stopped at the end. The data is simulated, ingested through the real ingest path,
turned into features, applied to Feast and joined point-in-time into one training set: 16 hours
of 1 000 transactions an hour, ~2% fraud, small enough to train on two cores in seconds. The
server starts in a background thread while the data is prepared (both take ~15 s).

Each test gets settings for that home with its own registered-model name (``settings_for``), so
no test sees another's versions or aliases.
"""

from __future__ import annotations

import os

# Before xgboost or torch load OpenMP: on a busy two-core machine, threads that spin while they
# wait for each other make training ~20x slower; passive waiting costs nothing measurable here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from config import Settings, read_config
from tasks.common.net import free_port
from tests.services import MLFLOW_LOGIN

if TYPE_CHECKING:
    from mlflow import MlflowClient

START = "2026-01-01T10:00:00+00:00"
BATCHES, ROWS, BATCH_MINUTES = 4, 4000, 240

# Small grids and few rounds: the tests are about the pipeline and the gate, not about tuning.
FAST = {
    **MLFLOW_LOGIN,
    "AIRLOOP__SIMULATE__BATCH_MINUTES": str(BATCH_MINUTES),
    "AIRLOOP__TRAIN__XGBOOST__GRID__MAX_DEPTH": "[4]",
    "AIRLOOP__TRAIN__XGBOOST__MAX_ROUNDS": "150",
    "AIRLOOP__TRAIN__XGBOOST__EARLY_STOPPING_ROUNDS": "15",
    "AIRLOOP__TRAIN__MLP__MAX_EPOCHS": "8",
    "AIRLOOP__TRAIN__MLP__PATIENCE": "3",
    "AIRLOOP__TRAIN__MLP__BATCH_SIZE": "256",
    "AIRLOOP__TRAIN__LATENCY_ROWS": "500",
    "AIRLOOP__TRAIN__DEVICE": "cpu",
    "AIRLOOP__TRAIN__WARMUP_HOURS": "0",  # hours of history, not the 7 days a settled 7-day window needs
}


@dataclass(frozen=True)
class TrainWorld:
    home: Path
    env: dict[str, str]
    tracking_uri: str
    training_set_uri: str
    data_sha256: str

    def settings(self, model: str | None = None, **overrides: str) -> Settings:
        """Settings for this world; ``model`` names the registered model (unique by default)."""
        name = model or f"fraud-{uuid.uuid4().hex[:8]}"
        extra = {f"AIRLOOP__{k.upper()}": v for k, v in overrides.items()}
        return read_config("local", {**self.env, "AIRLOOP__MLFLOW__REGISTERED_MODEL": name, **extra})


@dataclass
class Server:
    """The session's MLflow server, starting in the background while the data is prepared."""

    home: Path
    env: dict[str, str]
    tracking_uri: str
    starting: Future

    def wait(self) -> str:
        self.starting.result(timeout=240)
        return self.tracking_uri


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``mlflow server`` started by ``tasks.platform.stack`` (polled until ``/health`` answers)."""
    from tasks.platform import stack

    home = tmp_path_factory.mktemp("airloop-train")
    env = {"AIRLOOP_HOME": str(home), "AIRLOOP__MLFLOW__PORT": str(free_port()), **FAST}
    settings = read_config("local", env)
    with ThreadPoolExecutor(max_workers=1) as pool:
        starting = pool.submit(stack.start, settings, services=[stack.MLFLOW], timeout=180, quiet=True)
        try:
            yield Server(home, env, settings.mlflow.url, starting)
        finally:
            with contextlib.suppress(BaseException):
                starting.result()  # a start that is still waiting for health finishes first
            stack.stop(settings, quiet=True)  # MLflow and the database it started with


@pytest.fixture(scope="session")
def world(mlflow_server: Server) -> TrainWorld:
    """Simulated batches ingested, features refreshed and applied, one training set built."""
    from tasks.features import store, tables
    from tasks.ingest.batches import ingest_batch
    from tasks.platform import simulate
    from tasks.training import dataset

    settings = read_config("local", mlflow_server.env)
    for i in range(BATCHES):
        frame = simulate.generate_batch(settings, "stable", index=i, rows=ROWS, start=START)
        uri = simulate.write_batch(frame, settings.storage.landing_uri, simulate.batch_name("stable", i))
        assert ingest_batch(uri, settings).status == "ingested"
    tables.refresh(settings)
    store.apply(settings)
    version = dataset.build(settings)
    tracking_uri = mlflow_server.wait()
    return TrainWorld(mlflow_server.home, mlflow_server.env, tracking_uri, version.uri, version.sha256)


@pytest.fixture
def mlflow_client(world) -> MlflowClient:
    """A client of the session's server (an ``MlflowClient`` instance, not a factory)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=world.tracking_uri, registry_uri=world.tracking_uri)
