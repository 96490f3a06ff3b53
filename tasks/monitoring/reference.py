"""The reference a window is compared with: the champion's training set and its hold-out scores.

For the registered version behind the ``champion`` alias, ``champion_reference``:

- reads the training set its ``training_set_uri`` tag names (``tasks.training.dataset.read``, which
  re-hashes the file; the hash must also equal the version's ``data_sha256`` tag);
- splits it by time exactly as training did (``tasks.training.evaluation.time_split``) and scores the
  hold-out split with the registered model, downloaded and checked against its SHA-256
  (``tasks.common.registry.load_verified``): these scores are the reference for prediction drift, and
  their metrics at the monitor's threshold are the baseline for live performance;
- keeps a uniform sample of at most ``monitor.drift.max_rows`` training rows (the model's input
  columns, plus ``score`` on hold-out rows) as the reference for data drift.

The result is cached under ``storage.data_uri/<monitor.store_dir>/reference/`` per model version,
data hash and sample size, so the monitor loads and scores a champion once, not every window.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.common import registry, storage
from tasks.common.clock import now_iso
from tasks.common.outcomes import Skip
from tasks.common.secrets import model_signing_key
from tasks.monitoring.performance import scores, threshold_for
from tasks.monitoring.results import LABEL, SCORE, Scores
from tasks.monitoring.sampling import sample_frame
from tasks.training import dataset, evaluation
from tasks.training.families.base import InputSpec, model_input

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from config import Settings


class NoChampion(Skip):
    """The registered model has no ``champion`` version: there is nothing to monitor yet (the
    monitor's task ends as skipped)."""


@dataclass
class Reference:
    """What a window is compared with, for one champion version."""

    model_name: str
    model_version: str
    training_set_uri: str
    data_sha256: str
    rows: int
    """Rows of the training set (the sample in ``frame`` may be smaller)."""
    numeric: list[str]
    categorical: list[str]
    frame: pd.DataFrame
    """Uniform sample of the training set: the input columns, and ``score`` on hold-out rows."""
    holdout: pd.DataFrame
    """The hold-out split's labels and champion scores (``label``, ``score``), every row."""
    holdout_start: str
    created_at: str = field(default_factory=now_iso)
    _baselines: dict[float, Scores] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def baseline(self, threshold: float) -> Scores:
        """The champion's metrics on its hold-out at ``threshold`` (computed once per threshold:
        a reference serves many windows, and the backtest thousands)."""
        if threshold not in self._baselines:
            self._baselines[threshold] = scores(self.holdout[LABEL], self.holdout[SCORE], threshold)
        return replace(self._baselines[threshold])

    def meta(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "training_set_uri": self.training_set_uri,
            "data_sha256": self.data_sha256,
            "rows": self.rows,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "holdout_start": self.holdout_start,
            "created_at": self.created_at,
        }


def build_reference(
    settings: Settings,
    frame: pd.DataFrame,
    predict: Callable[[pd.DataFrame], Any],
    *,
    features: list[str],
    model_name: str,
    model_version: str,
    training_set_uri: str = "",
    data_sha256: str = "",
) -> Reference:
    """A reference from a training set (``tasks.training.dataset`` columns) and a model's ``predict``
    (model-input frame -> fraud probabilities): the pure part of ``champion_reference``."""
    spec = InputSpec.from_settings(settings, features)
    split = evaluation.time_split(frame, settings)
    p = np.asarray(predict(model_input(split.holdout, spec)), dtype="float64").reshape(-1)
    label = settings.schema_.label
    holdout = pd.DataFrame({LABEL: split.holdout[label].to_numpy(dtype="int64"), SCORE: p})
    parts = [model_input(part, spec) for part in (split.train, split.valid, split.holdout)]
    parts[2] = parts[2].assign(**{SCORE: p})
    full = pd.concat(parts, ignore_index=True)
    cfg = settings.monitor.drift
    return Reference(
        model_name=model_name,
        model_version=str(model_version),
        training_set_uri=training_set_uri,
        data_sha256=data_sha256,
        rows=len(full),
        numeric=list(spec.numeric),
        categorical=list(spec.raw_categorical),
        frame=sample_frame(full, cfg.max_rows, cfg.seed),
        holdout=holdout,
        holdout_start=split.holdout_start,
    )


# --- cache ----------------------------------------------------------------------------------


def reference_dir(settings: Settings) -> str:
    return storage.join(settings.storage.data_uri, settings.monitor.store_dir, "reference")


def _cache_base(settings: Settings, name: str, version: str, sha: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    n = settings.monitor.drift.max_rows
    return storage.join(reference_dir(settings), f"{safe}-v{version}-{sha[:16]}-n{n}")


def _parquet(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="zstd")
    return sink.getvalue()


def _frame(uri: str) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(storage.read_bytes(uri))).to_pandas()


def save(settings: Settings, ref: Reference) -> str:
    """Cache ``ref``; returns the URI of its metadata file."""
    base = _cache_base(settings, ref.model_name, ref.model_version, ref.data_sha256)
    storage.write_bytes(f"{base}.sample.parquet", _parquet(ref.frame))
    storage.write_bytes(f"{base}.holdout.parquet", _parquet(ref.holdout))
    return storage.write_text(f"{base}.json", json.dumps(ref.meta(), indent=2))


def load_cached(settings: Settings, name: str, version: str, sha: str) -> Reference | None:
    base = _cache_base(settings, name, version, sha)
    if not storage.exists(f"{base}.json"):
        return None
    meta = json.loads(storage.read_bytes(f"{base}.json"))
    return Reference(
        **meta, frame=_frame(f"{base}.sample.parquet"), holdout=_frame(f"{base}.holdout.parquet")
    )


# --- the registered champion ------------------------------------------------------------------


def _registered(tracking_uri: str, name: str, alias: str) -> tuple[ModelVersion, str, str]:
    """The version behind ``name@alias`` with its training set's URI and SHA-256 tags."""
    version = registry.version_for_alias(registry.client(tracking_uri), name, alias)
    if version is None:
        raise NoChampion(f"{name} has no '{alias}' version in {tracking_uri}: nothing to monitor yet")
    tags = version.tags or {}
    uri, sha = tags.get(registry.TAG_TRAINING_SET), tags.get(registry.TAG_DATA_SHA256, "")
    if not uri:
        raise dataset.TrainingDataError(
            f"{name} v{version.version} has no {registry.TAG_TRAINING_SET} tag: its training data is unknown"
        )
    return version, uri, sha


def champion_reference(
    settings: Settings, tracking_uri: str | None = None, *, alias: str = registry.CHAMPION
) -> Reference:
    """The reference of ``mlflow.registered_model@alias``, from the cache or built and cached.

    Raises ``NoChampion`` when the alias does not exist, and ``tasks.training.dataset``'s
    ``TrainingDataError`` when the training set is gone or no longer matches its hash.
    """
    storage.configure(settings.storage.s3_endpoint_url)
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or settings.mlflow.url
    name = settings.mlflow.registered_model
    version, uri, sha = _registered(tracking_uri, name, alias)
    cached = load_cached(settings, name, str(version.version), sha)
    if cached is not None:
        return cached
    frame, data = dataset.read(settings, uri)
    if sha and data.sha256 != sha:
        raise dataset.TrainingDataError(
            f"{name} v{version.version} was trained on {uri} with SHA-256 {sha}; "
            f"the file now hashes to {data.sha256}"
        )
    with tempfile.TemporaryDirectory(prefix="airloop-monitor-") as tmp:
        model, loaded = registry.load_verified(
            tracking_uri, name, alias, tmp, key=model_signing_key(settings)
        )
        if str(loaded.version) != str(version.version):
            raise RuntimeError(
                f"{name}@{alias} moved from v{version.version} to v{loaded.version} while loading it"
            )
        ref = build_reference(
            settings,
            frame,
            model.predict,
            features=data.features,
            model_name=name,
            model_version=str(version.version),
            training_set_uri=uri,
            data_sha256=data.sha256,
        )
    save(settings, ref)
    return ref


def describe(ref: Reference, settings: Settings) -> dict[str, Any]:
    """The reference in a few numbers, for logs and reports."""
    base = ref.baseline(threshold_for(settings))
    return ref.meta() | {"sample_rows": len(ref.frame), "holdout": base.as_dict()}
