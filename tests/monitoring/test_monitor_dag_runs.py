"""The monitor DAG under dag.test() on the simulated world: stable traffic ends with the trigger
skipped; covariate drift triggers the train DAG with reason ``drift``, and the next drifted
window is held back because that train run is still queued. The drift task's "Drift report"
link resolves through the airloop UI plugin to the Evidently report.

Airflow keeps one active URI per asset name, and dag.test() parses every DAG in dags/, so the
runs use the default config's asset URIs (the shared DAG-test home, the default model name) and
point only what the monitor reads at the world: ``storage.data_uri`` (the inference log, the
monitor's store), the MLflow port, and the world's champion registered under the default name.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from tests.dag_runs import ROOT
from tests.monitoring.conftest import COVARIATE, STABLE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_champion(world):
    """The world's champion, registered again under the default config's model name."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from config import read_config

    name = read_config("local", {"AIRLOOP_HOME": str(world.home)}).mlflow.registered_model
    mc = MlflowClient(tracking_uri=world.tracking_uri, registry_uri=world.tracking_uri)
    src = mc.get_model_version_by_alias(world.settings().mlflow.registered_model, "champion")
    try:
        return mc.get_model_version_by_alias(name, "champion")
    except MlflowException:
        pass
    mc.create_registered_model(name)
    logged = src.source.removeprefix("models:/") if src.source.startswith("models:/m-") else None
    copy = mc.create_model_version(
        name, source=src.source, run_id=src.run_id, tags=src.tags, model_id=src.model_id or logged
    )
    mc.set_registered_model_alias(name, "champion", copy.version)
    # the inference log names the version that scored each row
    assert str(copy.version) == world.version, "the copy must carry the logged version number"
    return copy


@pytest.fixture
def monitor_world(world, champion, default_champion, dag_settings, monkeypatch):
    """Settings (and the environment the DAG, its trigger and the UI plugin read) for one store."""
    from config import load_config
    from tasks.monitoring import reference

    def settings_for(store: str):
        monkeypatch.setenv("AIRLOOP__STORAGE__DATA_URI", world.settings().storage.data_uri)
        monkeypatch.setenv("AIRLOOP__MLFLOW__PORT", world.env["AIRLOOP__MLFLOW__PORT"])
        monkeypatch.setenv("MLFLOW_TRACKING_URI", world.tracking_uri)
        monkeypatch.setenv("AIRLOOP__MONITOR__STORE_DIR", store)
        monkeypatch.setenv("AIRLOOP__MONITOR__MIN_NEW_PREDICTIONS", "500")
        settings = load_config()
        assert settings.assets == dag_settings.assets
        assert settings.storage.curated_uri == dag_settings.storage.curated_uri
        assert settings.mlflow.registered_model == default_champion.name
        assert settings.monitor.reports_dir == "monitoring"  # the airloop UI's monitoring reports
        # the champion's reference, already built by the world, cached under the default name
        ref = dataclasses.replace(champion, model_name=default_champion.name)
        reference.save(settings, ref)
        return settings

    return settings_for


def _monitor_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags" / "monitor.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["monitor"]


def _xcom(run, task_id: str, key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.execute(
            select(XComModel.value).where(
                XComModel.run_id == run.run_id, XComModel.task_id == task_id, XComModel.key == key
            )
        ).scalar_one_or_none()
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:  # extra links are stored as the bare URL
        return value


def _train_runs(run_id: str):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(DagRun).where(DagRun.dag_id == "train", DagRun.run_id == run_id)).all()
        return [(r.run_id, r.state, dict(r.conf or {})) for r in rows]


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_stable_traffic_ends_with_the_trigger_skipped(monitor_world):
    settings = monitor_world("dag-stable")
    end = STABLE[0] + pd.Timedelta(hours=8)

    run = _monitor_dag().test(run_conf={"end": end.isoformat()})

    states = _states(run)
    assert run.state == "success", states
    assert states == {
        "wait_for_predictions": "success",
        "drift_and_performance": "success",
        "decide": "success",
        "should_retrain": "success",
        "trigger_train": "skipped",
    }
    window = _xcom(run, "wait_for_predictions")
    assert window["end"] == end.isoformat() and window["count"] >= settings.monitor.min_new_predictions
    result = _xcom(run, "drift_and_performance")
    assert result["rows"] == window["count"] and result["drift"]["judged"] is True
    decision = _xcom(run, "decide")
    assert decision["retrain"] is False and decision["reason"] == "none", decision["detail"]
    assert not _train_runs(f"monitor__{result['window_id']}")


