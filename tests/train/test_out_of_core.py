"""The out-of-core training set (``train.build.chunk_rows``) holds exactly the in-memory one's rows.

Two simulated histories go through the real ingest path, the feature tables and Feast: the skew
tests' history (the local profile's 3 batches of 4 days, the 7-day warm-up left out; fewer rows
a batch) and a month (8 batches of 4 days). Each is built in memory and streamed with chunks from one day
to many, and the files are compared row for row, with their data versions.
"""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from config import Settings, read_config
from tasks.common import storage
from tasks.training import dataset, streamed

VERSION_FIELDS = ("rows", "positives", "features", "partitions", "batches", "start", "end")


def _history(home: str, batches: int, rows: int | None) -> dict[str, str]:
    """Land ``batches`` simulated batches, refresh the feature tables and apply Feast."""
    from tasks.features import store, tables
    from tasks.ingest.batches import ingest_batch
    from tasks.platform import simulate

    env = {"AIRLOOP_HOME": home}
    settings = read_config("local", env)
    for i in range(batches):
        frame = simulate.generate_batch(settings, "stable", index=i, rows=rows)
        uri = simulate.write_batch(frame, settings.storage.landing_uri, simulate.batch_name("stable", i))
        assert ingest_batch(uri, settings).status == "ingested"
    tables.refresh(settings)
    store.apply(settings)
    return env


@pytest.fixture(scope="module")
def skew_history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _history(str(tmp_path_factory.mktemp("ooc-skew")), batches=3, rows=6000)


@pytest.fixture(scope="module")
def month_history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _history(str(tmp_path_factory.mktemp("ooc-month")), batches=8, rows=3000)


def _read(uri: str) -> pd.DataFrame:
    fs, path = storage.filesystem(uri)
    return pq.read_table(path, filesystem=fs).to_pandas()


def _assert_same(env: dict[str, str], chunk_rows: int, **window: str) -> dataset.DataVersion:
    memory = dataset.build(
        read_config("local", {**env, "AIRLOOP__TRAIN__BUILD__CHUNK_ROWS": "null"}), **window
    )
    settings: Settings = read_config("local", {**env, "AIRLOOP__TRAIN__BUILD__CHUNK_ROWS": str(chunk_rows)})
    streamed_version = dataset.build(settings, **window)
    pd.testing.assert_frame_equal(_read(streamed_version.uri), _read(memory.uri), check_exact=True)
    for name in VERSION_FIELDS:
        assert getattr(streamed_version, name) == getattr(memory, name), name
    frame, version = dataset.read(settings, streamed_version.uri)  # re-hashes the published file
    assert version.sha256 == streamed_version.sha256 and len(frame) == memory.rows
    if len(streamed.plan(streamed.day_rows(settings), chunk_rows)) == 1:
        assert streamed_version.sha256 == memory.sha256, "one chunk: the in-memory build's very bytes"
    return streamed_version


@pytest.mark.parametrize("chunk_rows", [1, 3000, 10**9])
def test_streamed_join_equals_in_memory_join_on_the_skew_history(skew_history, chunk_rows) -> None:
    version = _assert_same(skew_history, chunk_rows)
    assert version.rows > 3000 and version.positives > 0


def test_streamed_join_equals_in_memory_join_on_a_month(month_history) -> None:
    settings = read_config("local", month_history)
    days = streamed.day_rows(settings)
    assert len(days) >= 30
    assert len(streamed.plan(days, 500)) == len(days)  # a day per chunk: the TTL spans chunks
    _assert_same(month_history, 500)
    _assert_same(month_history, 5000, start="2026-01-15T06:00:00+00:00", end="2026-01-29T00:00:00+00:00")


def test_plan_groups_whole_days_up_to_the_bound() -> None:
    rows = {"2026-01-01": 5, "2026-01-02": 4, "2026-01-03": 20, "2026-01-04": 1, "2026-01-05": 1}
    chunks = [["2026-01-01", "2026-01-02"], ["2026-01-03"], ["2026-01-04", "2026-01-05"]]
    assert streamed.plan(rows, 10) == chunks
