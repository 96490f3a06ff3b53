"""Sections of the data side: the transaction contract, storage, assets, ingest, Feast, simulator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, field_validator

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
    """The ingest stage: when it sweeps the landing zone, and the limits a landed file must keep."""

    cron: str
    timezone: str = "UTC"
    file_patterns: list[str] = ["*"]
    """What the sweep of the landing zone takes: every file by default, so that one in a format
    landing does not accept is quarantined with a message saying which formats are (``.csv``,
    ``.csv.gz``, ``.parquet``) instead of lying there unnoticed."""
    ignore_patterns: list[str] = [".*", "_*", "*.tmp", "*.partial", "*.part"]
    """Names the sweep leaves alone: files still being written under a temporary name."""
    min_rows: int = 1
    max_rows: int = 2_000_000
    """Also checked from a Parquet file's metadata before it is decoded."""
    max_age_hours: float | None = None
    """Freshness bound on the newest event of a batch; ``None`` disables the check."""
    max_future_minutes: float = Field(15.0, ge=0)
    """An event stamped more than this after the ingest time fails validation (clock skew
    allowed to upstream systems); one row five years ahead would move Feast's watermark."""
    earliest_event: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    """An event stamped before this fails validation (epoch-zero defaults, typos in the year)."""
    max_file_bytes: int = Field(512 * 2**20, gt=0)
    """A landed file larger than this is quarantined without being read."""
    max_decoded_bytes: int = Field(2 * 2**30, gt=0)
    """The most a file may decode to: a Parquet file's uncompressed size from its metadata, a
    ``.csv.gz`` file's decompressed bytes (decompression stops past it)."""
    retries: int = 2

    @field_validator("earliest_event")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
    ramp_batches: int = Field(168, ge=1)
    """The ``ramp`` scenario's covariate drift reaches full strength after this many batches
    (batch 0 is at ``1 / ramp_batches`` of it)."""
