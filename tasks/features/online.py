"""Online features for the transactions being scored: the serving path's lookup.

Done the way Feast's ``get_online_features`` does it and no more: Feast's own
``OnlineStore.online_read`` of each feature view for the batch's distinct keys, then the
on-demand view's own transformation on the request and the values read. ``get_online_features``
spent ~5 ms on a one-row lookup parsing the request, building response protos and converting
them back, around a read of well under a millisecond. What it returns (values, NaN for absent
keys and nulls, the on-demand features) is what this returns: the skew tests compare both
against the offline path on every online store the profiles use.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from feast.infra.online_stores.helpers import get_online_store_from_config
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from feature_repo.definitions import REQUEST_TIME
from tasks.features.store import feature_service, get_store, on_forget
from tasks.features.tables import TABLES, TIMESTAMP, unix_seconds

if TYPE_CHECKING:
    from feast import FeatureView, OnDemandFeatureView

    from config import Settings

Columns = dict[str, npt.NDArray[Any]]


def online_features(settings: Settings, requests: pd.DataFrame | Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Features for a batch of transactions being scored, in one online-store read per view.

    ``requests`` needs ``customer_id``, ``merchant_id``, ``amount`` and ``event_timestamp``.
    Unknown keys come back as missing values (NaN) with ``customer_found`` / ``merchant_found``
    false, never as zeros a model would take at face value. ``online_columns`` is the same
    lookup as arrays (the serving path).
    """
    frame = pd.DataFrame(requests)
    columns = online_columns(settings, {c: frame[c] for c in frame.columns})
    return pd.DataFrame(columns, index=frame.index)


def online_columns(settings: Settings, requests: Mapping[str, Sequence[Any]]) -> Columns:
    """``online_features`` as equal-length arrays (the feature service's features in order, then
    ``<entity>_found``) from request columns as sequences: no DataFrame either way."""
    return _online_reader(settings).read(requests)


class _OnlineReader:
    """The feature service's views and on-demand views, resolved once, and their online read."""

    def __init__(self, settings: Settings) -> None:
        store = get_store(settings)
        service, self.names = feature_service(settings)
        self.config = store.config
        self.store = get_online_store_from_config(store.config.online_store)
        self.views: list[tuple[FeatureView, str, list[str]]] = []
        self.odfvs: list[tuple[OnDemandFeatureView, list[str], list[str]]] = []
        views = {v.name: v for v in store.list_feature_views()}
        for projection in service.feature_view_projections:
            features = [f.name for f in projection.features]
            if projection.name in views:
                view = views[projection.name]
                self.views.append((view, view.entity_columns[0].name, features))
                continue
            odfv = store.get_on_demand_feature_view(projection.name)
            inputs = [f.name for src in odfv.source_request_sources.values() for f in src.schema]
            inputs += [f.name for p in odfv.source_feature_view_projections.values() for f in p.features]
            self.odfvs.append((odfv, list(dict.fromkeys(inputs)), features))
        entity_of = {t.join_key: t.entity for t in TABLES}
        self.found = {key: entity_of.get(key, key) for _, key, _ in self.views}
        self.built = time.monotonic()

    def read(self, requests: Mapping[str, Sequence[Any]]) -> Columns:
        values: Columns = {}
        found: Columns = {}
        for view, key, features in self.views:
            values.update(self._read_view(view, key, features, requests[key]))
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

    def _read_view(self, view: FeatureView, key: str, features: list[str], keys: Sequence[Any]) -> Columns:
        """One online read of the view for the batch's distinct keys, spread back over its rows."""
        ids = np.asarray(keys, dtype="int64").tolist()
        unique = list(dict.fromkeys(ids))
        protos = [EntityKey(join_keys=[key], entity_values=[Value(int64_val=k)]) for k in unique]
        read = dict(zip(unique, self.store.online_read(self.config, view, protos, features), strict=True))
        rows = [read[k][1] for k in ids]
        return {f: np.array([_number(row, f) for row in rows], dtype="float64") for f in features}


def _number(row: Mapping[str, Value] | None, feature: str) -> float:
    """A stored value as a float; NaN when the key or the value is absent (a null proto)."""
    if row is None or (value := row.get(feature)) is None:
        return math.nan
    kind = value.WhichOneof("val")
    return math.nan if kind is None else float(getattr(value, kind))


_readers: dict[int, tuple[Settings, _OnlineReader]] = {}
on_forget(_readers.clear)


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
