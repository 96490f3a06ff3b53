"""The feature lookup of a batch: one online-store read for every row's features.

The batch stays columns of arrays (``tasks.features.online.online_columns``), no DataFrame on the
request path. An entity the online store does not know is scored anyway: its features get
``serving.unknown_entity_defaults`` (the others stay missing, as for a new entity in training
sets) and the row says which entities were unknown.

``warm`` opens the store and runs one lookup when the ingress starts, so that the first request
does not pay Feast's imports and registry load (seconds). A store that is not ready yet (nothing
applied) is tried again on each batch until it is; meanwhile scoring answers 503 ``features``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.features.online import online_columns
from tasks.features.store import feature_names
from tasks.features.tables import TABLES
from tasks.serving.schemas import Unavailable
from tasks.serving.shapes import Columns

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger("ray.serve")


class FeatureLookup:
    """Online features of request rows, by the feature service serving fetches."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.defaults = settings.serving.unknown_entity_defaults
        self.remote = settings.feast.online_store.type != "sqlite"
        """The online store is read over the network (Redis), not from a local file."""
        self.timestamp = settings.schema_.timestamp
        self.names: list[str] | None = None
        """The feature service's features; None until the store answered once."""
        self.error: str | None = None
        self._entity_of: dict[str, str | None] = {}

    @property
    def ready(self) -> bool:
        return self.names is not None

    def warm(self) -> bool:
        """Open the store and read one probe row; False (``error`` says why) if it is not ready."""
        try:
            names = feature_names(self.settings)
            probe: dict[str, list[Any]] = {
                "customer_id": [0],
                "merchant_id": [0],
                "amount": [1.0],
                self.timestamp: [datetime.now(UTC)],
            }
            online_columns(self.settings, probe)
        except Exception as exc:  # noqa: BLE001 - reported by /health and in 503s
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("feature store not ready: %s", self.error)
            return False
        stored = {f: t.entity for t in TABLES for f in t.features}
        self._entity_of = {f: stored.get(f) for f in names}
        self.names, self.error = names, None
        return True

    def lookup(self, rows: list[dict[str, Any]]) -> tuple[Columns, list[list[str]]]:
        """The rows as columns joined with their online features, and per row the entities the
        store did not know. ``Unavailable("features")`` when the store cannot answer."""
        if self.names is None and not self.warm():
            raise Unavailable("features", f"online features unavailable: {self.error}")
        request = {name: [row[name] for row in rows] for name in rows[0]}
        try:
            feats = online_columns(self.settings, request)
        except Exception as exc:
            raise Unavailable(
                "features", f"online feature lookup failed: {type(exc).__name__}: {exc}"
            ) from exc
        found = {t.entity: feats[f"{t.entity}_found"] for t in TABLES}
        self._fill_defaults(feats, found)
        unknown = [[e for e, known in found.items() if not known[i]] for i in range(len(rows))]
        return {**request, **feats}, unknown

    def _fill_defaults(self, feats: dict[str, np.ndarray], found: dict[str, np.ndarray]) -> None:
        """``unknown_entity_defaults`` into the missing features of the entities not found."""
        if not self.defaults:
            return
        any_unknown = ~np.logical_and.reduce(list(found.values()))
        for name, value in self.defaults.items():
            if name not in feats:
                continue
            entity = self._entity_of.get(name)
            unknown = ~found[entity] if entity else any_unknown
            feats[name][unknown & np.isnan(feats[name])] = float(value)
