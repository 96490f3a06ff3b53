"""The features DAG under dag.test(): real Airflow tasks, real Feast, real files."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.features import store, tables
from tasks.features.materialization import watermarks
from tasks.features.online import online_features
from tests.features.conftest import land

pytestmark = pytest.mark.slow


def _features_dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dag_runs import ROOT

    bag = DagBag(str(ROOT / "dags" / "features.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("features")


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _feature_events(run) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "features/transactions")
            .where(AssetEvent.source_run_id == run.run_id)
        ).all()
    return [r[0] for r in rows]


def test_three_runs_each_materialize_their_new_rows_and_update_the_asset(dag_settings):
    dag = _features_dag()
    seen = []
    for run_number, hour in enumerate((0, 3, 7)):
        land(dag_settings, hour, rows=600)
        run = dag.test()
        assert run.state == "success", _states(run)
        [extra] = _feature_events(run)
        assert extra["rows"]["customer_activity"] > 0
        assert extra["feature_service"] == "fraud_features_v1"
        assert {m["mode"] for m in extra["materialized"]} == (
            {"initial"} if run_number == 0 else {"incremental"}
        )
        store.forget_stores()  # read what the DAG's tasks wrote, not a cached registry
        marks = watermarks(dag_settings)
        assert all(pd.Timestamp(m) > pd.Timestamp(extra["end"]) for m in marks.values())
        seen.append(marks["customer_activity"])
        latest = tables.read_table(dag_settings, "customer_activity").sort_values("event_timestamp").tail(5)
        online = online_features(
            dag_settings,
            pd.DataFrame(
                {
                    "customer_id": latest["customer_id"],
                    "merchant_id": 0,
                    "amount": 1.0,
                    "event_timestamp": pd.Timestamp(extra["end"]),
                }
            ),
        )
        assert online["customer_found"].all()
        # each customer's newest value is the one this run landed
        got = online.groupby(latest["customer_id"].to_numpy())["customer_last_txn_unix_s"].max()
        want = latest.groupby("customer_id")["customer_last_txn_unix_s"].max()
        pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)
    assert seen == sorted(seen) and len(set(seen)) == 3
    # definitions were applied once, on the first run, then left alone
    assert store.apply(dag_settings) == []


def test_a_run_without_new_curated_data_skips_materialize(dag_settings):
    land(dag_settings, 0, rows=300)
    dag = _features_dag()
    assert dag.test().state == "success"
    run = dag.test()
    states = _states(run)
    assert states["materialize"] == "skipped"
    assert _feature_events(run) == []
