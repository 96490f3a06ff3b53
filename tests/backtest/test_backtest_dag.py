"""The backtest decides a window as the real monitor DAG does under ``dag.test()``.

A short covariate-drift backtest runs to its first retrain decision. That window's data is then
written the way serving writes it: every replayed hour the champion served up to the window's
end as live ``champion`` predictions in the inference log (the champion's scores, the raw
request columns), their labels landing when the replay had them land (``labeled_at``); the
policy's earlier windows go to the monitor's store (the windows ``decide`` reads back); the
champion is registered in an MLflow registry (a SQLite one: the DAG asks the registry for the
champion's version, and finds its reference, the backtest champion's, in the monitor's cache).
The monitor DAG then runs under ``dag.test()`` with the backtest file's settings: its sensor
finds the window after the last stored one, its drift task reads the inference log, its decide
task decides; the decision (retrain, reason) and the numbers it rests on must be the backtest's.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pandas as pd
import pytest

from tasks.backtest import spec
from tasks.backtest.run import backtest
from tests.backtest.conftest import SMALL

pytestmark = pytest.mark.slow


class FirstRetrain:
    """Keeps the first window the backtest decides to retrain on, with the state it had."""

    def __init__(self) -> None:
        self.found: dict[str, Any] | None = None

    def __call__(self, run: Any, result: Any, made: Any) -> None:
        if self.found is None and made.retrain:
            self.found = {
                "champion": run.champion,
                "rows": list(run.rows),
                "served": dict(run.served),
                "result": result,
                "decision": made.as_dict(),
            }


def _predictions(settings: Any, hour: Any, frame: pd.DataFrame, model: Any) -> pd.DataFrame:
    """One replayed hour as serving logs it: live champion predictions of version 1, with the
    model's input (the request's columns and the feature service's features)."""
    schema = settings.schema_
    out = frame[[schema.key, *model.model.spec.columns]].copy()
    out.insert(0, "request_id", [f"r-{hour}-{i}" for i in range(len(frame))])
    out["timestamp"] = frame[schema.timestamp].to_numpy()
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    out["route"], out["traffic"], out["model_version"] = "champion", "live", "1"
    out["score"] = model.score(frame)
    return out


def _labels(settings: Any, frame: pd.DataFrame) -> pd.DataFrame:
    from tasks.backtest.history import LABELED_AT
    from tasks.serving.logfiles import LABEL_COLUMNS

    out = pd.DataFrame(
        {
            "request_id": None,
            "transaction_id": frame[settings.schema_.key].to_numpy(),
            "label": frame[settings.schema_.label].astype("int8").to_numpy(),
            LABELED_AT: pd.to_datetime(frame[LABELED_AT], utc=True).to_numpy(),
        }
    )
    out[LABELED_AT] = pd.to_datetime(out[LABELED_AT], utc=True)
    out["label_id"] = [f"l-{i}" for i in range(len(out))]
    out["source"], out["client"] = "backtest", None
    return out[list(LABEL_COLUMNS)]


def _write_world(settings: Any, s: spec.Spec, found: dict[str, Any]) -> None:
    """The inference log, the monitor's store and the champion's cached reference."""
    from tasks.backtest import features
    from tasks.backtest import history as hist
    from tasks.monitoring import reference, store
    from tasks.serving import logfiles

    h = hist.build(settings, s)
    features.add(settings, h, features.warmup_hours(settings, s.rows_per_hour, h.start))
    model = found["champion"]
    for hour, model_id in sorted(found["served"].items()):
        assert model_id == model.id  # before the first retrain the first champion served all
        frame = h.hours[hour]
        preds = _predictions(settings, hour, frame, model)
        logfiles.write_hourly(logfiles.predictions_uri(settings), preds, "timestamp", f"p-{hour}.parquet")
        labels = _labels(settings, frame)
        logfiles.write_hourly(logfiles.labels_uri(settings), labels, hist.LABELED_AT, f"l-{hour}.parquet")
    name = settings.mlflow.registered_model
    for row in found["rows"]:  # the same champion, as the registry names it
        store.record_window(settings, row | {"model_name": name, "model_version": "1"})
    ref = dataclasses.replace(model.reference, model_name=name, model_version="1")
    reference.save(settings, ref)


def _register(tracking_uri: str, name: str, sha: str) -> None:
    from tasks.common import registry

    client = registry.client(tracking_uri)
    client.create_registered_model(name)
    tags = {registry.TAG_TRAINING_SET: "file:///backtest/training-set.parquet", registry.TAG_DATA_SHA256: sha}
    version = client.create_model_version(name, source="file:///backtest/model", tags=tags)
    client.set_registered_model_alias(name, registry.CHAMPION, version.version)


def _monitor_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from tests.dag_runs import ROOT

    bag = DagBag(str(ROOT / "dags" / "monitor.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["monitor"]


def _xcom(run: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.execute(
            select(XComModel.value).where(
                XComModel.run_id == run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == "return_value",
            )
        ).scalar_one_or_none()
    return json.loads(value) if isinstance(value, str) else value


def test_the_monitor_dag_decides_a_replayed_window_as_the_backtest_did(dag_settings, tmp_path, monkeypatch):
    from config import load_config

    data = {**SMALL, "scenario": "covariate_drift", "days": 1, "onset_day": 0.25, "reference": False}
    s = spec.parse(data | {"policies": [{"name": "default"}]})
    first = FirstRetrain()
    backtest(s, observe=first)
    found = first.found
    assert found is not None, "the backtest never decided to retrain"
    for key, value in spec.overrides(SMALL["settings"]).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRLOOP__SIMULATE__BATCH_MINUTES", "60")
    monkeypatch.setenv("AIRLOOP__STORAGE__DATA_URI", (tmp_path / "data").as_uri())
    monkeypatch.setenv("AIRLOOP__MONITOR__STORE_DIR", "backtest-dag")
    monkeypatch.setenv("AIRLOOP__MONITOR__MIN_NEW_PREDICTIONS", "100")
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    settings = load_config()
    assert settings.assets == dag_settings.assets  # one active URI per asset name in Airflow
    _register(tracking_uri, settings.mlflow.registered_model, found["champion"].reference.data_sha256)
    _write_world(settings, s, found)
    result = found["result"]

    run = _monitor_dag().test(run_conf={"end": result.end})

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    sensed = _xcom(run, "wait_for_predictions")
    assert (sensed["start"], sensed["end"]) == (result.start, result.end)
    measured = _xcom(run, "drift_and_performance")
    assert measured["rows"] == result.rows
    assert measured["drift"]["share"] == pytest.approx(result.drift.share)
    live, replayed = measured["performance"]["live"], result.performance.live
    assert (live["rows"], live["positives"]) == (replayed.rows, replayed.positives)  # labels landed alike
    assert live["roc_auc"] == pytest.approx(replayed.roc_auc)
    assert measured["estimate"]["roc_auc"] == pytest.approx(result.estimate["roc_auc"])
    decided, ours = _xcom(run, "decide"), found["decision"]
    assert (decided["retrain"], decided["reason"]) == (ours["retrain"], ours["reason"]), (decided, ours)
    assert decided["triggers"] == ours["triggers"]
    assert states["trigger_train"] == "success"
    _close_train_run(decided["train_run_id"])


def _close_train_run(run_id: str) -> None:
    """The triggered train run never runs here (no scheduler): closed, so that later DAG tests
    do not find a retrain queued."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(update(DagRun).where(DagRun.run_id == run_id).values(state="failed"))
