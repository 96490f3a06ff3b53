"""The one typed configuration object of airloop.

Loaded lazily from ``config/<profile>.yaml`` (``AIRLOOP_PROFILE=local|production``), with
environment-variable overrides of the form ``AIRLOOP__SECTION__KEY=value`` (nested keys joined by
``__``; values are parsed as YAML, so ``AIRLOOP__INGEST__MIN_ROWS=10`` gives an int). Relative
paths in ``file://`` URIs and plain paths resolve against ``AIRLOOP_HOME`` (default: the project
root), so a checkout works wherever it lives.

Secrets are ``${VAR}`` in the YAML, expanded from the environment. ``load_config()``, which every
component calls at start, refuses the production profile while any variable it uses is unset,
empty or still an example value, naming each (``config.interpolation``); ``read_config`` checks
only when asked (``check_secrets=True``), so tests and tools can read a profile with a partial
environment.

Reading the config must stay cheap: DAG files call ``load_config()`` at parse time.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import yaml

from config.base import Section
from config.data import (
    Assets,
    Column,
    ColumnType,
    DataSchema,
    FeatureStore,
    Ingest,
    OnlineStore,
    Simulate,
    Storage,
)
from config.interpolation import InsecureConfig, expand, secret_problems
from config.monitoring import (
    DriftMethod,
    Monitor,
    MonitorDecision,
    MonitorDrift,
    MonitorEstimation,
    MonitorPerformance,
)
from config.rollout import Rollout, RolloutJudge, RolloutShadow, RolloutStep
from config.serving import InferenceLog, Serving
from config.settings import PROJECT_ROOT, AirflowStack, MetadataDB, Settings, airloop_home, cpu_count
from config.training import (
    Fairness,
    Family,
    Gate,
    MLflow,
    MLPFamily,
    MLPGrid,
    Train,
    TrainingPod,
    XGBoostFamily,
    XGBoostGrid,
)

CONFIG_DIR = Path(__file__).resolve().parent
ENV_PREFIX = "AIRLOOP__"

__all__ = [
    "CONFIG_DIR",
    "ENV_PREFIX",
    "PROJECT_ROOT",
    "AirflowStack",
    "Assets",
    "Column",
    "ColumnType",
    "DataSchema",
    "DriftMethod",
    "Fairness",
    "Family",
    "FeatureStore",
    "Gate",
    "InferenceLog",
    "Ingest",
    "InsecureConfig",
    "MLPFamily",
    "MLPGrid",
    "MLflow",
    "MetadataDB",
    "Monitor",
    "MonitorDecision",
    "MonitorDrift",
    "MonitorEstimation",
    "MonitorPerformance",
    "OnlineStore",
    "Rollout",
    "RolloutJudge",
    "RolloutShadow",
    "RolloutStep",
    "Section",
    "Serving",
    "Settings",
    "Simulate",
    "Storage",
    "Train",
    "TrainingPod",
    "XGBoostFamily",
    "XGBoostGrid",
    "airloop_home",
    "cpu_count",
    "load_config",
    "profile_name",
    "read_config",
    "secret_variables",
]

CHECKED_PROFILES = frozenset({"production"})
"""Profiles ``load_config()`` refuses to load on missing or example secrets."""


def _set_nested(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def _parse_value(raw: str) -> Any:
    """YAML scalars (``10``, ``true``, ``null``, ``[a, b]``); anything YAML rejects, such as a
    cron line ``* * * * *``, stays the raw string."""
    if raw == "":
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            keys = name[len(ENV_PREFIX) :].lower().split("__")
            _set_nested(overrides, keys, _parse_value(raw))
    return overrides


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def profile_name() -> str:
    return os.environ.get("AIRLOOP_PROFILE", "local")


def _profile_path(profile: str) -> Path:
    path = CONFIG_DIR / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no config profile {profile!r}: {path} does not exist")
    return path


@functools.cache
def secret_variables(profile: str) -> tuple[str, ...]:
    """The ``${VAR}`` names a profile's YAML uses (its secrets and deployment values)."""
    return tuple(sorted(set(re.findall(r"\$\{(\w+)\}", _profile_path(profile).read_text()))))


def read_config(
    profile: str | None = None, environ: dict[str, str] | None = None, *, check_secrets: bool = False
) -> Settings:
    """Build the settings for a profile; uncached, for tests and tools that change the env.

    ``check_secrets``: raise ``InsecureConfig`` naming every ``${VAR}`` the profile uses that is
    unset, empty or an example value (what ``load_config`` does for the production profile)."""
    environ = dict(os.environ if environ is None else environ)
    profile = profile or environ.get("AIRLOOP_PROFILE", "local")
    source = yaml.safe_load(_profile_path(profile).read_text()) or {}
    overrides = _env_overrides(environ)
    if check_secrets and (problems := secret_problems(source, environ, overrides)):
        raise InsecureConfig(profile, problems)
    raw = expand(source, environ)
    raw["profile"] = profile
    home = Path(environ.get("AIRLOOP_HOME", PROJECT_ROOT)).resolve()
    raw["home"] = str(home)
    return Settings.model_validate(_merge(raw, overrides), context={"home": home})


@functools.cache
def _cached(profile: str, env_key: tuple[tuple[str, str], ...]) -> Settings:
    return read_config(profile, dict(env_key), check_secrets=profile in CHECKED_PROFILES)


def load_config(profile: str | None = None) -> Settings:
    """The settings for the current environment, cached per (profile, the environment it reads).

    The production profile is checked: ``InsecureConfig`` names each missing or example secret."""
    profile = profile or profile_name()
    used = set(secret_variables(profile))
    relevant = tuple(
        sorted(
            (k, v)
            for k, v in os.environ.items()
            if k.startswith(ENV_PREFIX) or k in used or k in ("AIRLOOP_HOME", "AIRLOOP_PROFILE")
        )
    )
    return _cached(profile, relevant)
