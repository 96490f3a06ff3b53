"""The feature store as training and serving use it: apply, materialize, training sets, lookups.

One ``FeatureStore`` per settings, built from ``config/`` (no hand-kept feature_store.yaml): local
profile = file offline store over Parquet, SQLite online store, file registry; production = the
same Parquet on S3, Redis online store, SQL registry on Postgres.

Materialization keeps its own guard rails around Feast's incremental watermark:
- the first run has no watermark, and Feast would start at ``now - ttl``, skipping any replayed
  history, so it materializes from the first rewritten row instead;
- rows older than the watermark (late or replayed data) are materialized explicitly from the
  first rewritten row through the watermark, so no entity's newer online value is overwritten;
- apply runs only when a definition changed (Feast keeps the watermark across applies; a test
  holds it to that, see feast#2905).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.common import storage
from tasks.features.tables import TABLES, TIMESTAMP, unix_seconds, utc_us

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from feast import FeatureStore

    from config import Settings
    from feature_repo.definitions import Definitions

log = logging.getLogger(__name__)

ONE_US = timedelta(microseconds=1)
_stores: dict[str, FeatureStore] = {}


def repo_config(settings: Settings) -> Any:
    from feast.repo_config import RepoConfig

    from config import PROJECT_ROOT

    fs = settings.feast
    registry = {
        "registry_type": "sql" if fs.sql_registry else "file",
        "path": fs.registry,
        "cache_ttl_seconds": fs.registry_cache_ttl_seconds,
    }
    if fs.sql_registry:
        registry["sqlalchemy_config_kwargs"] = {"pool_pre_ping": True}
    online: dict[str, Any] = {"type": fs.online_store.type}
    if fs.online_store.type == "sqlite":
        online["path"] = fs.online_store.path
    else:
        online["connection_string"] = fs.online_store.connection_string
    return RepoConfig(
        project=fs.project,
        provider="local",
        registry=registry,
        online_store=online,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=str(PROJECT_ROOT / "feature_repo"),
    )


def get_store(settings: Settings) -> FeatureStore:
    """The feature store for these settings (one per process and settings)."""
    from feast import FeatureStore

    key = settings.model_dump_json()
    if key not in _stores:
        storage.configure(settings.storage.s3_endpoint_url)
        for path in (settings.feast.registry, settings.feast.online_store.path):
            if path and "://" not in path:
                storage.makedirs("file://" + path.rsplit("/", 1)[0])
        _stores[key] = FeatureStore(config=repo_config(settings))
    return _stores[key]


def forget_stores() -> None:
    """Drop cached stores (their registry caches), e.g. after the files under them were wiped."""
    _stores.clear()
    _services.clear()
    _readers.clear()


def definitions(settings: Settings) -> Definitions:
    from feature_repo.definitions import feature_definitions

    return feature_definitions(settings)


def apply(settings: Settings) -> list[str]:
    """Register the definitions when (and only when) they differ from the registry.

    Returns the changed objects as ``"<type> <name>: <transition>"`` lines, empty when unchanged.
    """
    from feast.diff.property_diff import TransitionType
    from feast.repo_contents import RepoContents

    store = get_store(settings)
    defs = definitions(settings)
    contents = RepoContents(
        projects=[],
        data_sources=defs.sources,
        feature_views=defs.feature_views,
        on_demand_feature_views=defs.on_demand_feature_views,
        stream_feature_views=[],
        label_views=[],
        entities=defs.entities,
        feature_services=defs.feature_services,
        permissions=[],
    )
    registry_diff, _, _ = store.plan(contents)
    changes, stale = [], []
    for d in registry_diff.feast_object_diffs:
        if d.transition_type == TransitionType.UNCHANGED or not _material_change(d):
            continue
        changes.append(f"{d.feast_object_type.name.lower()} {d.name}: {d.transition_type.name.lower()}")
        if d.transition_type == TransitionType.DELETE:
            stale.append(d.current_feast_object)
    if changes:
        log.info("feast apply: %s", "; ".join(changes))
        store.apply(defs.all(), objects_to_delete=stale, partial=not stale)
    else:
        log.info("feast apply: definitions unchanged, registry left as it is")
    return changes


def _material_change(diff: Any) -> bool:
    """Whether a plan diff changes what the registry means, not just its bookkeeping.

    Feast's plan reports objects it manages itself (the project, the ``__dummy`` entity) as
    deletions, and a feature view's embedded source as updated whenever only its creation
    timestamps differ; neither is a reason to re-apply.
    """
    from feast.diff.property_diff import TransitionType

    if diff.transition_type == TransitionType.DELETE:
        return diff.feast_object_type.name != "PROJECT" and not diff.name.startswith("__")
    if diff.transition_type != TransitionType.UPDATE:
        return True
    return _without_meta(diff.current_feast_object) != _without_meta(diff.new_feast_object)


def _without_meta(obj: Any) -> bytes:
    from google.protobuf.message import Message

    def strip(message: Message) -> None:
        for field, value in message.ListFields():
            if field.name == "meta":
                message.ClearField(field.name)
            elif isinstance(value, Message):
                strip(value)
            elif field.type == field.TYPE_MESSAGE:
                for item in value:
                    if isinstance(item, Message):
                        strip(item)

    proto = obj.to_proto()
    strip(proto)
    return proto.SerializeToString(deterministic=True)


@dataclass
class Materialized:
    view: str
    mode: str
    start: str | None
    end: str | None


def _ts(text: str) -> datetime:
    import pandas as pd

    return pd.Timestamp(text).tz_convert("UTC").to_pydatetime()


def materialize(settings: Settings, changed: dict[str, Any]) -> list[dict[str, Any]]:
    """Push the rows a feature refresh rewrote (``changed`` from ``tasks.features.tables.refresh``) online.

    In-order data goes through ``materialize_incremental``; a first run or rows older than the
    watermark get an explicit ``materialize`` over exactly the range that needs it.
    """
    if not changed.get("start"):
        log.info("materialize: no rewritten rows, nothing to push")
        return []
    store = get_store(settings)
    start, end = _ts(changed["start"]), _ts(changed["end"]) + ONE_US
    done: list[dict[str, Any]] = []
    for view in store.list_feature_views():
        watermark = view.most_recent_end_time
        if watermark is not None and start >= watermark:
            store.materialize_incremental(end_date=end, feature_views=[view.name])
            mode, lo = "incremental", watermark
        else:
            hi = max(end, watermark) if watermark else end
            store.materialize(start_date=start, end_date=hi, feature_views=[view.name])
            mode, lo, end_used = ("backfill" if watermark else "initial"), start, hi
            done.append(Materialized(view.name, mode, lo.isoformat(), end_used.isoformat()).__dict__)
            continue
        done.append(Materialized(view.name, mode, lo.isoformat(), end.isoformat()).__dict__)
    for item in done:
        log.info("materialized %(view)s (%(mode)s) from %(start)s to %(end)s", item)
    return done


def watermarks(settings: Settings) -> dict[str, str | None]:
    """Each feature view's materialization watermark, as Feast's registry records it."""
    store = get_store(settings)
    store.refresh_registry()
    return {
        v.name: (v.most_recent_end_time.isoformat() if v.most_recent_end_time else None)
        for v in store.list_feature_views()
    }


_services: dict[str, tuple[float, Any, list[str]]] = {}


def _service_and_names(settings: Settings) -> tuple[Any, list[str]]:
    """The feature service and its feature columns, re-read at most once per registry TTL.

    Resolving a service from the registry costs milliseconds (protos and type checks), more than
    the online read itself, so the serving path must not do it on every request.
    """
    key = settings.model_dump_json()
    cached = _services.get(key)
    if cached and time.monotonic() - cached[0] < settings.feast.registry_cache_ttl_seconds:
        return cached[1], cached[2]
    service = get_store(settings).get_feature_service(settings.feast.service)
    names = [f.name for projection in service.feature_view_projections for f in projection.features]
    _services[key] = (time.monotonic(), service, names)
    return service, names


def training_set(settings: Settings, events: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time-correct features for labelled events, in the events' order.

    Each event gets, per feature view of the versioned feature service, the entity's latest
    feature row strictly before the event's own time (the row at its time already contains the
    event itself) and no older than the view's TTL; then the service's on-demand view runs on
    the result through Feast's own transformation, the code the online path runs.

    The as-of join is done here (``pandas.merge_asof`` per view, reading only the partitions the
    events' time range needs) rather than by Feast's dask offline store, whose join builds every
    (event, feature row) pair of a key: 100k events took 275 s and 8 GB that way. The semantics
    are Feast's; the training/serving skew test holds the two paths to equal values.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from feature_repo.definitions import REQUEST_TIME

    store = get_store(settings)
    service, names = _service_and_names(settings)
    ts = utc_us(events[TIMESTAMP])
    frame = pd.DataFrame(
        {
            "_row": np.arange(len(events)),
            TIMESTAMP: ts.to_numpy(),
            "customer_id": events["customer_id"].astype("int64").to_numpy(),
            "merchant_id": events["merchant_id"].astype("int64").to_numpy(),
            "amount": events["amount"].astype("float64").to_numpy(),
            REQUEST_TIME: unix_seconds(ts).to_numpy(),
        }
    )
    frame[TIMESTAMP] = utc_us(frame[TIMESTAMP])
    views = {v.name: v for v in store.list_feature_views()}
    odfvs = {o.name: o for o in store.list_on_demand_feature_views()}
    for projection in service.feature_view_projections:
        if projection.name in views:
            frame = _as_of_join(frame, views[projection.name], [f.name for f in projection.features])
    for projection in service.feature_view_projections:
        if projection.name in odfvs:
            odfv = odfvs[projection.name]
            inputs = [f.name for src in odfv.source_request_sources.values() for f in src.schema]
            inputs += [f.name for p in odfv.source_feature_view_projections.values() for f in p.features]
            table = pa.Table.from_pandas(frame[list(dict.fromkeys(inputs))], preserve_index=False)
            out = odfv.transform_arrow(table)
            for feature in projection.features:
                frame[feature.name] = out.column(feature.name).to_numpy(zero_copy_only=False)
    frame = frame.sort_values("_row")
    features = frame[names].astype("float64").set_axis(events.index)
    return pd.concat([events, features], axis=1)


def _as_of_join(frame: pd.DataFrame, view: Any, columns: list[str]) -> pd.DataFrame:
    """Each row's latest feature row of ``view`` strictly before its time, within the TTL."""
    import pandas as pd

    key = view.entity_columns[0].name
    ttl = pd.Timedelta(view.ttl) if view.ttl else None
    lo = frame[TIMESTAMP].min() - (ttl or pd.Timedelta(days=365 * 100))
    table = _read_source(view.batch_source.path, key, columns, lo, frame[TIMESTAMP].max())
    frame = frame.sort_values(TIMESTAMP, kind="stable")
    joined = pd.merge_asof(
        frame,
        table.rename(columns={TIMESTAMP: "_feature_ts"}).sort_values("_feature_ts", kind="stable"),
        left_on=TIMESTAMP,
        right_on="_feature_ts",
        by=key,
        direction="backward",
        allow_exact_matches=False,
        tolerance=ttl,
    )
    return joined.drop(columns=["_feature_ts"])


