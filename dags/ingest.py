"""
### ingest: landing zone → validated, curated transactions

Runs on the hourly cron from `config` **or** as soon as an upstream system posts an event on the
`landing/transactions` asset (`POST /api/v2/assets/events` with `extra.batch_uri`). Every run also
sweeps the landing zone, so a CSV or Parquet file dropped there by hand is picked up too.

Each batch is checked by a Great Expectations suite built from the schema in `config/`
(schema, types, nulls, ranges, allowed values, unique ids, row count). Good batches are appended
idempotently to the curated Parquet dataset (partitioned by event date); bad batches are moved to
`quarantine/<batch_id>/` with `validation.json` and `validation.html`, and the run fails at
`report` naming every failed expectation. The `curated/transactions` asset event carries the row
counts in its extra.

Trigger a specific file by hand with conf `{"batch_uri": "file:///.../landing/my.csv"}`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from config import load_config

cfg = load_config()
landing = Asset(name=cfg.assets.landing, uri=cfg.storage.landing_uri)
curated = Asset(name=cfg.assets.curated, uri=cfg.storage.curated_uri)


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(cfg.ingest.cron, timezone=cfg.ingest.timezone),
        assets=[landing],
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["airloop", "data"],
    doc_md=__doc__,
    default_args={"owner": cfg.owner, "retries": cfg.ingest.retries, "retry_delay": timedelta(seconds=20)},
)
def ingest():
    @task
    def discover(triggering_asset_events=None, dag_run=None) -> list[str]:
        """Batches named by asset events or conf first, then everything pending in landing."""
        from tasks.ingest.batches import pending_batches

        requested = [
            event.extra["batch_uri"]
            for events in (triggering_asset_events or {}).values()
            for event in events
            if event.extra and event.extra.get("batch_uri")
        ]
        if dag_run and dag_run.conf and dag_run.conf.get("batch_uri"):
            requested.append(dag_run.conf["batch_uri"])
        return pending_batches(cfg, requested)

    @task(max_active_tis_per_dag=1)
    def ingest_batch(batch_uri: str) -> dict:
        from tasks.ingest.batches import ingest_batch as route

        return route(batch_uri, cfg).as_dict()

    @task(outlets=[curated])
    def publish(results: list[dict], outlet_events=None) -> dict:
        from tasks.ingest.batches import summarize

        summary = summarize(list(results), cfg)
        if summary["rows_added"] == 0:
            raise AirflowSkipException("no new rows: the curated asset is left untouched")
        outlet_events[curated].extra = summary
        return summary

    @task(trigger_rule="all_done")
    def report(batches: list[str], results: list[dict]) -> None:
        from tasks.ingest.batches import quarantine_message

        results = [r for r in results if r]
        if len(results) < len(batches):
            raise AirflowFailException(f"{len(batches) - len(results)} batches failed to ingest")
        if message := quarantine_message(results):
            raise AirflowFailException(message)

    batches = discover()
    results = ingest_batch.expand(batch_uri=batches)
    publish(results) >> report(batches, results)


ingest()
