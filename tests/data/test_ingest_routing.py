"""Routing of landed batches: bad ones quarantined with the reason, good ones curated once."""

from __future__ import annotations

import hashlib

import pytest

from tasks.common import storage
from tasks.ingest.batches import batch_id_for, ingest_batch
from tasks.ingest.curated import curated_row_count, read_curated, write_curated
from tasks.ingest.validation import read_batch
from tasks.platform import simulate


def _land_good(settings, index: int, rows: int = 400, fmt: str = "parquet") -> tuple[str, object]:
    df = simulate.generate_batch(settings, "stable", index=index, rows=rows)
    name = simulate.batch_name("stable", index, fmt)
    return simulate.write_batch(df, settings.storage.landing_uri, name, fmt), df


def test_good_batches_are_curated_partitioned_by_event_date(settings):
    uris = [_land_good(settings, i, fmt=fmt)[0] for i, fmt in enumerate(["parquet", "csv", "parquet"])]
    results = [ingest_batch(u, settings) for u in uris]

    assert [r.status for r in results] == ["ingested"] * 3
    curated = read_curated(settings)
    assert len(curated) == 1200 == curated_row_count(settings)
    assert curated["transaction_id"].is_unique
    assert set(curated["event_date"].astype(str)) == {d for r in results for d in r.partitions}
    assert str(curated["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(storage.exists(r.location) for r in results)  # archived, not deleted


def test_rerunning_and_redelivering_never_duplicates(settings):
    uri, df = _land_good(settings, 0, rows=500)
    first = ingest_batch(uri, settings)
    assert first.rows_added == 500

    again = ingest_batch(uri, settings)  # rerun of the same task: the file has moved on
    assert again.status == "already_processed" and again.rows_added == 0

    simulate.write_batch(df, settings.storage.landing_uri, storage.basename(uri))  # same file again
    repeat = ingest_batch(uri, settings)
    assert repeat.status == "duplicate" and repeat.rows_added == 0

    renamed = simulate.write_batch(df, settings.storage.landing_uri, "resent-under-new-name.parquet")
    resent = ingest_batch(renamed, settings)  # same rows, new file: dropped by transaction_id
    assert resent.status == "ingested" and resent.rows_added == 0
    assert resent.duplicates_dropped == 500

    assert curated_row_count(settings) == 500


def test_interrupted_ingest_rerun_is_idempotent(settings):
    """A crash after writing curated files but before the manifest must not double the rows."""
    uri, _ = _land_good(settings, 0, rows=300)
    batch_id = batch_id_for(uri, hashlib.sha256(storage.read_bytes(uri)).hexdigest())
    write_curated(settings, read_batch(uri, settings), batch_id)  # the "crashed" attempt
    result = ingest_batch(uri, settings)
    assert result.status == "ingested"
    assert curated_row_count(settings) == 300


def test_freshness_check_rejects_stale_batch(airloop_home, monkeypatch):
    from config import read_config

    monkeypatch.setenv("AIRLOOP__INGEST__MAX_AGE_HOURS", "24")
    settings = read_config("local")
    uri, _ = _land_good(settings, 0, rows=100)  # simulated history starts 2026-01-01
    result = ingest_batch(uri, settings)
    assert result.status == "quarantined"
    assert "stale batch" in result.reason


def test_missing_batch_that_never_existed_is_an_error(settings):
    with pytest.raises(FileNotFoundError, match="never ingested"):
        ingest_batch(storage.join(settings.storage.landing_uri, "nope.parquet"), settings)


def test_freshness_bound_quarantines_a_stale_batch_and_passes_a_fresh_one(airloop_home, monkeypatch):
    import pandas as pd

    from config import read_config

    monkeypatch.setenv("AIRLOOP__INGEST__MAX_AGE_HOURS", "48")
    monkeypatch.setenv("AIRLOOP__SIMULATE__BATCH_MINUTES", "60")  # a batch of the last hours, none ahead
    settings = read_config("local")
    fresh_start = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta("2h")
    fresh = simulate.generate_batch(settings, "stable", index=0, rows=200, start=fresh_start)
    stale = simulate.generate_batch(settings, "stable", index=0, rows=200, start="2026-01-01T00:00:00+00:00")
    fresh_uri = simulate.write_batch(fresh, settings.storage.landing_uri, "fresh.parquet")
    stale_uri = simulate.write_batch(stale, settings.storage.landing_uri, "stale.parquet")

    assert ingest_batch(fresh_uri, settings).status == "ingested"
    result = ingest_batch(stale_uri, settings)
    assert result.status == "quarantined"
    assert "stale batch" in result.reason and "event_timestamp" in result.reason
