"""Loading a registered model for serving: resolve, download, verify, load, check the contract.

A model is served only after its downloaded files hash (``registry.artifact_sha256``) to the
``model_sha256`` tag recorded when it was registered, and only if it was trained on the feature
service serving fetches (``feast.service``) and takes no input serving cannot give it. Anything
else raises ``ModelRefused`` with a kind the control API maps to a status code; the slot that
asked keeps the model it had.

Scoring calls the model's Python object directly (``FraudModel.score``) on arrays already typed as
its signature says: MLflow's pyfunc schema enforcement and pandas cost more than the model itself
on one row, and the input is built here to the signature anyway.
"""

from __future__ import annotations

import inspect
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd

from tasks.common import registry
from tasks.common.secrets import model_signing_key

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from config import Settings


class ModelRefused(RuntimeError):
    """A model that must not be served; ``kind`` says why (``not_found``, ``integrity``,
    ``contract``, ``load``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": str(self)}


@dataclass
class LoadedModel:
    """A verified model in memory, ready to score frames that have ``columns``."""

    name: str
    version: str
    source: str
    """How it was asked for: ``alias champion`` or ``version 7``."""
    sha256: str
    run_id: str | None
    feature_service: str | None
    columns: list[str]
    numeric: list[str]
    path: Path
    predict_fn: Callable[[dict[str, np.ndarray]], Any]
    """Scores of typed input columns (``inputs``)."""
    loaded_at: float = field(default_factory=time.time)

    def inputs(self, scoring: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The model's input columns from the request rows joined with their features (a frame or
        equal-length arrays): its signature's columns, numbers as float64 (missing as NaN), the
        others as strings or ``None``, the way ``tasks.training.families.base.model_input`` types them."""
        numeric = set(self.numeric)
        out: dict[str, np.ndarray] = {}
        for c in self.columns:
            values = scoring[c]
            if c in numeric:
                out[c] = np.asarray(values, dtype="float64")
            else:
                out[c] = np.array([_category(v) for v in values], dtype=object)
        return out

    def frame(self, scoring: Mapping[str, Any]) -> pd.DataFrame:
        """The model's input as a frame (what ``mlflow models serve`` takes)."""
        return pd.DataFrame(self.inputs(scoring), columns=self.columns)

    def predict(self, scoring: Mapping[str, Any]) -> np.ndarray:
        inputs = self.inputs(scoring)
        n = len(inputs[self.columns[0]])
        scores = np.asarray(self.predict_fn(inputs), dtype="float64").reshape(-1)
        if len(scores) != n:
            raise RuntimeError(f"model version {self.version} returned {len(scores)} scores for {n} rows")
        if not np.all(np.isfinite(scores)):
            raise RuntimeError(f"model version {self.version} returned non-finite scores")
        return scores

    def info(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "source": self.source,
            "sha256": self.sha256,
            "run_id": self.run_id,
            "feature_service": self.feature_service,
            "loaded_at": datetime.fromtimestamp(self.loaded_at, UTC).isoformat(),
        }

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def resolve(settings: Settings, *, version: str | None = None, alias: str | None = None) -> ModelVersion:
    """The registered version for a version number or an alias (``ModelRefused`` if none)."""
    name = settings.mlflow.registered_model
    mc = registry.client(settings.mlflow.url)
    if alias is not None:
        found = registry.version_for_alias(mc, name, alias)
        if found is None:
            raise ModelRefused("not_found", f"model {name!r} has no alias {alias!r}")
        return found
    found = registry.version_by_number(mc, name, str(version))
    if found is None:
        raise ModelRefused("not_found", f"model {name!r} has no version {version}")
    return found


def available_columns(settings: Settings, features: list[str]) -> set[str]:
    """What serving can put in front of a model: the feature service's features and the request's
    own columns (every contract column but the label)."""
    schema = settings.schema_
    return set(features) | {c.name for c in schema.columns if c.name != schema.label}