def _read_source(path: str, key: str, columns: list[str], lo: Any, hi: Any) -> pd.DataFrame:
    """A feature table's rows in ``[lo, hi]``, reading only the date partitions in range."""
    import pandas as pd
    import pyarrow.dataset as ds

    uri = path if "://" in path else f"file://{path}"
    fs, root = storage.filesystem(uri)
    if not fs.exists(root):
        return pd.DataFrame(columns=[key, TIMESTAMP, *columns])
    dataset = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive")
    days = ds.field("event_date")
    condition = (days >= lo.strftime("%Y-%m-%d")) & (days <= hi.strftime("%Y-%m-%d"))
    table = dataset.to_table(columns=[key, TIMESTAMP, *columns], filter=condition).to_pandas()
    table[TIMESTAMP] = utc_us(table[TIMESTAMP])
    table[key] = table[key].astype("int64")
    return table[(table[TIMESTAMP] >= lo) & (table[TIMESTAMP] <= hi)]


def feature_names(settings: Settings) -> list[str]:
    """The feature service's feature columns, in order (the model's input contract)."""
    return list(_service_and_names(settings)[1])


def online_features(settings: Settings, requests: pd.DataFrame | dict[str, list]) -> pd.DataFrame:
    """Features for a batch of transactions being scored, in one online-store read per view.

    ``requests`` needs ``customer_id``, ``merchant_id``, ``amount`` and ``event_timestamp``.
    Unknown keys come back as missing values (NaN) with ``customer_found`` / ``merchant_found``
    false, never as zeros a model would take at face value. ``online_columns`` is the same
    lookup as arrays (the serving path).
    """
    import pandas as pd

    frame = pd.DataFrame(requests)
    columns = online_columns(settings, {c: frame[c] for c in frame.columns})
    return pd.DataFrame(columns, index=frame.index)


