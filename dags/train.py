"""
### train: training set → candidates on a GPU pod → quality gate → MLflow registry

Weekly on the cron from `config` (`train.cron`; the first run is the next one after the DAG is
first seen), and whenever the monitor DAG (or a person)
triggers it with a conf: `{"reason": "drift", "drift": {...}}`.

`training_set` builds a point-in-time-correct training set through the feature service and
records its data version (content hash, curated partitions); with no labelled data it is skipped.
`train` runs `python -m tasks.training` in a GPU pod (production: a deferrable
KubernetesPodOperator with the pod from config; `training_pod.runner: torchrun` runs it under
torchrun, one DDP rank per GPU), as a job on a Ray cluster (`training_pod.runner:
ray_job`, the Ray Jobs API) or as a local process (local profile): XGBoost
and PyTorch MLP candidates, evaluation on a time-based hold-out, the gate (absolute thresholds,
no regression against the champion on the same hold-out, fairness gap), and registration of the
best passing candidate as `challenger`. Its task page links to the MLflow run and the model card.
`publish` updates the `models/fraud` asset, which schedules deployment, and lists the model card
in the airloop reports; when the gate rejects every candidate it is skipped and says why.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronTriggerTimetable, Param, dag

from config import load_config
from plugins.assets import registered_model
from plugins.outcomes import stage_task
from plugins.training import training_operator
from tasks.training.result import TrainingResult

cfg = load_config()

RUN_CONTEXT = (
    '{{ {"dag_id": dag.dag_id, "run_id": run_id, "reason": params.reason, "drift": params.drift} | tojson }}'
)


@dag(
    # No start date and no "run immediately": the first scheduled retrain is the next cron time
    # after the DAG is first seen, not last week's slot fired at once by a fresh stack (which
    # raced the first ingest and trained a second first model beside the one asked for).
    schedule=CronTriggerTimetable(cfg.train.cron, timezone="UTC", run_immediately=timedelta(0)),
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
    @stage_task
    def training_set(params=None) -> dict:
        """Labelled events joined with their features as of each event, written once per content."""
        from tasks.training.dataset import build_or_skip, time_range  # noqa: PLC0415 - pandas and Feast: not at parse time

        return build_or_skip(cfg, **time_range(cfg, params)).as_dict()

    fit = training_operator(
        cfg,
        task_id="train",
        training_set_uri="{{ ti.xcom_pull(task_ids='training_set')['uri'] }}",
        reason="{{ params.reason }}",
        run_context=RUN_CONTEXT,
    )

    @stage_task(outlets=[registered_model])
    def publish(result: dict, outlet_events=None) -> dict:
        """Announce the new challenger, or say why nothing was registered."""
        from tasks.training.publish import announce  # noqa: PLC0415 - mlflow: not at parse time

        extra = announce(cfg, TrainingResult.from_dict(result))
        outlet_events[registered_model].extra = extra
        return extra

    training_set() >> fit
    publish(fit.output)


train()