def load(
    settings: Settings,
    *,
    version: str | None = None,
    alias: str | None = None,
    features: list[str] | None = None,
    cache_dir: str | Path | None = None,
) -> LoadedModel:
    """Resolve, download, verify and load one model version (see the module docstring).

    ``features``: the feature service's columns; when given, a model needing any other input is
    refused. Files go to a fresh folder under ``cache_dir`` (default: the temp dir), removed again
    when the model is refused.
    """
    mv = resolve(settings, version=version, alias=alias)
    name = settings.mlflow.registered_model
    folder = Path(tempfile.mkdtemp(prefix=f"airloop-{name}-v{mv.version}-", dir=cache_dir))
    try:
        local, sha256 = _download(settings, mv, folder)
        service = _check_service(settings, mv)
        try:
            model = mlflow.pyfunc.load_model(str(local))
        except Exception as exc:
            raise ModelRefused("load", f"{name} version {mv.version} does not load: {exc}") from exc
        columns, numeric = _signature_columns(model)
        if features is not None:
            missing = sorted(set(columns) - available_columns(settings, features))
            if missing:
                raise ModelRefused(
                    "contract", f"{name} version {mv.version} needs inputs serving does not have: {missing}"
                )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return LoadedModel(
        name=name,
        version=str(mv.version),
        source=f"alias {alias}" if alias is not None else f"version {version}",
        sha256=sha256,
        run_id=mv.run_id,
        feature_service=service,
        columns=columns,
        numeric=numeric,
        path=folder,
        predict_fn=_predictor(model, columns),
    )


def _download(settings: Settings, mv: ModelVersion, folder: Path) -> tuple[Path, str]:
    """The version's files in ``folder``, verified (``registry.download_verified``)."""
    try:
        return registry.download_verified(settings.mlflow.url, mv, folder, key=model_signing_key(settings))
    except registry.IntegrityError as exc:
        raise ModelRefused("integrity", str(exc)) from exc
    except Exception as exc:
        raise ModelRefused("load", f"{mv.name} version {mv.version}: download failed: {exc}") from exc


def _check_service(settings: Settings, mv: ModelVersion) -> str | None:
    """The feature service the version was trained on; refused if serving fetches another."""
    service = (mv.tags or {}).get(registry.TAG_FEATURE_SERVICE)
    if service and service != settings.feast.service:
        raise ModelRefused(
            "contract",
            f"{mv.name} version {mv.version} was trained on feature service {service!r}, "
            f"serving fetches {settings.feast.service!r}",
        )
    return service


def _signature_columns(model: Any) -> tuple[list[str], list[str]]:
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        raise ModelRefused(
            "contract", "the model has no named input signature; serving cannot build its input"
        )
    names = list(schema.input_names())
    numeric = [
        n
        for n, t in zip(names, schema.input_types(), strict=True)
        if str(getattr(t, "name", t)) in ("double", "float", "long", "integer")
    ]
    return names, numeric


def _category(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):  # missing
        return None
    return value if isinstance(value, str) else str(value)


def _predictor(model: Any, columns: list[str]) -> Callable[[dict[str, np.ndarray]], Any]:
    """The fastest correct way to score typed input columns: a ``FraudModel`` straight from the
    arrays (``score``), any other pyfunc through a frame."""
    try:
        python_model = model.unwrap_python_model()
    except Exception:  # noqa: BLE001 - not a PythonModel flavor: go through pyfunc
        return lambda inputs: model.predict(pd.DataFrame(inputs, columns=columns))
    if callable(getattr(python_model, "score", None)):
        score: Callable[[dict[str, np.ndarray]], Any] = python_model.score
        return score
    if "context" in inspect.signature(python_model.predict).parameters:
        return lambda inputs: python_model.predict(None, pd.DataFrame(inputs, columns=columns))
    return lambda inputs: python_model.predict(pd.DataFrame(inputs, columns=columns))
