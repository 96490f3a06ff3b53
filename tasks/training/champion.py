"""The current champion scored on this run's hold-out, or why it could not be.

The champion is loaded the one verified way (``registry.load_verified``): its files are hashed
and compared with the ``model_sha256`` recorded at registration before anything is unpickled. A
champion that cannot be compared (none yet, another feature service, files that do not match
their hash, a model that fails to score) leaves the gate's champion checks skipped, with the
reason as their detail; it never fails a run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tasks.common import registry
from tasks.common.secrets import model_signing_key
from tasks.training.evaluation import evaluate

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from config import Settings
    from tasks.training.metrics import Metrics

NOTE_LIMIT = 500


@dataclass
class ChampionScore:
    """The champion on the hold-out: its metrics and scores, or a note saying why not."""

    version: str | None
    note: str = ""
    metrics: Metrics | None = None
    p: np.ndarray | None = None


def schema_frame(frame: pd.DataFrame, schema: Any) -> pd.DataFrame:
    """The columns a logged model's signature names, typed as it declares them."""
    missing = [c for c in schema.input_names() if c not in frame.columns]
    if missing:
        raise KeyError(f"the hold-out lacks the model's input columns {missing}")
    out = pd.DataFrame(index=frame.index)
    for name, kind in zip(schema.input_names(), schema.input_types(), strict=True):
        col = frame[name]
        if str(getattr(kind, "name", kind)) in ("double", "float", "long", "integer"):
            out[name] = pd.to_numeric(col, errors="coerce").astype("float64")
        else:
            out[name] = col.astype("object").where(col.notna(), None)
    return out


def _other_service(settings: Settings, version: ModelVersion) -> str | None:
    """Why a champion built on another feature service cannot be compared, or None."""
    service = (version.tags or {}).get(registry.TAG_FEATURE_SERVICE)
    if service and service != settings.feast.service:
        return (
            f"champion v{version.version} uses feature service {service}, this run {settings.feast.service}"
        )
    return None


def _score(settings: Settings, tracking_uri: str, holdout: pd.DataFrame) -> ChampionScore:
    """Load ``name@champion`` verified and score the hold-out with it."""
    name = settings.mlflow.registered_model
    with tempfile.TemporaryDirectory(prefix="airloop-champion-") as tmp:
        model, version = registry.load_verified(
            tracking_uri, name, registry.CHAMPION, tmp, key=model_signing_key(settings)
        )
        other = _other_service(settings, version)  # the alias may have moved since it was looked up
        if other:
            return ChampionScore(str(version.version), other)
        schema = model.metadata.get_input_schema()

        def predict(frame: pd.DataFrame) -> Any:
            return model.predict(schema_frame(frame, schema))

        metrics, p = evaluate(predict, holdout, settings, latency=False)
    return ChampionScore(str(version.version), "", metrics, p)


def score_champion(settings: Settings, tracking_uri: str, holdout: pd.DataFrame) -> ChampionScore:
    """The champion scored on the hold-out, or why it could not be."""
    name = settings.mlflow.registered_model
    version = registry.version_for_alias(registry.client(tracking_uri), name, registry.CHAMPION)
    if version is None:
        return ChampionScore(None, "no champion yet")
    other = _other_service(settings, version)
    if other:
        return ChampionScore(str(version.version), other)
    try:
        return _score(settings, tracking_uri, holdout)
    except registry.IntegrityError as exc:
        note = f"champion v{version.version} is not comparable: {exc}"
    except Exception as exc:  # noqa: BLE001 - any failure means "not comparable", reported as such
        note = f"champion v{version.version} could not score the hold-out: {type(exc).__name__}: {exc}"
    return ChampionScore(str(version.version), note[:NOTE_LIMIT])
