"""The bad-input catalogue: every kind of bad landed file is quarantined with a message naming its
fault, and every good row landed in the same runs is curated exactly once.

All files land together and go through the ingest path as a run does (the landing sweep, then
``ingest_batch`` per file); a second sweep finds nothing, and re-landing the good files adds
nothing. Limits are small here so that "too large" files stay small.
"""

from __future__ import annotations

import gzip
import io
import json
import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.common import storage
from tasks.ingest.batches import ingest_batch
from tasks.ingest.curated import read_curated
from tasks.ingest.landing import pending_batches
from tasks.platform import simulate

LIMITS = {
    "AIRLOOP__INGEST__MAX_FILE_BYTES": "1000000",
    "AIRLOOP__INGEST__MAX_DECODED_BYTES": "3000000",
    "AIRLOOP__INGEST__MAX_ROWS": "5000",
    # hourly batches: the catalogue numbers its files past 100, and 4-day batches that far along
    # the simulated history would be in the future (the time-sanity fault is a file of its own)
    "AIRLOOP__SIMULATE__BATCH_MINUTES": "60",
}


@pytest.fixture
def settings(airloop_home, monkeypatch):
    from config import read_config

    for name, value in LIMITS.items():
        monkeypatch.setenv(name, value)
    return read_config("local")


