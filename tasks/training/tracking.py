"""What a training run writes to MLflow besides its models: params, tags, curves, data files.

The parent run holds what went in (data version, split, feature service, run context, lineage
tags); each candidate's nested run holds its hyper-parameters, per-round or per-epoch curves and
hold-out metrics. ``signature`` and ``input_example`` describe a logged model's input.
"""

from __future__ import annotations

import math
import time
from importlib.metadata import version
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema, TensorSpec

from tasks.training.families.base import InputSpec, model_input
from tasks.training.registration import tag_value

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tasks.training.candidates import Candidate
    from tasks.training.families import Fitted
    from tasks.training.gate import Decision
    from tasks.training.job import Job
    from tasks.training.metrics import Metrics

BATCH = 1000
"""Metrics per ``log_batch`` call (MLflow's limit)."""


def log_inputs(job: Job, todo: list[Candidate]) -> None:
    """Params, tags and artifacts of the parent run: what went in."""
    t = job.settings.train
    mlflow.set_tags({**{k: tag_value(v) for k, v in job.lineage.items()}, "airloop.role": "training"})
    mlflow.log_params(
        {
            "training_set_uri": job.data.uri,
            "data_sha256": job.data.sha256,
            "data_rows": job.data.rows,
            "data_positives": job.data.positives,
            "data_partitions": job.data.partition_summary,
            "feature_service": job.data.feature_service,
            "n_features": len(job.data.features),
            "seed": job.fit.seed,
            "device": job.fit.device,
            "pos_weight": round(job.fit.pos_weight, 4),
            "holdout_fraction": t.holdout_fraction,
            "validation_fraction": t.validation_fraction,
            "candidates": ",".join(c.name for c in todo)[:500],
        }
    )
    sizes = job.split.describe(job.settings.schema_.label)
    mlflow.log_dict(job.data.as_dict(), "data_version.json")
    mlflow.log_dict(job.context.as_dict(), "run_context.json")
    mlflow.log_dict({"features": job.data.features, "input_columns": job.spec.columns}, "features.json")
    mlflow.log_dict(sizes, "split.json")
    mlflow.log_metrics({f"split_{k}": float(v) for k, v in sizes.items() if isinstance(v, int)})


def log_history(client: MlflowClient, run_id: str, history: dict[str, list[float]]) -> None:
    """Per-round (XGBoost) or per-epoch (MLP) curves as MLflow metric steps (NaN left out)."""
    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(v), now, step)
        for key, values in history.items()
        for step, v in enumerate(values)
        if not math.isnan(float(v))
    ]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])


def signature(spec: InputSpec) -> ModelSignature:
    """Numbers as doubles (required), categories as optional strings; one probability per row."""
    inputs: list[ColSpec | TensorSpec] = [
        ColSpec("double", c, required=True) for c in [*spec.features, *spec.raw_numeric]
    ]
    inputs += [ColSpec("string", c, required=False) for c in spec.raw_categorical]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([TensorSpec(np.dtype("float64"), (-1,))]))


def input_example(frame: pd.DataFrame, spec: InputSpec) -> pd.DataFrame:
    """A few complete rows of model input (zeros for missing numbers when too few are complete)."""
    example = model_input(frame, spec)
    complete = example.dropna()
    return (complete if len(complete) >= 3 else example.fillna(0.0)).head(5).reset_index(drop=True)


def pip_requirements(family: str) -> list[str]:
    """What a served model needs installed, pinned to the versions it was trained with."""
    pkgs = ["mlflow", "numpy", "pandas", "cloudpickle"] + (["xgboost"] if family == "xgboost" else [])
    return [f"{p}=={version(p)}" for p in pkgs]


def log_candidate(candidate: Candidate) -> None:
    """Tags and hyper-parameters of a candidate's nested run, before it trains."""
    mlflow.set_tags({"family": candidate.family, "candidate": candidate.name, "airloop.role": "candidate"})
    mlflow.log_params({f"hp_{k}": v for k, v in candidate.params.items()} | {"family": candidate.family})


def log_fit(client: MlflowClient, run_id: str, fitted: Fitted) -> None:
    """How training went: its curves, best iteration, device and calibration."""
    log_history(client, run_id, fitted.history)
    a, b = fitted.model.calibration
    mlflow.log_params(
        {
            "best_iteration": fitted.best_iteration,
            "device": fitted.device,
            "calibration_a": round(a, 6),
            "calibration_b": round(b, 6),
        }
    )


def log_gate(metrics: Metrics, decision: Decision, train_seconds: float) -> None:
    """A candidate's hold-out metrics and every check of the gate (``gate.json``)."""
    mlflow.log_metrics(
        metrics.scalars() | {"train_seconds": train_seconds, "gate_passed": float(decision.passed)}
    )
    mlflow.log_dict(decision.as_dict(), "gate.json")
    mlflow.set_tags({"gate.passed": str(decision.passed), "gate.failed": ",".join(decision.failed) or "-"})
