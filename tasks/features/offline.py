"""Point-in-time-correct training sets through the versioned feature service.

Each event gets, per feature view of the service, the entity's latest feature row strictly
before the event's own time (the row at its time already contains the event itself) and no
older than the view's TTL; then the service's on-demand view runs on the result through Feast's
own transformation, the code the online path runs.

The as-of join is done here (``pandas.merge_asof`` per view, reading only the partitions the
events' time range needs) rather than by Feast's dask offline store, whose join builds every
(event, feature row) pair of a key: 100k events took 275 s and 8 GB that way. The semantics are
Feast's; the training/serving skew tests hold the two paths to equal values.

``point_in_time`` is that join over any source of feature rows: ``training_set`` reads the views'
Parquet sources through the registry's service; the backtest joins the tables it computes for its
replayed history in memory (``tasks.backtest.features``) through the service as declared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from feast import FeatureView, FileSource

from feature_repo.definitions import REQUEST_TIME, feature_definitions
from tasks.common import storage
from tasks.features.store import feature_service, get_store, service_features
from tasks.features.tables import TIMESTAMP, unix_seconds, utc_us

if TYPE_CHECKING:
    from feast import FeatureService, OnDemandFeatureView

    from config import Settings

_ROW = "_row"
_FEATURE_TS = "_feature_ts"


@dataclass(frozen=True)
class Service:
    """A feature service and what a point-in-time join reads of it: its feature views with their
    entity's join key, and its on-demand views, by name."""

    service: FeatureService
    views: dict[str, tuple[FeatureView, str]]
    odfvs: dict[str, OnDemandFeatureView]

    @property
    def names(self) -> list[str]:
        """The service's feature columns, in order (``store.feature_names``)."""
        return service_features(self.service)


TableReader = Callable[[FeatureView, str, list[str], pd.Timestamp, pd.Timestamp], pd.DataFrame]
"""``(view, key, columns, lo, hi)`` -> the view's feature rows (key, time, columns) in ``[lo, hi]``."""


def registered(settings: Settings) -> Service:
    """The feature service as the registry has it (what training and serving use)."""
    store = get_store(settings)
    service, _ = feature_service(settings)
    views = {v.name: (v, v.entity_columns[0].name) for v in store.list_feature_views()}
    return Service(service, views, {o.name: o for o in store.list_on_demand_feature_views()})


def declared(settings: Settings) -> Service:
    """The feature service as ``feature_repo.definitions`` declares it, without a registry: the
    same objects ``store.apply`` registers (join keys from the entities, as Feast infers them)."""
    defs = feature_definitions(settings)
    service = next(s for s in defs.feature_services if s.name == settings.feast.service)
    keys = {e.name: e.join_key for e in defs.entities}
    views = {v.name: (v, keys[v.entities[0]]) for v in defs.feature_views}
    return Service(service, views, {o.name: o for o in defs.on_demand_feature_views})


def training_set(settings: Settings, events: pd.DataFrame) -> pd.DataFrame:
    """The events with the feature service's features as of each event's time, in their order."""
    return point_in_time(registered(settings), events, _read_view)


def point_in_time(service: Service, events: pd.DataFrame, read: TableReader) -> pd.DataFrame:
    """The events with ``service``'s features as of each event's time, in their order: per
    feature view the as-of join of the rows ``read`` gives, then the on-demand views."""
    frame = request_frame(events)
    for projection in service.service.feature_view_projections:
        if projection.name in service.views:
            view, key = service.views[projection.name]
            ttl = view_ttl(view)
            lo = frame[TIMESTAMP].min() - (ttl or pd.Timedelta(days=365 * 100))
            table = read(view, key, [f.name for f in projection.features], lo, frame[TIMESTAMP].max())
            frame = as_of(frame, table, key, ttl)
    return on_demand(service, events, frame)


def request_frame(events: pd.DataFrame) -> pd.DataFrame:
    """What the join needs of each event: its row number, time, entity keys and request data."""
    ts = utc_us(events[TIMESTAMP])
    frame = pd.DataFrame(
        {
            _ROW: np.arange(len(events)),
            TIMESTAMP: ts.to_numpy(),
            "customer_id": events["customer_id"].astype("int64").to_numpy(),
            "merchant_id": events["merchant_id"].astype("int64").to_numpy(),
            "amount": events["amount"].astype("float64").to_numpy(),
            REQUEST_TIME: np.asarray(unix_seconds(ts)),
        }
    )
    frame[TIMESTAMP] = utc_us(frame[TIMESTAMP])
    return frame