def online_columns(settings: Settings, requests: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
    """``online_features`` as equal-length arrays (the feature service's features in order, then
    ``<entity>_found``) from request columns as sequences: no DataFrame either way."""
    return _online_reader(settings).read(requests)


class _OnlineReader:
    """The feature service's online lookup, done the way ``get_online_features`` does it and no
    more: Feast's own ``OnlineStore.online_read`` of each feature view for the batch's distinct
    keys, then the on-demand view's own transformation on the request and the values read.

    ``get_online_features`` spent ~5 ms on a one-row lookup parsing the request, building response
    protos and converting them back, around a read of well under a millisecond. What it returns
    (values, NaN for absent keys and nulls, the on-demand features) is what this returns: the skew
    tests compare both against the offline path on every online store the profiles use.
    """

    def __init__(self, settings: Settings) -> None:
        from feast.infra.online_stores.helpers import get_online_store_from_config
        from feast.on_demand_feature_view import OnDemandFeatureView

        store = get_store(settings)
        service, self.names = _service_and_names(settings)
        self.config = store.config
        self.store = get_online_store_from_config(store.config.online_store)
        self.views: list[tuple[Any, str, list[str]]] = []
        self.odfvs: list[tuple[Any, list[str], list[str]]] = []
        for projection in service.feature_view_projections:
            features = [f.name for f in projection.features]
            try:
                view = store.get_feature_view(projection.name)
            except Exception:  # noqa: BLE001 - not a feature view: an on-demand one
                odfv: OnDemandFeatureView = store.get_on_demand_feature_view(projection.name)
                inputs = [f.name for src in odfv.source_request_sources.values() for f in src.schema]
                inputs += [f.name for p in odfv.source_feature_view_projections.values() for f in p.features]
                self.odfvs.append((odfv, list(dict.fromkeys(inputs)), features))
                continue
            self.views.append((view, view.entity_columns[0].name, features))
        entity_of = {t.join_key: t.entity for t in TABLES}
        self.found = {key: entity_of.get(key, key) for _, key, _ in self.views}
        self.built = time.monotonic()

    def read(self, requests: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        import numpy as np
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        from feature_repo.definitions import REQUEST_TIME

        values: dict[str, Any] = {}
        found: dict[str, np.ndarray] = {}
        for view, key, features in self.views:
            ids = np.asarray(requests[key], dtype="int64").tolist()
            unique = list(dict.fromkeys(ids))
            keys = [EntityKey(join_keys=[key], entity_values=[Value(int64_val=k)]) for k in unique]
            read = dict(zip(unique, self.store.online_read(self.config, view, keys, features), strict=True))
            rows = [read[k][1] for k in ids]
            for feature in features:
                values[feature] = np.array([_number(row, feature) for row in rows], dtype="float64")
            # Found = the entity's first feature (a count, never null when stored) has a value.
            found[f"{self.found[key]}_found"] = ~np.isnan(values[features[0]])
        if self.odfvs:
            values["amount"] = np.asarray(requests["amount"], dtype="float64")
            values[REQUEST_TIME] = np.asarray(unix_seconds(requests[TIMESTAMP]), dtype="float64")
            for odfv, inputs, features in self.odfvs:
                out = odfv.transform_dict({name: values[name].tolist() for name in inputs})
                for feature in features:
                    values[feature] = np.array(out[feature], dtype="float64")
        return {**{name: values[name] for name in self.names}, **found}


def _number(row: dict[str, Any] | None, feature: str) -> float:
    """A stored value as a float; NaN when the key or the value is absent (a null proto)."""
    if row is None or (value := row.get(feature)) is None:
        return math.nan
    kind = value.WhichOneof("val")
    return math.nan if kind is None else float(getattr(value, kind))


_readers: dict[int, tuple[Settings, _OnlineReader]] = {}


def _online_reader(settings: Settings) -> _OnlineReader:
    """One reader per settings object, rebuilt once per registry TTL (a re-applied service).
    Keyed by identity: hashing the settings on every request would cost more than the read."""
    cached = _readers.get(id(settings))
    if cached and cached[0] is settings:
        reader = cached[1]
        if time.monotonic() - reader.built < settings.feast.registry_cache_ttl_seconds:
            return reader
    reader = _OnlineReader(settings)
    _readers[id(settings)] = (settings, reader)
    return reader


# --- CLI ------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.features.store", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("refresh", help="compute new feature rows, apply if changed, materialize")
    sub.add_parser("apply", help="register the definitions if they changed")
    sub.add_parser("status", help="materialization watermarks")
    sub.add_parser("yaml", help="write feature_repo/feature_store.yaml for the Feast CLI and UI")
    lookup = sub.add_parser("lookup", help="online features for one customer and merchant")
    lookup.add_argument("customer_id", type=int)
    lookup.add_argument("merchant_id", type=int)
    lookup.add_argument("--amount", type=float, default=100.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from config import load_config
    from tasks.features import tables as features

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = load_config()
    started = time.perf_counter()
    if args.command == "refresh":
        changed = features.refresh(settings)
        apply(settings)
        for item in materialize(settings, changed):
            print(f"  {item['view']:<20} {item['mode']:<12} {item['start']} -> {item['end']}")
        print(f"refreshed {sum(changed['rows'].values())} rows on {len(changed['dates'])} dates")
    elif args.command == "apply":
        print("\n".join(apply(settings)) or "definitions unchanged")
    elif args.command == "status":
        for view, mark in watermarks(settings).items():
            print(f"  {view:<20} materialized through {mark}")
    elif args.command == "yaml":
        import yaml

        from config import PROJECT_ROOT

        config = repo_config(settings).model_dump(by_alias=True, exclude_none=True, mode="json")
        target = PROJECT_ROOT / "feature_repo" / "feature_store.yaml"
        target.write_text(
            f"# generated by python -m tasks.features.store yaml ({settings.profile})\n"
            + yaml.safe_dump(config)
        )
        print(f"wrote {target}")
    elif args.command == "lookup":
        now = pd.Timestamp.now(tz="UTC")
        request = {
            "customer_id": [args.customer_id],
            "merchant_id": [args.merchant_id],
            "amount": [args.amount],
            TIMESTAMP: [now],
        }
        print(online_features(settings, request).T.to_string())
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
