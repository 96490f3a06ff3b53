"""
### features: curated transactions → feature tables → Feast online store

Runs whenever the ingest DAG updates the `curated/transactions` asset. `compute` recomputes the
windowed customer and merchant features for the event dates the new batches can change (point-in-time
correct: a row at `t` uses events at or before `t` only). `apply` registers the Feast definitions in
`feature_repo/` only when they changed. `materialize` pushes the new rows into the online store
(incrementally from Feast's watermark; late or replayed data is backfilled over exactly its range)
and updates the `features/transactions` asset, which schedules training.

Run by hand from the CLI with `python -m tasks.features.store refresh`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from config import load_config

cfg = load_config()
curated = Asset(name=cfg.assets.curated, uri=cfg.storage.curated_uri)
features_asset = Asset(name=cfg.assets.features, uri=cfg.storage.features_uri)


@dag(
    schedule=[curated],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["airloop", "features"],
    doc_md=__doc__,
    default_args={"owner": cfg.owner, "retries": 2, "retry_delay": timedelta(seconds=20)},
)
def features():
    @task
    def compute() -> dict:
        """New curated batches → rewritten feature-table partitions and the changed time range."""
        from tasks.features.tables import refresh

        return refresh(cfg)

    @task
    def apply() -> list[str]:
        from tasks.features.store import apply as apply_definitions

        return apply_definitions(cfg)

    @task(outlets=[features_asset])
    def materialize(changed: dict, outlet_events=None) -> list[dict]:
        from tasks.features.store import materialize as push

        if not changed["start"]:
            raise AirflowSkipException("no new feature rows: the online store is already current")
        done = push(cfg, changed)
        outlet_events[features_asset].extra = {
            "batches": changed["batches"],
            "dates": changed["dates"],
            "rows": changed["rows"],
            "start": changed["start"],
            "end": changed["end"],
            "feature_service": cfg.feast.service,
            "materialized": done,
        }
        return done

    changed = compute()
    apply() >> materialize(changed)


features()
