"""The inference log: hourly files, window reads, labels joined later, storage failures.

The first tests use the writer and reader directly (no Ray); the last one goes through HTTP.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from tasks.common import storage
from tasks.serving import inference_log
from tasks.serving.inference_log import InferenceLogWriter


def _predictions(start: str, n: int, minutes: float, prefix: str = "r") -> pd.DataFrame:
    ts = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.arange(n) * minutes, unit="m")
    return pd.DataFrame(
        {
            "request_id": [f"{prefix}{i}" for i in range(n)],
            "timestamp": ts,
            "route": np.where(np.arange(n) % 4 == 0, "shadow", "champion"),
            "model_version": "1",
            "score": np.linspace(0, 1, n),
            "transaction_id": [f"t{i}" for i in range(n)],
            "customer_txn_count_7d": np.arange(n, dtype=float),
        }
    )


def _settings(home, **log) -> object:
    from config import read_config

    env = {"AIRLOOP_HOME": str(home), "AIRLOOP__SERVING__INFERENCE_LOG__FLUSH_ROWS": "100",
           "AIRLOOP__SERVING__INFERENCE_LOG__FLUSH_SECONDS": "0.2"}  # fmt: skip
    env.update({f"AIRLOOP__SERVING__INFERENCE_LOG__{k.upper()}": str(v) for k, v in log.items()})
    return read_config("local", env)


@pytest.fixture
def log_settings(tmp_path):
    return _settings(tmp_path)


def test_rows_land_in_hourly_partitions_and_read_back_by_window(log_settings):
    writer = InferenceLogWriter(log_settings, writer_id="w1")
    frame = _predictions("2026-03-01T10:30:00", 12, 20.0)  # 10:30 .. 14:10
    assert writer.append(frame)
    assert writer.flush() == 12
    writer.close()
    files = storage.list_files(inference_log.predictions_uri(log_settings) + "/date=2026-03-01/hour=11")
    assert len(files) == 1 and files[0].endswith(".parquet")

    window = inference_log.read_predictions(
        log_settings, "2026-03-01T11:00", "2026-03-01T13:00", labels=False
    )
    assert list(window["request_id"]) == ["r2", "r3", "r4", "r5", "r6", "r7"]
    assert window["timestamp"].is_monotonic_increasing
    live = inference_log.read_predictions(
        log_settings, "2026-03-01T00:00", "2026-03-02T00:00", labels=False, routes=["champion"]
    )
    assert len(live) == 9 and set(live["route"]) == {"champion"}
    empty = inference_log.read_predictions(log_settings, "2026-04-01", "2026-04-02")
    assert empty.empty and {"request_id", "score", "label"} <= set(empty.columns)


def test_writer_flushes_by_size_and_by_time_in_the_background(log_settings):
    writer = InferenceLogWriter(log_settings, writer_id="w2")
    writer.append(_predictions("2026-03-02T10:00:00", 150, 0.1, prefix="size"))  # > flush_rows
    writer.append(_predictions("2026-03-02T12:00:00", 5, 0.1, prefix="time"))
    deadline = time.monotonic() + 10
    while writer.buffered and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.buffered == 0 and writer.rows_written == 155
    writer.close()
    got = inference_log.read_predictions(log_settings, "2026-03-02", "2026-03-03", labels=False)
    assert len(got) == 155


def test_columnar_chunks_are_folded_and_written_with_their_leading_columns(tmp_path):
    """The ingress appends plain columns (one small chunk per batch) with shared values in
    ``first``; the writer folds them into frames between flushes. A chunk lacking a column gets
    missing values there, as a frame concatenation would."""
    settings = _settings(tmp_path, flush_rows=10_000, flush_seconds=3600)
    writer = InferenceLogWriter(settings)
    ts = pd.Timestamp("2026-03-03T09:00:00", tz="UTC")
    for i in range(40):
        columns = {"transaction_id": [f"t{i}"], "customer_txn_count_7d": np.array([float(i)])}
        first = {"request_id": [f"c{i}"], "timestamp": ts, "route": ["champion"], "score": np.array([0.25])}
        assert writer.append(columns, first)
    writer.append(_predictions("2026-03-03T09:30:00", 3, 1.0, prefix="f").drop(columns=["transaction_id"]))
    deadline = time.monotonic() + 10
    while writer._chunks and time.monotonic() < deadline:  # folded by the writer thread
        time.sleep(0.05)
    assert writer.buffered == 43 and writer.flush() == 43
    writer.close()
    got = inference_log.read_predictions(settings, "2026-03-03", "2026-03-04", labels=False)
    assert sorted(got["request_id"]) == sorted([f"c{i}" for i in range(40)] + ["f0", "f1", "f2"])
    columnar = got[got["request_id"].str.startswith("c")].set_index("request_id")
    assert columnar.loc["c7", "transaction_id"] == "t7" and columnar.loc["c7", "customer_txn_count_7d"] == 7.0
    assert (columnar["score"] == 0.25).all() and (columnar["route"] == "champion").all()
    assert got[got["request_id"].str.startswith("f")]["transaction_id"].isna().all()


def test_labels_join_by_request_id_then_transaction_id_latest_wins(log_settings):
    writer = InferenceLogWriter(log_settings, writer_id="w3")
    writer.append(_predictions("2026-03-03T10:00:00", 6, 10.0))
    writer.close()
    inference_log.write_labels(
        log_settings,
        [
            {"request_id": "r0", "label": 0},
            {"transaction_id": "t1", "label": 1},
            {"request_id": "r2", "label": 0},
        ],
        now="2026-03-04T09:00:00",
    )
    inference_log.write_labels(log_settings, [{"request_id": "r2", "label": 1}], now="2026-03-05T09:00:00")
    got = inference_log.read_predictions(log_settings, "2026-03-03", "2026-03-04").set_index("request_id")
    assert got.loc["r0", "label"] == 0 and got.loc["r1", "label"] == 1 and got.loc["r2", "label"] == 1
    assert np.isnan(got.loc["r3", "label"])
    assert got.loc["r2", "labeled_at"] == pd.Timestamp("2026-03-05T09:00:00", tz="UTC")
    # labels landed after the lookahead are not joined
    short = _settings(log_settings.storage.data_uri.removeprefix("file://").removesuffix("/data"),
                      label_lookahead_hours=6)  # fmt: skip
    late = inference_log.read_predictions(short, "2026-03-03", "2026-03-04")
    assert late["label"].isna().all()


def test_bad_labels_are_refused_whole(log_settings):
    with pytest.raises(ValueError, match="bad rows"):
        inference_log.write_labels(log_settings, [{"request_id": "a", "label": 1}, {"label": 0}])
    with pytest.raises(ValueError, match="bad rows"):
        inference_log.write_labels(log_settings, [{"request_id": "a", "label": 3}])
    assert inference_log.read_labels(log_settings).empty


def test_storage_failure_keeps_rows_and_a_full_buffer_drops_and_counts(log_settings, monkeypatch):
    home = log_settings.storage.data_uri.removeprefix("file://").removesuffix("/data")
    small = _settings(home, max_buffer_rows=20, flush_rows=1000)
    writer = InferenceLogWriter(small, writer_id="w4")
    real_write = storage.write_bytes

    def broken(uri, data):
        raise OSError("disk on fire")

    monkeypatch.setattr(storage, "write_bytes", broken)
    assert writer.append(_predictions("2026-03-06T10:00:00", 15, 1.0))
    assert writer.flush() == 0 and writer.flush_errors == 1 and writer.buffered == 15
    assert not writer.append(_predictions("2026-03-06T11:00:00", 10, 1.0, prefix="x"))
    assert writer.rows_dropped == 10
    monkeypatch.setattr(storage, "write_bytes", real_write)
    assert writer.flush() == 15
    writer.close()
    assert len(inference_log.read_predictions(small, "2026-03-06", "2026-03-07", labels=False)) == 15


@pytest.mark.slow
def test_scored_requests_are_readable_by_window_with_labels_posted_later(client, serving_app):
    settings = serving_app.settings
    before = pd.Timestamp.now(tz="UTC")
    preds = client.score_batch([serving_app.transaction(i) for i in range(20)])
    single = client.score(serving_app.transaction(30))
    after = pd.Timestamp.now(tz="UTC") + pd.Timedelta(milliseconds=1)
    accepted = client.post_labels(
        [{"request_id": p["request_id"], "label": i % 2} for i, p in enumerate(preds[:10])]
        + [{"transaction_id": single["transaction_id"], "label": 1}]
    )
    assert accepted["accepted"] == 11
    client.flush()

    window = inference_log.read_predictions(settings, before, after, routes=["champion", "challenger"])
    assert set(window["request_id"]) == {p["request_id"] for p in preds} | {single["request_id"]}
    window = window.set_index("request_id")
    for i, p in enumerate(preds):
        expected = float(i % 2) if i < 10 else np.nan
        assert window.loc[p["request_id"], "label"] == pytest.approx(expected, nan_ok=True)
    assert window.loc[single["request_id"], "label"] == 1
    row = window.loc[single["request_id"]]
    assert row["model_version"] == "1" and row["score"] == pytest.approx(single["score"])
    assert row["transaction_id"] == single["transaction_id"] and row["endpoint"] == "score"
    assert row["latency_ms"] > 0 and row["customer_id"] == serving_app.transaction(30)["customer_id"]
