"""The train DAG under dag.test(): real Feast training set, the training operator's local runner
(the pod's entrypoint as a child process), a real MLflow server, and the models asset."""

from __future__ import annotations

import pytest

from tests.dag_runs import load_dag, xcom
from tests.services import mlflow_login

pytestmark = pytest.mark.slow


def _train_dag():
    return load_dag("train.py", "train")


def _asset_extras(run, name: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == name)
            .where(AssetEvent.source_run_id == run.run_id)
        ).all()
    return [r[0] for r in rows]


def test_drift_triggered_run_trains_registers_and_links_to_mlflow(
    world, airflow_db, monkeypatch, mlflow_client
):
    # The configured model name: the models asset's URI derives from it, and Airflow keeps one
    # active URI per asset name (every other DAG test parses dags/ with the default config).
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AIRLOOP__MLFLOW__REGISTERED_MODEL", raising=False)
    from config import load_config

    model = load_config().mlflow.registered_model
    dag = _train_dag()

    run = dag.test(run_conf={"reason": "drift", "drift": {"share_drifted": 0.42}})

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert states == {"training_set": "success", "train": "success", "publish": "success"}
    [extra] = _asset_extras(run, "models/fraud")
    assert extra["model"] == model and extra["reason"] == "drift"
    assert extra["data_sha256"] == world.data_sha256
    version = mlflow_client.get_model_version(model, extra["version"])
    from tasks.common import registry

    assert version.tags[registry.TAG_DAG_ID] == "train"
    assert version.tags[registry.TAG_DAG_RUN_ID] == run.run_id
    assert version.tags[registry.TAG_REASON] == "drift"
    # the task page links to the MLflow run and the model card
    links = xcom(run, "train", "training_links")
    assert links["run"].startswith(world.tracking_uri) and extra["mlflow_run_id"] in links["run"]
    assert "get-artifact" in links["model_card"]
    import requests

    # the link opens in a browser that logs in to MLflow; without a login it is refused
    assert requests.get(links["model_card"], timeout=30).status_code == 401
    card = requests.get(links["model_card"], auth=mlflow_login(), timeout=30)
    assert card.status_code == 200 and "<html" in card.text.lower()
    # and the card is listed in the airloop reports view of the Airflow UI
    from config import load_config
    from tasks.common import reports

    # (other tests of the session publish cards of their own versions beside it)
    cards = reports.list_reports(load_config(), "model_cards")
    [listed] = [c for c in cards if extra["model_card_report"].endswith(c.name)]
    assert listed.model_version == extra["version"]
    assert reports.read_report(load_config(), "model_cards", listed.name) == card.text
