"""The root settings object: every section, with relative paths resolved against ``AIRLOOP_HOME``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

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
    password: str = "airloop"
    parallelism: int | None = Field(None, ge=1)
    """LocalExecutor worker processes (tasks at once); ``None``: one per core, at least 2 and at
    most 4 (each idle worker holds ~0.2 GB)."""
    api_workers: int = Field(1, ge=1)
    """The api-server's uvicorn workers."""

    @property
    def url(self) -> str:
        """The address clients use: a wildcard bind host is reached through loopback."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def workers(self) -> int:
        """The LocalExecutor's parallelism: the configured value, else sized to the cores."""
        return self.parallelism or max(2, min(4, cpu_count()))


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
    mlflow: MLflow
    train: Train
    training_pod: TrainingPod = TrainingPod()
    gate: Gate
    serving: Serving = Serving()
    rollout: Rollout = Rollout()
    monitor: Monitor = Monitor()

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
        backend = value.get("backend_store_uri") or ""
        if backend.startswith("sqlite:///") and not backend.startswith("sqlite:////"):
            value["backend_store_uri"] = "sqlite:///" + str(_resolve_path(backend[len("sqlite:///") :], home))
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