class Landing:
    """Builds the files of the catalogue from simulated batches (each with its own ids)."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.index = 0
        self.good_ids: set[str] = set()
        self.expect: dict[str, str] = {}
        self.landed: dict[str, bytes] = {}

    def frame(self, rows: int = 200) -> pd.DataFrame:
        self.index += 1
        return simulate.generate_batch(self.settings, "stable", index=self.index, rows=rows)

    def put(
        self, name: str, data: bytes, phrase: str | None = None, good: pd.DataFrame | None = None
    ) -> None:
        storage.write_bytes(storage.join(self.settings.storage.landing_uri, name), data)
        self.landed[name] = data
        if good is not None:
            self.good_ids |= set(good["transaction_id"])
        else:
            assert phrase is not None
            self.expect[name] = phrase

    def csv(self, df: pd.DataFrame) -> str:
        return simulate.to_bytes(df, "csv").decode()


def _parquet(df: pd.DataFrame, **options) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buffer, **options)
    return buffer.getvalue()


def _land_good(land: Landing) -> None:
    df = land.frame()
    land.put("good.parquet", simulate.to_bytes(df, "parquet"), good=df)
    df = land.frame()
    land.put("good.csv", land.csv(df).encode(), good=df)
    df = land.frame()
    land.put("good-gzip.csv.gz", gzip.compress(land.csv(df).encode(), mtime=0), good=df)
    df = land.frame()
    land.put("good-utf8-bom.csv", b"\xef\xbb\xbf" + land.csv(df).encode(), good=df)
    df = land.frame()
    offsets = df.assign(event_timestamp=df["event_timestamp"].dt.tz_convert("Europe/Berlin"))
    land.put("good-offsets.csv", land.csv(offsets).encode(), good=df)


def _land_contract_faults(land: Landing) -> None:
    """Schema, types, nulls, ranges, allowed values, duplicates and time: one fault per file."""
    for kind, phrase in (
        ("wrong_schema", "unexpected columns ['category', 'promo_code']"),
        ("missing_column", "missing columns ['amount']"),
        ("nulls", "column 'amount' has {n} null values (rule: not null), e.g. at rows ["),
        ("duplicate_ids", "column 'transaction_id' has {n} duplicated values (rule: unique), e.g. ['x3"),
        ("out_of_range", "column 'amount' has {n} values outside [0.0, 50000.0], e.g. ["),
        (
            "wrong_types",
            "column 'amount' has type object, expected float: {n} values do not parse, e.g. ['",
        ),
    ):
        bad = simulate.make_bad_batch(land.settings, kind, index=land.index + 100, rows=200)
        land.put(f"fault-{kind}.{bad.fmt}", bad.to_bytes(), phrase)
    text = land.csv(land.frame()).splitlines()
    fields = text[2].split(",")
    fields[1] = "99999999999999999999"  # customer_id beyond int64
    land.put(
        "fault-int64-overflow.csv",
        "\n".join([*text[:2], ",".join(fields), *text[3:]]).encode(),
        "column 'customer_id' has type object, expected int: 1 values do not parse, "
        "e.g. ['99999999999999999999']",
    )
    df = land.frame()
    df.loc[5, "merchant_category"] = "crypto_exchange"
    land.put("fault-category.parquet", simulate.to_bytes(df, "parquet"), "values not in the allowed set")
    _land_time_faults(land)


def _land_time_faults(land: Landing) -> None:
    df = land.frame()
    df.loc[7, "event_timestamp"] = pd.Timestamp("2031-01-01T00:00:00Z")  # five years ahead
    land.put(
        "fault-future.parquet",
        simulate.to_bytes(df, "parquet"),
        "column 'event_timestamp' has 1 values in the future (rule: no later than ",
    )
    df = land.frame()
    df.loc[3, "event_timestamp"] = pd.Timestamp("1970-01-01T00:00:00Z")
    land.put(
        "fault-epoch.parquet",
        simulate.to_bytes(df, "parquet"),
        "has 1 values too early (rule: no earlier than ingest.earliest_event 2000-01-01T00:00:00+00:00), "
        "e.g. ['1970-01-01T00:00:00+00:00']",
    )
    text = land.csv(land.frame()).replace("2026-01-", "2026-13-", 1)
    land.put(
        "fault-bad-timestamp.csv",
        text.encode(),
        "column 'event_timestamp' has type object, expected timestamp",
    )


def _land_file_faults(land: Landing) -> None:
    """Encodings, delimiters, compression, truncation, emptiness, limits and formats."""
    text = land.csv(land.frame())
    land.put("file-semicolon.csv", text.replace(",", ";").encode(), "delimited by semicolon (';')")
    land.put("file-tab.csv", text.replace(",", "\t").encode(), "delimited by tab ('\\t')")
    land.put("file-utf16.csv", text.encode("utf-16"), "UTF-16 byte order mark")
    land.put("file-truncated.csv", text.encode()[: len(text) // 2 + 7], "truncated file: its last line")
    whole = gzip.compress(text.encode())
    land.put("file-truncated.csv.gz", whole[: len(whole) // 2], "truncated gzip file")
    land.put("file-not-gzip.csv.gz", text.encode(), "not a readable gzip file")
    land.put(
        "file-bomb.csv.gz",
        gzip.compress(b"a," * 2_000_000),
        "decompresses to more than ingest.max_decoded_bytes",
    )
    bad = simulate.make_bad_batch(land.settings, "corrupt", index=land.index + 200, rows=200)
    land.put("file-truncated.parquet", bad.to_bytes(), "not a readable Parquet file (truncated or corrupt?)")
    land.put("file-empty.csv", b"", "empty file (0 bytes)")
    land.put(
        "file-huge.csv", b"x" * 1_000_001, "file too large: 1,000,001 bytes, above ingest.max_file_bytes"
    )
    land.put(
        "file-many-rows.parquet",
        simulate.to_bytes(land.frame(rows=6000), "parquet"),
        "Parquet metadata says 6,000 rows, above ingest.max_rows 5,000; not decoded",
    )
    wide = pd.DataFrame({"blob": ["y" * 1000] * 4000})
    land.put(
        "file-wide.parquet",
        _parquet(wide, use_dictionary=False),
        "bytes uncompressed, above ingest.max_decoded_bytes",
    )
    land.put(
        "file-sheet.xlsx",
        b"PK\x03\x04 not a table",
        "unsupported file format 'file-sheet.xlsx': landing accepts CSV (.csv), gzip-compressed CSV "
        "(.csv.gz) or Parquet (.parquet)",
    )


def _kept_whole(result, landed: bytes) -> None:
    """Nothing lost: the exact bytes sit in quarantine beside the validation result."""
    name = storage.basename(result.batch_uri)
    assert storage.read_bytes(storage.join(result.location, name)) == landed, name
    note = json.loads(storage.read_bytes(storage.join(result.location, "validation.json")))
    assert note["summary"]["success"] is False and note["summary"]["reason"] == result.reason
    assert storage.exists(storage.join(result.location, "validation.html"))


@pytest.mark.slow
def test_every_bad_file_is_quarantined_naming_its_fault_and_good_rows_are_curated_once(settings):
    land = Landing(settings)
    _land_good(land)
    _land_contract_faults(land)
    _land_file_faults(land)
    storage.write_text(storage.join(settings.storage.landing_uri, ".upload.csv.tmp"), "half-written")

    results = {
        storage.basename(r.batch_uri): r
        for r in map(lambda u: ingest_batch(u, settings), pending_batches(settings))
    }

    quarantined = {name for name, r in results.items() if r.status == "quarantined"}
    assert quarantined == set(land.expect), sorted(quarantined ^ set(land.expect))
    for name, phrase in land.expect.items():
        pattern = re.escape(phrase).replace(re.escape("{n}"), r"[1-9]\d*")  # a count, whatever it is
        assert re.search(pattern, results[name].reason), (
            f"{name}: {results[name].reason!r} does not say {phrase!r}"
        )
        _kept_whole(results[name], land.landed[name])
    assert len(results) == len(land.expect) + 5  # every landed file had its turn
    curated = read_curated(settings)
    assert curated["transaction_id"].is_unique
    assert set(curated["transaction_id"]) == land.good_ids
    assert str(curated["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    # only the file still being written is left in landing; nothing new on a second sweep
    assert [storage.basename(u) for u in storage.list_files(settings.storage.landing_uri)] == [
        ".upload.csv.tmp"
    ]
    assert pending_batches(settings) == []
    _land_good(Landing(settings))  # the same good files delivered again
    again = [ingest_batch(u, settings) for u in pending_batches(settings)]
    assert {r.status for r in again} == {"duplicate"} and sum(r.rows_added for r in again) == 0
    assert len(read_curated(settings)) == len(land.good_ids)
