"""
### monitor: new predictions → drift and live performance → retrain decision → train

On the cron from `config` (`monitor.cron`, every 15 minutes by default); one run at a time.

`wait_for_predictions` is a deferrable sensor: it waits in the triggerer (no worker slot) until
the inference log holds `monitor.min_new_predictions` live predictions (`monitor.routes`) since
the end of the last monitored window, polling every `monitor.poke_interval_seconds`, and fails
after `monitor.sensor_timeout_hours`. `drift_and_performance` measures that window against the
champion's training reference with Evidently (data drift per input column, score drift) and, on
predictions whose delayed labels have arrived, live ROC AUC, precision and recall against the
champion's hold-out; it stores the metrics and writes the HTML report (the task's "Drift report"
and "Monitoring summary" buttons). `decide` retrains when drift or performance crosses its
threshold, unless a `train` run is queued or running or the last retrain is within
`monitor.decision.cooldown_hours`; when the last retrain it triggered failed, the next triggered
window retries after `monitor.decision.failed_retry_hours` instead (the summary page says so).
Every decision is recorded with its reason and what became of the last retrain. `should_retrain`
lets `trigger_train` run only on a retrain, which starts `train` with the reason and the numbers as
its conf.

Params `start` / `end` (ISO 8601) monitor a chosen window (a backfill, a replay). No champion
yet: the run ends with `drift_and_performance` skipped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import CronTriggerTimetable, Param, dag, task

from config import load_config
from plugins.monitoring import NewPredictionsSensor, dag_run_state, monitoring_task, running_dag_runs

cfg = load_config()
TRAIN_DAG_ID = "train"


@dag(
    schedule=CronTriggerTimetable(cfg.monitor.cron, timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["airloop", "monitoring"],
    doc_md=__doc__,
    params={
        "start": Param(None, type=["string", "null"], description="window start (default: last end)"),
        "end": Param(None, type=["string", "null"], description="window end (default: when enough came)"),
    },
    default_args={"owner": cfg.owner, "retries": 1, "retry_delay": timedelta(minutes=1)},
)
def monitor() -> None:
    wait = NewPredictionsSensor(
        task_id="wait_for_predictions",
        min_new_predictions=cfg.monitor.min_new_predictions,
        start="{{ params.start or '' }}",
        end="{{ params.end or '' }}",
        poke_interval=cfg.monitor.poke_interval_seconds,
        timeout=cfg.monitor.sensor_timeout_hours * 3600,
    )

    @monitoring_task
    def drift_and_performance(window: dict[str, Any]) -> dict[str, Any]:
        """Drift and live performance of the window, stored, with its HTML report."""
        from tasks.monitoring.window import monitor_sensed  # noqa: PLC0415 - Evidently loads in the task

        return monitor_sensed(cfg, window)

    @monitoring_task
    def decide(result: dict[str, Any], ti: Any = None) -> dict[str, Any]:
        """Retrain or not, and why; recorded once per window."""
        from tasks.monitoring.decision import decide_window  # noqa: PLC0415 - pandas loads in the task

        return decide_window(
            cfg,
            result,
            running_retrains=running_dag_runs(ti, TRAIN_DAG_ID),
            run_state=dag_run_state(ti, TRAIN_DAG_ID),
        )

    @task.short_circuit
    def should_retrain(decision: dict[str, Any]) -> dict[str, Any] | bool:
        """The train DAG's conf when the decision is to retrain; otherwise skip the trigger."""
        from tasks.monitoring.decision import retrain_conf  # noqa: PLC0415 - pandas loads in the task

        return retrain_conf(decision)

    TriggerDagRunOperator(
        task_id="trigger_train",
        trigger_dag_id=TRAIN_DAG_ID,
        trigger_run_id="{{ ti.xcom_pull(task_ids='decide')['train_run_id'] }}",
        conf=should_retrain(decide(drift_and_performance(wait.output))),  # type: ignore[arg-type]
        skip_when_already_exists=True,
        openlineage_inject_parent_info=False,
    )


monitor()