def test_drift_triggers_train_once_and_the_report_link_resolves(monitor_world, monkeypatch):
    """...and when that train run fails, the next drifted window knows it and retries at once
    (``failed_retry_hours`` 0 here) instead of waiting out the 6 h cooldown."""
    from tasks.common.reports import UI_PREFIX as PREFIX
    from tasks.monitoring import store, window
    from tasks.monitoring.results import Window

    monkeypatch.setenv("AIRLOOP__MONITOR__DECISION__FAILED_RETRY_HOURS", "0")
    monkeypatch.setenv("AIRLOOP__MONITOR__DECISION__COOLDOWN_HOURS", "6")  # not the demo's 6 min
    settings = monitor_world("dag-drift")
    # the first drifted window (drift must hold in confirm_windows windows in a row)
    first = window.run_window(
        settings,
        Window.of(COVARIATE[0] + pd.Timedelta(hours=10), COVARIATE[0] + pd.Timedelta(hours=14)),
    )
    assert first.drift.data_drift and settings.monitor.decision.confirm_windows == 2
    end = COVARIATE[0] + pd.Timedelta(hours=18)
    dag = _monitor_dag()

    run = dag.test(run_conf={"end": end.isoformat()})

    states = _states(run)
    assert run.state == "success", states
    assert set(states.values()) == {"success"}, states
    sensed = _xcom(run, "wait_for_predictions")
    assert sensed["start"] == first.end  # continues from the last monitored window
    result = _xcom(run, "drift_and_performance")
    assert result["drift"]["data_drift"] is True
    decision = _xcom(run, "decide")
    assert decision["retrain"] is True and decision["reason"] == "drift", decision["detail"]
    assert decision["train_run_id"] == f"monitor__{result['window_id']}"
    [(run_id, _, conf)] = _train_runs(decision["train_run_id"])
    assert conf["reason"] == "drift" and conf["drift"]["window_id"] == result["window_id"]
    assert conf["drift"]["drift_share"] >= conf["drift"]["share_threshold"]
    [recorded] = store.decisions(settings, since=end - pd.Timedelta(seconds=1)).to_dict("records")
    assert recorded["retrain"] and recorded["window_id"] == result["window_id"]

    client, links = _links_resolve(run, result, first.window_id)

    # the next drifted window: that train run is still queued, so no second retrain
    later = dag.test(run_conf={"end": (end + pd.Timedelta(hours=2)).isoformat()})
    assert _states(later)["trigger_train"] == "skipped", _states(later)
    held = _xcom(later, "decide")
    assert held["reason"] == "drift" and not held["retrain"] and held["blocked_by"] == "running"
    assert held["last_retrain_run_id"] == run_id and held["last_retrain_state"] == "queued"

    # the train run fails: the next drifted window is told by Airflow, and retries
    _finish_train_run(run_id)
    retry = dag.test(run_conf={"end": (end + pd.Timedelta(hours=4)).isoformat()})
    assert _states(retry)["trigger_train"] == "success", _states(retry)
    again = _xcom(retry, "decide")
    assert again["retrain"] and again["retry_of"] == run_id and again["last_retrain_state"] == "failed", again
    [(retry_run, _, retry_conf)] = _train_runs(again["train_run_id"])
    assert retry_run != run_id and retry_conf["reason"] == "drift"
    page = client.get(links["summary"].removeprefix(PREFIX)).text
    assert f"The last retrain ({run_id}) failed; window {again['window_id']} retried it." in page
    assert "retrain: drift (retry)" in page
    _finish_train_run(retry_run)


def _links_resolve(run, result: dict, first_window: str):
    """The task's "Drift report" button resolves, for a logged-in user, to the window's report."""
    from tasks.common.reports import UI_PREFIX as PREFIX
    from tests.plugins.test_ui_plugin import authenticated_client

    # the link Airflow stored at the end of the task...
    links = _xcom(run, "drift_and_performance", "monitoring_links")
    assert links["report"] == f"{PREFIX}/reports/monitoring/{result['window_id']}"
    assert _xcom(run, "drift_and_performance", "_link_MonitoringReportLink") == links["report"]
    assert _xcom(run, "decide", "_link_MonitoringReportLink") == links["report"]
    # ...served by the airloop UI plugin's app to a logged-in user: the Evidently report of that window
    client = authenticated_client()
    page = client.get(links["report"].removeprefix(PREFIX))
    assert page.status_code == 200 and page.text.lstrip().lower().startswith("<!doctype html")
    assert all(c in page.text for c in result["drift"]["drifted_columns"])
    summary = client.get(links["summary"].removeprefix(PREFIX))
    assert summary.status_code == 200 and f"href='{result['window_id']}'" in summary.text
    listed = {r["name"]: r for r in client.get("/api/reports", params={"kind": "monitoring"}).json()}
    assert {first_window, result["window_id"], "index"} <= set(listed)
    assert listed[result["window_id"]]["model_version"] == result["model_version"]
    return client, links


def _finish_train_run(run_id: str) -> None:
    """The triggered train run never ran here (no scheduler): close it for later tests."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(update(DagRun).where(DagRun.run_id == run_id).values(state="failed"))
