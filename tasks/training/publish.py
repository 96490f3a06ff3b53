"""After a training run: announce the new challenger, or say why nothing was registered.

``announce`` is the train DAG's ``publish`` task: it skips (``Skip``, naming every failed check)
when the gate registered nothing; otherwise it copies the version's model card from MLflow into
the reports the Airflow UI lists and returns the ``extra`` of the registered-model asset event,
which the deploy DAG reads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.artifacts

from tasks.common import reports
from tasks.common.outcomes import Skip
from tasks.common.reports import Report
from tasks.training.result import TrainingResult

if TYPE_CHECKING:
    from config import Settings

MODEL_CARDS = "model_cards"


def rejection(result: TrainingResult) -> str:
    """Why nothing was registered: every failed check of every candidate."""
    reasons = "\n".join(f"- {r}" for r in result.reasons)
    return f"the gate rejected every candidate; nothing registered:\n{reasons}"


def event_extra(result: TrainingResult) -> dict[str, Any]:
    """The registered-model asset event's ``extra``: what the deploy DAG rolls out, and why."""
    return {
        "model": result.registered_model,
        "version": result.version,
        "aliases": result.aliases,
        "model_uri": result.model_uri,
        "model_sha256": result.model_sha256,
        "data_sha256": result.data_sha256,
        "feature_service": result.feature_service,
        "reason": result.context.reason,
        "mlflow_run_id": result.mlflow_run_id,
    }


def publish_model_card(settings: Settings, result: TrainingResult) -> Report | None:
    """Copy a registered version's model card from MLflow into the reports the UI lists."""
    if not result.model_card_uri:
        return None
    with tempfile.TemporaryDirectory(prefix="airloop-card-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=result.model_card_uri,
            dst_path=tmp,
            tracking_uri=result.tracking_uri or settings.mlflow.url,
        )
        card = Path(local).read_text(encoding="utf-8")
    model, version = result.registered_model, str(result.version)
    return reports.publish(
        settings,
        MODEL_CARDS,
        f"{model}-v{version}",
        card,
        title=f"{model} v{version} ({result.best_candidate or 'model'})",
        model_version=version,
        mlflow_run_id=result.mlflow_run_id,
        model_uri=result.model_uri,
    )


def announce(settings: Settings, result: TrainingResult) -> dict[str, Any]:
    """The asset event's ``extra`` for a registered version (its model card published), or
    ``Skip`` saying which checks failed when nothing was registered."""
    if not result.registered:
        raise Skip(rejection(result))
    extra = event_extra(result)
    card = publish_model_card(settings, result)
    if card:
        extra["model_card_report"] = card.url
    return extra
