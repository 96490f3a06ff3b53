"""The production profile's feature store against real services: Parquet on an S3 endpoint,
the SQL registry on Postgres and the Redis online store, all started by the tests."""

from __future__ import annotations

import pandas as pd
import pytest

from config import read_config
from tasks.common import storage
from tasks.features import store, tables
from tasks.features.materialization import materialize, watermarks
from tasks.features.offline import training_set
from tasks.features.online import online_features
from tests.features.conftest import assert_matches_feast, events, land

pytestmark = pytest.mark.slow


@pytest.fixture
def production(postgres_server, redis_server, s3_server, tmp_path, monkeypatch):
    bucket = f"airloop-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    s3_server.create_bucket(bucket)
    overrides = {
        "AIRLOOP_HOME": str(tmp_path),
        "POSTGRES_PASSWORD": "unused",
        "AIRLOOP__INGEST__MAX_AGE_HOURS": "null",  # the simulator replays January
        "AIRLOOP__STORAGE__S3_ENDPOINT_URL": s3_server.endpoint_url,
        "AIRLOOP__FEAST__REGISTRY": postgres_server.create_database("feast_registry"),
        "AIRLOOP__FEAST__ONLINE_STORE__CONNECTION_STRING": redis_server.connection_string,
    }
    for name in ("data", "landing", "curated", "quarantine", "archive", "reports", "features"):
        suffix = "" if name == "data" else f"/{name}"
        overrides[f"AIRLOOP__STORAGE__{name.upper()}_URI"] = f"s3://{bucket}{suffix}"
    for name, value in overrides.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FEAST_S3_ENDPOINT_URL", s3_server.endpoint_url)
    settings = read_config("production")
    storage.configure(settings.storage.s3_endpoint_url)
    store.forget_stores()
    yield settings
    store.forget_stores()
    storage.configure(None)


def test_production_profile_round_trip_on_s3_postgres_and_redis(production, redis_server):
    import redis

    settings = production
    assert settings.feast.sql_registry and settings.feast.online_store.type == "redis"
    for hour in (0, 1):
        land(settings, hour, rows=500)
    changed = tables.refresh(settings)
    assert storage.list_files(
        storage.join(settings.storage.features_uri, "customer_activity", "event_date=2026-01-01")
    )
    assert store.apply(settings)
    materialize(settings, changed)
    assert redis.Redis(port=redis_server.port).dbsize() > 0

    # a second process's view: a fresh store reads the SQL registry, not this one's cache
    store.forget_stores()
    assert store.apply(settings) == []
    assert all(watermarks(settings).values())

    latest = (
        tables.read_table(settings, "customer_activity")
        .sort_values("event_timestamp")
        .groupby("customer_id")
        .tail(1)
    )
    probe = latest.head(25)
    requests = pd.DataFrame(
        {
            "transaction_id": [f"p{i}" for i in range(len(probe))],
            "customer_id": probe["customer_id"].to_numpy(),
            "merchant_id": 10**9,
            "amount": 42.0,
            "event_timestamp": events(settings)["event_timestamp"].max() + pd.Timedelta("5min"),
        }
    )
    online = online_features(settings, requests)
    offline = training_set(settings, requests)
    assert online["customer_found"].all() and not online["merchant_found"].any()
    names = store.feature_names(settings)
    pd.testing.assert_frame_equal(
        offline[names].astype("float64").reset_index(drop=True), online[names].reset_index(drop=True)
    )
    assert (
        online["customer_last_txn_unix_s"].tolist() == tables.unix_seconds(probe["event_timestamp"]).tolist()
    )
    assert_matches_feast(settings, requests)  # the direct Redis read gives Feast's own answer
