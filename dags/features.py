"""
### features: curated transactions → feature tables → Feast online store

Runs whenever the ingest DAG updates the `curated/transactions` asset. `compute` recomputes the
windowed customer and merchant features for the event dates the new batches can change (point-in-time
correct: a row at `t` uses events at or before `t` only). `apply` registers the Feast definitions in
`feature_repo/` only when they changed. `materialize` pushes the new rows into the online store
(incrementally from Feast's watermark; late or replayed data is backfilled over exactly its range)
and updates the `features/transactions` asset, which schedules training; it is skipped, and posts
no event, when no feature row changed. The curated batches count as taken in only once
`materialize` succeeded, so a failed run is redone by the next one.

Run by hand from the CLI with `airloop features refresh` (or `python -m tasks.features refresh`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag

from config import load_config
from plugins import assets
from plugins.outcomes import stage_task

cfg = load_config()


@dag(
    schedule=[assets.curated],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["airloop", "features"],
    doc_md=__doc__,
    default_args={"owner": cfg.owner, "retries": 2, "retry_delay": timedelta(seconds=20)},
)
def features() -> None:
    @stage_task
    def compute() -> dict[str, Any]:
        """New curated batches → rewritten feature-table partitions and the changed time range."""
        from tasks.features.tables import refresh  # noqa: PLC0415 - pandas stays out of parsing

        return refresh(cfg, advance=False).as_dict()

    @stage_task
    def apply() -> list[str]:
        """Register the Feast definitions, only when they changed."""
        from tasks.features import store  # noqa: PLC0415 - Feast stays out of parsing

        return store.apply(cfg)

    @stage_task(outlets=[assets.features])
    def materialize(changed: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
        """Push the rewritten rows online and post the features asset event; skipped when none."""
        from tasks.features.materialization import materialize_refresh  # noqa: PLC0415 - Feast stays out of parsing

        extra = materialize_refresh(cfg, changed)
        outlet_events[assets.features].extra = extra
        return extra

    changed = compute()
    apply() >> materialize(changed)


features()
