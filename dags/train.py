"""
### train: training set → candidates on a GPU pod → quality gate → MLflow registry

Weekly on the cron from `config` (`train.cron`), and whenever the monitor DAG (or a person)
triggers it with a conf: `{"reason": "drift", "drift": {...}}`.

`training_set` builds a point-in-time-correct training set through the feature service and
records its data version (content hash, curated partitions). `train` runs `python -m tasks.training`
in a GPU pod (production: a deferrable KubernetesPodOperator with the pod from config) or as a
local process (local profile): XGBoost and PyTorch MLP candidates, evaluation on a time-based
hold-out, the gate (absolute thresholds, no regression against the champion on the same hold-out,
fairness gap), and registration of the best passing candidate as `challenger`. Its task page
links to the MLflow run and the model card. `publish` updates the `models/fraud` asset, which
schedules deployment; when the gate rejects every candidate it is skipped and says why.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, CronTriggerTimetable, Param, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from config import load_config
from plugins.training import TrainingPodOperator

cfg = load_config()
registered_model = Asset(
    name=cfg.assets.registered_model, uri=f"mlflow-model://{cfg.mlflow.registered_model}"
)

RUN_CONTEXT = (
    '{{ {"dag_id": dag.dag_id, "run_id": run_id, "reason": params.reason, "drift": params.drift} | tojson }}'
)


@dag(
    schedule=CronTriggerTimetable(cfg.train.cron, timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["airloop", "training"],
    doc_md=__doc__,
    params={
        "reason": Param("scheduled", type="string", description="why this run trains"),
        "drift": Param({}, type=["object", "null"], description="the monitor's drift summary"),
        "start": Param(None, type=["string", "null"], description="first event time (ISO 8601)"),
        "end": Param(None, type=["string", "null"], description="last event time, exclusive"),
    },
    default_args={"owner": cfg.owner, "retries": 1, "retry_delay": timedelta(minutes=1)},
)
def train():
    @task
    def training_set(params=None) -> dict:
        """Labelled events joined with their features as of each event, written once per content."""
        from tasks.training.dataset import TrainingDataError, build

        try:
            return build(cfg, start=params.get("start"), end=params.get("end")).as_dict()
        except TrainingDataError as exc:
            raise AirflowSkipException(f"nothing to train on: {exc}") from exc

    fit = TrainingPodOperator(
        task_id="train",
        settings=cfg,
        training_set_uri="{{ ti.xcom_pull(task_ids='training_set')['uri'] }}",
        reason="{{ params.reason }}",
        run_context=RUN_CONTEXT,
    )

    @task(outlets=[registered_model])
    def publish(result: dict, outlet_events=None) -> dict:
        """Announce the new challenger, or say why nothing was registered."""
        if result["status"] != "registered":
            reasons = "\n".join(f"- {r}" for r in result["reasons"])
            raise AirflowSkipException(f"the gate rejected every candidate; nothing registered:\n{reasons}")
        extra = {
            "model": result["registered_model"],
            "version": result["version"],
            "aliases": result["aliases"],
            "model_uri": result["model_uri"],
            "model_sha256": result["model_sha256"],
            "data_sha256": result["data_version"]["sha256"],
            "feature_service": result["data_version"]["feature_service"],
            "reason": result["context"]["reason"],
            "mlflow_run_id": result["mlflow_run_id"],
        }
        from tasks.common.reports import publish_model_card

        card = publish_model_card(cfg, result)
        if card:
            extra["model_card_report"] = f"/airloop/reports/{card.kind}/{card.name}"
        outlet_events[registered_model].extra = extra
        return extra

    training_set() >> fit
    publish(fit.output)


train()
