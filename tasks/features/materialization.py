"""Push rewritten feature rows into the online store, with guard rails around Feast's watermark.

- The first run has no watermark, and Feast would start at ``now - ttl``, skipping any replayed
  history, so it materializes from the first rewritten row instead.
- Rows older than the watermark (late or replayed data) are materialized explicitly from the
  first rewritten row through the watermark, so no entity's newer online value is overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.common.clock import utc
from tasks.common.outcomes import Skip
from tasks.features.store import get_store
from tasks.features.tables import FeatureChanges, advance_state

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

    from config import Settings

log = logging.getLogger(__name__)

ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Materialized:
    """One feature view pushed online: how (``initial``, ``incremental``, ``backfill``) and over
    which event-time range."""

    view: str
    mode: str
    start: str
    end: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def materialize(settings: Settings, changes: FeatureChanges) -> list[Materialized]:
    """Push the rows a refresh rewrote (``tasks.features.tables.refresh``) online.

    In-order data goes through ``materialize_incremental``; a first run or rows older than the
    watermark get an explicit ``materialize`` over exactly the range that needs it.
    """
    if changes.start is None or changes.end is None:
        log.info("materialize: no rewritten rows, nothing to push")
        return []
    store = get_store(settings)
    start, end = utc(changes.start), utc(changes.end) + ONE_US
    done = [_materialize_view(store, view, start, end) for view in store.list_feature_views()]
    for item in done:
        log.info("materialized %(view)s (%(mode)s) from %(start)s to %(end)s", item.as_dict())
    return done


def _materialize_view(store: FeatureStore, view: FeatureView, start: datetime, end: datetime) -> Materialized:
    watermark = view.most_recent_end_time
    if watermark is not None and start >= watermark:
        store.materialize_incremental(end_date=end, feature_views=[view.name])
        return Materialized(view.name, "incremental", watermark.isoformat(), end.isoformat())
    until = max(end, watermark) if watermark else end
    store.materialize(start_date=start, end_date=until, feature_views=[view.name])
    mode = "backfill" if watermark else "initial"
    return Materialized(view.name, mode, start.isoformat(), until.isoformat())


def watermarks(settings: Settings) -> dict[str, str | None]:
    """Each feature view's materialization watermark, as Feast's registry records it."""
    store = get_store(settings)
    store.registry.refresh(store.project)
    return {
        v.name: (v.most_recent_end_time.isoformat() if v.most_recent_end_time else None)
        for v in store.list_feature_views()
    }


def materialize_refresh(settings: Settings, changed: Mapping[str, Any]) -> dict[str, Any]:
    """The features DAG's ``materialize`` step, from ``compute``'s ``FeatureChanges.as_dict``.

    ``Skip`` when the refresh rewrote no rows (the online store is current and no event is
    posted, so training is not started for nothing); otherwise materializes and returns the
    features asset event's extra. The batches count as taken in (``tables.advance_state``) only
    after materialization succeeded: when it fails, the next run computes and pushes them again.
    """
    changes = FeatureChanges.from_dict(changed)
    if not changes.rewritten:
        advance_state(settings, changes)
        raise Skip("no new feature rows: the online store is already current")
    done = materialize(settings, changes)
    advance_state(settings, changes)
    return {
        **changes.as_dict(),
        "feature_service": settings.feast.service,
        "materialized": [m.as_dict() for m in done],
    }
