"""The assets that connect the DAGs, each declared once, and what their events carry.

A producer DAG lists one of these in ``outlets``; a consumer is scheduled on it. Names and URIs
come from ``config`` (``assets`` and ``storage``), so both profiles wire the same graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from airflow.sdk import Asset

from config import load_config

_cfg = load_config()

landing = Asset(name=_cfg.assets.landing, uri=_cfg.storage.landing_uri)
"""Batches dropped by upstream systems (an event's ``extra.batch_uri`` names one)."""
curated = Asset(name=_cfg.assets.curated, uri=_cfg.storage.curated_uri)
"""Validated transactions, partitioned by event date (the ingest DAG's outlet)."""
features = Asset(name=_cfg.assets.features, uri=_cfg.storage.features_uri)
"""Feature tables materialized into the online store (the features DAG's outlet)."""
registered_model = Asset(
    name=_cfg.assets.registered_model, uri=f"mlflow-model://{_cfg.mlflow.registered_model}"
)
"""A model version registered as challenger (the train DAG's outlet; ``extra.version``)."""


def _when(event: Any) -> float:
    stamp = getattr(event, "timestamp", None)
    return stamp.timestamp() if isinstance(stamp, datetime) else 0.0


def event_extras(triggering_asset_events: Mapping[Any, Iterable[Any]] | None) -> list[dict[str, Any]]:
    """The ``extra`` of every event that triggered a run, oldest first (plain dicts, so the rules
    that read them live in ``tasks/`` and are tested without Airflow)."""
    events = [e for group in (triggering_asset_events or {}).values() for e in group]
    events.sort(key=_when)
    return [dict(e.extra or {}) for e in events]
