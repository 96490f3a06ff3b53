"""One training run's inputs, resolved before anything is trained.

``prepare`` reads and checks the training set (``tasks.training.dataset.read``), splits it by
time (``tasks.training.evaluation.time_split``), resolves the device, the class weight, the run
context and the lineage tags every MLflow run and registered version carries.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.common import registry, storage
from tasks.training import dataset
from tasks.training.candidates import FitContext
from tasks.training.context import RunContext, git_commit, resolve_device
from tasks.training.evaluation import Split, time_split
from tasks.training.families.base import InputSpec
from tasks.training.scaleout import scale_tags

if TYPE_CHECKING:
    from config import Settings
    from tasks.training.dataset import DataVersion

Say = Callable[[str], None]


def say_to_stdout(msg: str) -> None:
    """The training log: one line per step, flushed (a pod's log is its stdout)."""
    print(f"[train] {msg}", flush=True)


@dataclass
class Job:
    """One training run's inputs, resolved: data, split, context and where to log."""

    settings: Settings
    data: DataVersion
    spec: InputSpec
    split: Split
    context: RunContext
    fit: FitContext
    tracking_uri: str
    lineage: dict[str, str]
    commit: str
    say: Say

    @property
    def holdout_y(self) -> np.ndarray:
        return np.asarray(self.split.holdout[self.settings.schema_.label].to_numpy())


def lineage_tags(data: DataVersion, context: RunContext, commit: str) -> dict[str, str]:
    """What a model was trained on, by whom and from which code (``registry.TAG_*``)."""
    return {
        registry.TAG_DAG_ID: context.dag_id,
        registry.TAG_DAG_RUN_ID: context.dag_run_id,
        registry.TAG_REASON: context.reason,
        registry.TAG_DATA_SHA256: data.sha256,
        registry.TAG_DATA_PARTITIONS: data.partition_summary,
        registry.TAG_DATA_ROWS: str(data.rows),
        registry.TAG_TRAINING_SET: data.uri,
        registry.TAG_FEATURE_SERVICE: data.feature_service,
        registry.TAG_FEATURES: ",".join(data.features),
        registry.TAG_GIT_COMMIT: commit,
    }


def _describe(say: Say, uri: str, data: DataVersion, split: Split, label: str) -> None:
    n = split.describe(label)
    say(
        f"training set {uri}: {data.rows} rows, {data.positives} fraud, "
        f"sha256 {data.sha256[:16]}, {len(data.partitions)} partitions, "
        f"feature service {data.feature_service} ({len(data.features)} features)"
    )
    say(
        f"split by time: train {n['train_rows']} ({n['train_positives']} fraud) | valid {n['valid_rows']} "
        f"({n['valid_positives']}) from {split.valid_start} | hold-out {n['holdout_rows']} "
        f"({n['holdout_positives']}) from {split.holdout_start}"
    )


def prepare(
    settings: Settings,
    training_set_uri: str,
    *,
    tracking_uri: str | None = None,
    reason: str | None = None,
    run_context: str | dict[str, Any] | None = None,
    say: Say = say_to_stdout,
) -> Job:
    """Read and check the training set, split it by time, resolve device, context and lineage."""
    storage.configure(settings.storage.s3_endpoint_url)
    context = RunContext.parse(run_context, reason)
    label = settings.schema_.label
    frame, data = dataset.read(settings, training_set_uri)
    spec = InputSpec.from_settings(settings, data.features)
    split = time_split(frame, settings)
    _describe(say, training_set_uri, data, split, label)
    y = split.train[label].to_numpy()
    pos_weight = settings.train.pos_weight or float((y == 0).sum() / max(1, (y == 1).sum()))
    fit = FitContext(
        settings, spec, split, pos_weight, settings.train.seed, resolve_device(settings.train.device)
    )
    commit = git_commit()
    return Job(
        settings=settings,
        data=data,
        spec=spec,
        split=split,
        context=context,
        fit=fit,
        tracking_uri=tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or settings.mlflow.url,
        lineage={**lineage_tags(data, context, commit), **scale_tags(settings)},
        commit=commit,
        say=say,
    )
