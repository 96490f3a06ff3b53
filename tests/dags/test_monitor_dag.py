"""The monitor DAG: its structure from config, and its sensor deferring under dag.test().

The full runs (drift → retrain triggers ``train``; stable → no trigger) need the simulated world
with a registered champion: ``tests/monitoring/test_monitor_dag_runs.py``.
"""

from __future__ import annotations

import json
import threading

import pytest

from tests.dag_runs import ROOT


def _monitor_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags" / "monitor.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["monitor"]


def test_monitor_dag_structure_comes_from_config(settings):
    dag = _monitor_dag()
    cfg = settings.monitor
    assert dag.timetable.expression == cfg.cron and dag.max_active_runs == 1 and not dag.catchup
    graph = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
    assert graph == {
        "wait_for_predictions": ["drift_and_performance"],
        "drift_and_performance": ["decide"],
        "decide": ["should_retrain"],
        "should_retrain": ["trigger_train"],
        "trigger_train": [],
    }
    sensor = dag.get_task("wait_for_predictions")
    assert sensor.deferrable and sensor.min_new_predictions == cfg.min_new_predictions
    assert sensor.poke_interval == cfg.poke_interval_seconds
    assert sensor.timeout == cfg.sensor_timeout_hours * 3600
    assert set(sensor.template_fields) >= {"start", "end"}
    trigger = dag.get_task("trigger_train")
    assert trigger.trigger_dag_id == "train" and trigger.skip_when_already_exists
    for task_id in ("drift_and_performance", "decide"):
        names = [link.name for link in dag.get_task(task_id).operator_extra_links]
        assert names == ["Drift report", "Monitoring summary"]


def test_monitor_dag_serializes_with_its_report_links(settings):
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(_monitor_dag()))
    links = dag.get_task("drift_and_performance").operator_extra_link_dict
    assert set(links) == {"Drift report", "Monitoring summary"}
    assert links["Drift report"].xcom_key == "_link_MonitoringReportLink"


@pytest.mark.slow
def test_sensor_defers_and_its_trigger_runs_inline_under_dag_test(dag_settings, monkeypatch):
    """Too few predictions: the sensor defers; dag.test() runs the trigger in line; rows written
    while it polls make it fire; the sensor returns the window. Later tasks are marked success."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from plugins.monitoring import NewPredictionsTrigger
    from tests.plugins.test_monitor_sensor import write_predictions

    monkeypatch.setenv("AIRLOOP__MONITOR__MIN_NEW_PREDICTIONS", "100")
    monkeypatch.setenv("AIRLOOP__MONITOR__POKE_INTERVAL_SECONDS", "0.2")
    from config import load_config

    settings = load_config()
    dag = _monitor_dag()
    write_predictions(settings, 40, tag="early")

    polls: list[dict] = []
    too_few = threading.Event()
    original = NewPredictionsTrigger._check

    def spy(self):
        seen = original(self)
        polls.append(seen)
        if seen["count"] < self.min_new_predictions:
            too_few.set()
        return seen

    monkeypatch.setattr(NewPredictionsTrigger, "_check", spy)

    def write_when_polled():
        if too_few.wait(timeout=120):
            write_predictions(settings, 80, tag="late")

    writer = threading.Thread(target=write_when_polled, daemon=True)
    writer.start()
    run = dag.test(mark_success_pattern="drift_and_performance|decide|should_retrain|trigger_train")
    writer.join(timeout=30)

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["wait_for_predictions"] == "success", states
    assert polls and polls[0]["count"] == 40  # the trigger polled with too few...
    assert polls[-1]["count"] == 120  # ...and fired once the late rows landed
    with create_session() as session:
        value = session.execute(
            select(XComModel.value).where(
                XComModel.run_id == run.run_id,
                XComModel.task_id == "wait_for_predictions",
                XComModel.key == "return_value",
            )
        ).scalar_one()
    window = json.loads(value) if isinstance(value, str) else value
    assert window["count"] == 120 and window["start"] == polls[0]["start"]
