"""The root settings object: every section, with relative paths resolved against ``AIRLOOP_HOME``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from config.base import Section
from config.data import Assets, DataSchema, FeatureStore, Ingest, Simulate, Storage
from config.monitoring import Monitor
from config.rollout import Rollout
from config.serving import Serving
from config.training import Gate, MLflow, Train, TrainingPod

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class AirflowStack(Section):
    home: str
    host: str = "127.0.0.1"
    port: int = 8080
    username: str = "admin"
    password: str | None = None
    """The admin's password, for the tools that log in (``airloop`` CLI, demo, simulator). No
    default: the local profile sets its own; production leaves it null (the api-server's users
    file is written from ``AIRFLOW_ADMIN_PASSWORD``) and a tool passes AIRLOOP__AIRFLOW__PASSWORD."""
    parallelism: int | None = Field(None, ge=1)
    """LocalExecutor worker processes (tasks at once); ``None``: one per core, at least 2 and at
    most 4 (each idle worker holds ~0.2 GB)."""
    api_workers: int = Field(1, ge=1)
    """The api-server's uvicorn workers."""
    malloc_arena_max: int | None = Field(None, ge=1)
    """``MALLOC_ARENA_MAX`` for every process the local stack launches (Airflow's services and
    their task processes, the training child, MLflow, the serving process and its Ray workers):
    glibc's malloc keeps up to 8 arenas per core, one per thread that allocates, each holding
    the memory it freed; ``None``: glibc's default."""
    task_heartbeat_timeout_seconds: int = Field(300, ge=30)
    """A running task whose process stopped heartbeating this long ago is failed and retried by the
    scheduler (``[scheduler] task_instance_heartbeat_timeout``): how long a task orphaned by a
    killed scheduler or worker holds its run before the retry takes over."""
    orphaned_tasks_check_seconds: float = Field(300.0, ge=10)
    """How often the scheduler adopts or resets the tasks of a scheduler that died
    (``[scheduler] orphaned_tasks_check_interval``): a scheduler restarted right after a ``kill -9``
    still sees the dead one's recent heartbeat, so its running tasks wait for the next check."""
    client_retry_seconds: float = Field(60.0, ge=0)
    """How long the project's Airflow client (CLI, demo, simulator) retries connection errors,
    429 and 5xx before it gives up: a restarting api-server takes ~20 s."""
    scheduler_stop_seconds: float = Field(180.0, gt=0)
    """``airloop down`` lets the scheduler finish the tasks it runs (LocalExecutor) this long before
    it is killed: a materialization caught by ``down`` then completes instead of being cut off."""

    @property
    def url(self) -> str:
        """The address clients use: a wildcard bind host is reached through loopback."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def workers(self) -> int:
        """The LocalExecutor's parallelism: the configured value, else sized to the cores."""
        return self.parallelism or max(2, min(4, cpu_count()))


class MetadataDB(Section):
    """The local stack's database: Airflow's metadata and, when ``mlflow_database`` is set, MLflow's
    backend store (a separate database on the same server)."""

    kind: Literal["postgres", "sqlite", "external"] = "postgres"
    """``postgres``: a server the stack starts itself under ``<airflow.home>/postgres`` (unix
    socket only, generated password); ``sqlite``: a file, by explicit choice (WAL, busy timeout);
    ``external``: not the stack's business (production: the deployment's Postgres)."""
    binaries: str | None = None
    """A folder with ``initdb`` and ``postgres``; ``None``: the machine's (PATH, then
    ``/usr/lib/postgresql/*/bin``), else the ``pgserver`` wheel's."""
    user: str = "airloop"
    airflow_database: str = "airflow"
    mlflow_database: str | None = "mlflow"
    """``None``: MLflow keeps ``mlflow.backend_store_uri``."""
    shared_buffers: str = "32MB"
    max_connections: int = Field(150, ge=20)
    sqlite_busy_timeout_s: float = Field(30.0, gt=0)


class Settings(Section):
    profile: Literal["local", "production"]
    home: str = ""
    """``AIRLOOP_HOME`` as these settings resolved it: every relative path is under it, and the
    local profile's generated secrets live in ``<home>/.airloop/secrets`` (set by the loader)."""
    project: str = "airloop"
    owner: str = "airloop"
    schema_: DataSchema = Field(alias="schema")
    storage: Storage
    assets: Assets = Assets()
    ingest: Ingest
    simulate: Simulate = Simulate()
    feast: FeatureStore
    airflow: AirflowStack
    metadata_db: MetadataDB = MetadataDB()
    mlflow: MLflow
    train: Train
    training_pod: TrainingPod = TrainingPod()
    gate: Gate
    serving: Serving = Serving()
    rollout: Rollout = Rollout()
    monitor: Monitor = Monitor()

    @model_validator(mode="after")
    def _one_way_to_scale_out(self) -> Settings:
        """torchrun's ranks are the workers; Ray Train's inside each rank would be as many again."""
        if self.training_pod.runner == "torchrun" and self.train.workers > 1:
            raise ValueError(
                "training_pod.runner is torchrun: its ranks are the workers "
                "(training_pod.torchrun); set train.workers to 1"
            )
        return self

    @field_validator("storage", mode="before")
    @classmethod
    def _absolute_uris(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        home = _home_from(info)
        return {k: _resolve_uri(v, home) if k.endswith("_uri") else v for k, v in value.items()}

    @field_validator("feast", mode="before")
    @classmethod
    def _absolute_feast_paths(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        home = _home_from(info)
        value = dict(value)
        if not ("://" in value["registry"] and not value["registry"].startswith("file://")):
            value["registry"] = str(_resolve_path(value["registry"].removeprefix("file://"), home))
        online = dict(value.get("online_store") or {})
        if online.get("path"):
            online["path"] = str(_resolve_path(online["path"], home))
        return {**value, "online_store": online}

    @field_validator("mlflow", mode="before")
    @classmethod
    def _absolute_mlflow_stores(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        home = _home_from(info)
        value = dict(value)
        for key in ("backend_store_uri", "auth_store_uri"):
            uri = value.get(key) or MLflow.model_fields[key].default
            if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
                value[key] = "sqlite:///" + str(_resolve_path(uri[len("sqlite:///") :], home))
        value["artifacts_destination"] = _resolve_uri(value.get("artifacts_destination"), home)
        return value

    @field_validator("airflow", mode="before")
    @classmethod
    def _absolute_home(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return {**value, "home": str(_resolve_path(value["home"], _home_from(info)))}


def _home_from(info: ValidationInfo) -> Path:
    return Path((info.context or {}).get("home") or airloop_home())


def airloop_home() -> Path:
    return Path(os.environ.get("AIRLOOP_HOME", PROJECT_ROOT)).resolve()


def _resolve_path(path: str, home: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else home / p


def _resolve_uri(uri: str | None, home: Path) -> str | None:
    """Turn ``file://relative/dir`` or a bare path into an absolute ``file://`` URI."""
    if uri is None or ("://" in uri and not uri.startswith("file://")):
        return uri
    return "file://" + str(_resolve_path(uri.removeprefix("file://"), home))
