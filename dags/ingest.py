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
counts in its extra; a run that added no rows posts none (`publish` is skipped).

Landing accepts `.csv`, `.csv.gz` and `.parquet` within the size limits in `config` (`ingest`);
any other file is quarantined saying so. A `batch_uri` outside the landing zone is refused unread.

Trigger a specific file by hand with conf `{"batch_uri": "file:///.../landing/my.csv"}`, or check
one without moving it with `airloop validate FILE`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag

from config import load_config
from plugins import assets
from plugins.outcomes import stage_task

cfg = load_config()


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(cfg.ingest.cron, timezone=cfg.ingest.timezone),
        assets=[assets.landing],
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["airloop", "data"],
    doc_md=__doc__,
    default_args={"owner": cfg.owner, "retries": cfg.ingest.retries, "retry_delay": timedelta(seconds=20)},
)
def ingest() -> None:
    @stage_task
    def discover(triggering_asset_events: Any = None, dag_run: Any = None) -> list[str]:
        """Batches named by asset events or conf first, then everything pending in landing."""
        from tasks.ingest.landing import pending_batches, requested_batches  # noqa: PLC0415 - pandas stays out of parsing

        requested = requested_batches(assets.event_extras(triggering_asset_events), dag_run.conf)
        return pending_batches(cfg, requested)

    @stage_task(max_active_tis_per_dag=1)
    def ingest_batch(batch_uri: str) -> dict[str, Any]:
        """Validate one batch and route it: curated and archived, or quarantined."""
        from tasks.ingest import batches  # noqa: PLC0415 - pandas and Great Expectations stay out of parsing

        return batches.ingest_batch(batch_uri, cfg).as_dict()

    @stage_task(outlets=[assets.curated], trigger_rule="all_done")
    def publish(results: list[dict[str, Any] | None], outlet_events: Any = None) -> dict[str, Any]:
        """The curated asset event, with what this run added (also when another batch failed);
        skipped when it added no rows."""
        from tasks.ingest.run_summary import curated_event_extra  # noqa: PLC0415 - pandas stays out of parsing

        extra = curated_event_extra(cfg, results)
        outlet_events[assets.curated].extra = extra
        return extra

    @stage_task(trigger_rule="all_done")
    def report(batches: list[str], results: list[dict[str, Any] | None]) -> None:
        """Fails, naming them, when batches failed to ingest or were quarantined."""
        from tasks.ingest.run_summary import check_run  # noqa: PLC0415 - pandas stays out of parsing

        check_run(batches, results)

    pending = discover()
    results = ingest_batch.expand(batch_uri=pending)
    publish(results) >> report(pending, results)


ingest()
