"""Sections of the data side: the transaction contract, storage, assets, ingest, Feast, simulator."""

from __future__ import annotations

from typing import Literal

from config.base import Section

ColumnType = Literal["string", "int", "float", "timestamp"]


class Column(Section):
    """One column of the transaction contract that every batch must honour."""

    name: str
    type: ColumnType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None


class DataSchema(Section):
    key: str
    timestamp: str
    label: str
    entities: list[str]
    columns: list[Column]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


class Storage(Section):
    """Every place data lives, as URIs (``file://`` locally, ``s3://`` in production)."""

    data_uri: str
    landing_uri: str
    curated_uri: str
    quarantine_uri: str
    archive_uri: str
    reports_uri: str
    features_uri: str
    """Feature tables computed by ``tasks.features.tables`` (Feast's offline source)."""
    s3_endpoint_url: str | None = None


class Assets(Section):
    """Names of the Airflow assets that connect the DAGs (the contract between them)."""

    landing: str = "landing/transactions"
    curated: str = "curated/transactions"
    features: str = "features/transactions"
    registered_model: str = "models/fraud"


class Ingest(Section):
    cron: str
    timezone: str = "UTC"
    file_patterns: list[str] = ["*.parquet", "*.csv"]
    min_rows: int = 1
    max_rows: int = 2_000_000
    max_age_hours: float | None = None
    """Freshness bound on the newest event of a batch; ``None`` disables the check."""
    retries: int = 2


class OnlineStore(Section):
    """Feast online store: SQLite file locally, Redis in production."""

    type: Literal["sqlite", "redis"]
    path: str | None = None
    connection_string: str | None = None
    """Redis ``host:port[,password=...]``."""


class FeatureStore(Section):
    """Feast: where the registry and online store live, and the versioned feature service."""

    project: str = "airloop"
    registry: str
    """A file path (local) or a SQLAlchemy URL (``postgresql+psycopg://...``) for the SQL registry."""
    registry_cache_ttl_seconds: int = 60
    online_store: OnlineStore
    service: str = "fraud_features_v1"
    """The model's contract: training and serving both fetch features through this service."""
    ttl_days: int = 30
    """Older feature rows are treated as missing in training sets."""

    @property
    def sql_registry(self) -> bool:
        return "://" in self.registry and not self.registry.startswith("file://")


class Simulate(Section):
    seed: int = 42
    n_customers: int = 2_000
    n_merchants: int = 300
    batch_rows: int = 5_000
    batch_minutes: int = 60
    start: str = "2026-01-01T00:00:00+00:00"
    fraud_rate: float = 0.02
