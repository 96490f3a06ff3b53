"""The point-in-time join of ``offline.training_set``, streamed over time-ordered chunks of events.

``StreamingJoin.join`` is called with consecutive chunks of whole event days, oldest first. For
each feature view it keeps only each entity's latest feature row before the chunk's first day:
an event's as-of row is either that row or one of the chunk's own days, so reading just the
chunk's feature partitions gives the rows the in-memory join gives, while memory holds one chunk
of events, its days' feature rows and one row per entity, whatever the history's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from tasks.features import offline
from tasks.features.store import feature_service, get_store
from tasks.features.tables import TIMESTAMP

if TYPE_CHECKING:
    from feast import FeatureView

    from config import Settings

DAY = "%Y-%m-%d"


@dataclass
class _ViewState:
    """One feature view's source, and its entities' latest rows before ``until``."""

    path: str
    key: str
    columns: list[str]
    ttl: pd.Timedelta | None
    latest: pd.DataFrame
    until: str | None = None
    """The first day not folded into ``latest`` yet (``None``: nothing folded)."""

    @classmethod
    def of(cls, view: FeatureView, columns: list[str]) -> _ViewState:
        key = view.entity_columns[0].name
        empty = pd.DataFrame(columns=[key, TIMESTAMP, *columns])
        return cls(offline.source_path(view), key, columns, offline.view_ttl(view), empty)

    def read(self, first: str, last: str) -> pd.DataFrame:
        return offline.read_days(self.path, self.key, self.columns, first, last)

    def fold(self, rows: pd.DataFrame) -> None:
        """Keep, per entity, the latest of ``latest`` and ``rows`` (the last one on a time tie)."""
        if rows.empty:
            return
        both = rows if self.latest.empty else pd.concat([self.latest, rows], ignore_index=True)
        both = both.sort_values(TIMESTAMP, kind="stable")
        self.latest = both.drop_duplicates(self.key, keep="last").reset_index(drop=True)

    def catch_up(self, first_event: pd.Timestamp) -> None:
        """Fold every day before ``first_event``'s day, one partition at a time; days older than
        the TTL before it can never match, so they are skipped."""
        stop = first_event.strftime(DAY)
        start = self.until
        if self.ttl is not None:
            oldest = (first_event - self.ttl).strftime(DAY)
            start = max(start or oldest, oldest)
        for day in self._days(start, stop):
            self.fold(self.read(day, day))
        self.until = stop

    def _days(self, start: str | None, stop: str) -> list[str]:
        """Partition days in ``[start, stop)`` (``start`` None: from the table's first day)."""
        return [d for d in offline.partition_days(self.path) if (start or "") <= d < stop]


class StreamingJoin:
    """``offline.training_set`` over consecutive chunks of whole days, memory bounded by a chunk."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        store = get_store(settings)
        service, _ = feature_service(settings)
        views = {v.name: v for v in store.list_feature_views()}
        self.states = [
            _ViewState.of(views[p.name], [f.name for f in p.features])
            for p in service.feature_view_projections
            if p.name in views
        ]

    def join(self, events: pd.DataFrame) -> pd.DataFrame:
        """The chunk's events with their features, as ``offline.training_set`` gives them. The
        chunk must hold whole days, each later than every day of the chunks before it."""
        frame = offline.request_frame(events)
        first, last = frame[TIMESTAMP].min(), frame[TIMESTAMP].max()
        for state in self.states:
            state.catch_up(first)
            rows = state.read(first.strftime(DAY), last.strftime(DAY))
            table = rows if state.latest.empty else pd.concat([state.latest, rows], ignore_index=True)
            frame = offline.as_of(frame, table, state.key, state.ttl)
            state.fold(rows)
            state.until = (last + pd.Timedelta(days=1)).strftime(DAY)
        return offline.with_features(self.settings, events, frame)
