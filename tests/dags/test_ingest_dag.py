"""The ingest DAG end to end under dag.test(): real Airflow tasks, real GE, real files."""

from __future__ import annotations

import pytest

from tasks.common import storage
from tasks.ingest.curated import curated_row_count
from tasks.platform import simulate

pytestmark = pytest.mark.slow


def _ingest_dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dag_runs import ROOT

    bag = DagBag(str(ROOT / "dags" / "ingest.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("ingest")


def _states(run) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, []).append(ti.state)
    return states


def _curated_events(dag_run):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "curated/transactions")
            .where(AssetEvent.source_run_id == dag_run.run_id)
        ).all()
    return [r[0] for r in rows]


def test_dag_ingests_good_batches_and_fails_naming_quarantined_ones(dag_settings):
    for i in range(2):
        df = simulate.generate_batch(dag_settings, "stable", index=i, rows=300)
        simulate.write_batch(df, dag_settings.storage.landing_uri, simulate.batch_name("stable", i))
    bad = simulate.make_bad_batch(dag_settings, "nulls", index=7, rows=300)
    simulate.write_bad_batch(bad, dag_settings.storage.landing_uri)

    run = _ingest_dag().test()

    states = _states(run)
    assert run.state == "failed"  # a quarantined batch makes the run red ...
    assert states["publish"] == ["success"]  # ... but the good batches were published
    assert states["report"] == ["failed"]
    assert sorted(states["ingest_batch"]) == ["success"] * 3
    assert curated_row_count(dag_settings) == 600
    [extra] = _curated_events(run)
    assert extra["rows_added"] == 600
    assert extra["total_rows"] == 600
    assert len(extra["batches_ingested"]) == 2
    assert len(extra["batches_quarantined"]) == 1


def test_rerun_with_nothing_new_adds_nothing_and_succeeds(dag_settings):
    df = simulate.generate_batch(dag_settings, "stable", index=0, rows=200)
    uri = simulate.write_batch(df, dag_settings.storage.landing_uri, "by-hand.parquet")
    dag = _ingest_dag()

    first = dag.test(run_conf={"batch_uri": uri})
    assert first.state == "success"
    second = dag.test(run_conf={"batch_uri": uri})  # the same request again

    assert second.state == "success"
    assert _states(second)["publish"] == ["skipped"]  # no event: nothing new for features
    assert _curated_events(second) == []
    assert curated_row_count(dag_settings) == 200
    assert storage.list_files(dag_settings.storage.landing_uri) == []