def with_features(settings: Settings, events: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Run the service's on-demand views on the joined ``frame``; the events with every feature."""
    return on_demand(registered(settings), events, frame)


def on_demand(service: Service, events: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Run ``service``'s on-demand views on the joined ``frame``; the events with every feature."""
    for projection in service.service.feature_view_projections:
        if projection.name in service.odfvs:
            out = _transform(service.odfvs[projection.name], frame)
            for feature in projection.features:
                frame[feature.name] = out.column(feature.name).to_numpy(zero_copy_only=False)
    frame = frame.sort_values(_ROW)
    features = frame[service.names].astype("float64").set_axis(events.index)
    return pd.concat([events, features], axis=1)


def _transform(odfv: OnDemandFeatureView, frame: pd.DataFrame) -> pa.Table:
    """The on-demand view's own transformation over the columns it reads."""
    inputs = [f.name for src in odfv.source_request_sources.values() for f in src.schema]
    inputs += [f.name for p in odfv.source_feature_view_projections.values() for f in p.features]
    table = pa.Table.from_pandas(frame[list(dict.fromkeys(inputs))], preserve_index=False)
    return odfv.transform_arrow(table)


def _read_view(view: FeatureView, key: str, columns: list[str], lo: Any, hi: Any) -> pd.DataFrame:
    """A feature view's rows in ``[lo, hi]`` from its batch source's Parquet."""
    return _read_source(source_path(view), key, columns, lo, hi)


def view_ttl(view: FeatureView) -> pd.Timedelta | None:
    return pd.Timedelta(view.ttl) if view.ttl else None


def source_path(view: FeatureView) -> str:
    """The Parquet root of a feature view's batch source."""
    source = view.batch_source
    assert isinstance(source, FileSource), f"{view.name}: feature tables are Parquet files"
    return str(source.path)


def as_of(frame: pd.DataFrame, table: pd.DataFrame, key: str, ttl: pd.Timedelta | None) -> pd.DataFrame:
    """``frame`` with, per row, the latest ``table`` row of its ``key`` strictly before its time
    and no older than ``ttl`` (ties in time: the last one in ``table``'s order)."""
    frame = frame.sort_values(TIMESTAMP, kind="stable")
    joined = pd.merge_asof(
        frame,
        table.rename(columns={TIMESTAMP: _FEATURE_TS}).sort_values(_FEATURE_TS, kind="stable"),
        left_on=TIMESTAMP,
        right_on=_FEATURE_TS,
        by=key,
        direction="backward",
        allow_exact_matches=False,
        tolerance=ttl,
    )
    return joined.drop(columns=[_FEATURE_TS])


def _read_source(path: str, key: str, columns: list[str], lo: Any, hi: Any) -> pd.DataFrame:
    """A feature table's rows in ``[lo, hi]``, reading only the date partitions in range."""
    table = read_days(path, key, columns, lo.strftime("%Y-%m-%d"), hi.strftime("%Y-%m-%d"))
    return table[(table[TIMESTAMP] >= lo) & (table[TIMESTAMP] <= hi)]


def read_days(path: str, key: str, columns: list[str], first: str, last: str) -> pd.DataFrame:
    """A feature table's rows of the date partitions ``first..last`` (``YYYY-MM-DD``, inclusive),
    in the dataset's order."""
    uri = path if "://" in path else f"file://{path}"
    fs, root = storage.filesystem(uri)
    if not fs.exists(root):
        return pd.DataFrame(columns=[key, TIMESTAMP, *columns])
    dataset = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive")
    days = ds.field("event_date")
    table = dataset.to_table(columns=[key, TIMESTAMP, *columns], filter=(days >= first) & (days <= last))
    frame = table.to_pandas()
    frame[TIMESTAMP] = utc_us(frame[TIMESTAMP])
    frame[key] = frame[key].astype("int64")
    return frame


def partition_days(path: str) -> list[str]:
    """The date partitions (``YYYY-MM-DD``) of a feature table, oldest first."""
    uri = path if "://" in path else f"file://{path}"
    fs, root = storage.filesystem(uri)
    if not fs.exists(root):
        return []
    found = fs.glob(f"{root.rstrip('/')}/event_date=*")
    return sorted(p.rsplit("event_date=", 1)[1] for p in found)
