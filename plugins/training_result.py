"""What every training operator shares (``plugins.training``'s local and Ray job operators,
``plugins.training_pod``'s pod): the entrypoint's arguments from the templated fields, the
entrypoint's JSON read back as a ``TrainingResult``, and the task page's links to the MLflow run
and the model card."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.exceptions import AirflowException

from plugins.links import XComLink
from tasks.training.result import LINK_MODEL_CARD, LINK_RUN, TrainingResult

if TYPE_CHECKING:
    from airflow.sdk import Context

    from config import Settings

LINKS_XCOM_KEY = "training_links"
POD_NAME = "airloop-train"
TRAINING_FIELDS = ("training_set_uri", "reason", "run_context")


class _TrainingLink(XComLink):
    source_key = LINKS_XCOM_KEY


class MLflowRunLink(_TrainingLink):
    """The training run in the MLflow UI: params, curves per round/epoch, the gate's checks."""

    name = "MLflow run"
    field = LINK_RUN


class ModelCardLink(_TrainingLink):
    """The model card (HTML with ROC/PR, calibration, importance and fairness plots)."""

    name = "Model card"
    field = LINK_MODEL_CARD


class TrainingResultMixin:
    """What the training operators share: the entrypoint's arguments, the typed result, the links."""

    operator_extra_links: Collection[BaseOperatorLink] = (MLflowRunLink(), ModelCardLink())
    ui_color = "#c7e9c0"

    training_set_uri: str
    reason: str
    run_context: str
    mlflow_ui: str

    def keep_training_fields(
        self, settings: Settings, training_set_uri: str, reason: str, run_context: str
    ) -> None:
        """The templated fields both operators take, and the MLflow UI their links point at."""
        self.training_set_uri, self.reason, self.run_context = training_set_uri, reason, run_context
        self.mlflow_ui = settings.mlflow.ui_url

    def entrypoint_arguments(self) -> list[str]:
        """The entrypoint's arguments after ``-m tasks.training``, from the rendered fields."""
        return [
            "--training-set-uri",
            self.training_set_uri,
            "--reason",
            self.reason,
            "--run-context",
            self.run_context,
        ]

    def finish(self, context: Context, raw: Any) -> dict[str, Any]:
        """Check the entrypoint's JSON as a ``TrainingResult``, push the links, return it."""
        try:
            result = TrainingResult.from_dict(raw)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise AirflowException(
                f"the training entrypoint returned no result ({exc!r}): {raw!r:.2000}"
            ) from exc
        context["ti"].xcom_push(key=LINKS_XCOM_KEY, value=result.public_links(self.mlflow_ui))
        return result.as_dict()
