"""Reading a window from a real inference log (the serving module's own writer and label
landing): synthetic traffic is left out of the window and its lookback, and a prediction's label
is the latest version posted at or before the window's end. No Evidently, no model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.monitoring import reading, sensing
from tasks.monitoring.reference import Reference
from tasks.monitoring.results import Window

T0 = pd.Timestamp("2026-04-01T00:00:00Z")


def _reference() -> Reference:
    return Reference(
        model_name="m",
        model_version="1",
        training_set_uri="",
        data_sha256="",
        rows=1,
        numeric=["amount"],
        categorical=["channel"],
        frame=pd.DataFrame({"amount": [1.0], "channel": ["online"], "score": [0.1]}),
        holdout=pd.DataFrame({"label": [0], "score": [0.1]}),
        holdout_start="",
    )


def _log(settings, frame: pd.DataFrame, tag: str) -> None:
    from tasks.serving.inference_log import InferenceLogWriter

    writer = InferenceLogWriter(settings, writer_id=f"reading-{tag}")
    assert writer.append(frame)
    writer.close()
    assert writer.rows_written == len(frame)


def _predictions(n: int, tag: str, *, traffic: str | None, amount: float, score: float) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "request_id": [f"{tag}{i}" for i in range(n)],
            "transaction_id": [f"t-{tag}{i}" for i in range(n)],
            "timestamp": T0 + pd.Timedelta(minutes=10) + pd.to_timedelta(np.arange(n), unit="s"),
            "route": "champion",
            "model_version": "1",
            "score": score,
            "amount": amount,
            "channel": "online",
        }
    )
    return frame if traffic is None else frame.assign(traffic=traffic)


def test_synthetic_traffic_is_left_out_of_the_count_the_window_and_the_lookback(settings):
    """An older file without the mark (live), a file with live and synthetic rows: a benchmark's
    one request repeated 300 times drifts every column and is labelled fraud, and counts nowhere."""
    from tasks.serving.inference_log import write_labels

    _log(settings, _predictions(100, "old", traffic=None, amount=10.0, score=0.1), "old")
    mixed = pd.concat(
        [
            _predictions(50, "live", traffic="live", amount=12.0, score=0.2),
            _predictions(300, "bench", traffic="synthetic", amount=9999.0, score=0.99),
        ]
    )
    _log(settings, mixed, "mixed")
    labels = [{"request_id": f"bench{i}", "label": 1} for i in range(300)]
    labels += [{"request_id": f"live{i}", "label": i % 2} for i in range(50)]
    write_labels(settings, labels, now=T0 + pd.Timedelta(minutes=30))

    end = T0 + pd.Timedelta(hours=1)
    assert sensing.count_predictions(settings, T0, end) == 150
    data = reading.load_window(settings, Window.of(T0, end), _reference())
    assert data.rows == 150 and data.synthetic_rows == 300 and data.scored_rows == 150
    assert data.sample["amount"].max() == 12.0 and len(data.sample) == 150
    assert len(data.labelled) == 50 and data.labelled["score"].max() == pytest.approx(0.2)


def test_a_label_is_the_latest_version_posted_at_or_before_the_window_end(settings):
    from tasks.serving.inference_log import write_labels

    _log(settings, _predictions(3, "p", traffic="live", amount=1.0, score=0.3), "labels")
    first, fixed, late = (T0 + pd.Timedelta(hours=h) for h in (1, 2, 3))
    write_labels(
        settings, [{"request_id": "p0", "label": 1}, {"transaction_id": "t-p1", "label": 0}], now=first
    )
    # p0's label corrected exactly at the second window's end, p1's only after every window
    write_labels(settings, [{"request_id": "p0", "label": 0}], now=fixed)
    write_labels(settings, [{"request_id": "p1", "label": 1}], now=late)

    def labels_as_of(end: pd.Timestamp) -> list[float]:
        data = reading.load_window(settings, Window.of(T0, end), _reference())
        return sorted(data.labelled["label"].tolist())

    assert labels_as_of(first - pd.Timedelta(seconds=1)) == []
    assert labels_as_of(first) == [0.0, 1.0]  # posted at the window's end: counts
    assert labels_as_of(fixed) == [0.0, 0.0]  # p0's correction, at the end: the newer version wins
    assert labels_as_of(late) == [0.0, 1.0]  # p1's request-id label outranks its transaction-id one


def test_of_two_versions_posted_together_the_later_row_wins():
    at = T0 + pd.Timedelta(hours=1)
    posted = pd.DataFrame(
        {
            "request_id": ["a", "b", "a"],
            "transaction_id": [None, None, None],
            "label": [1, 1, 0],
            "labeled_at": [at, at - pd.Timedelta(minutes=1), at],
        }
    )
    assert list(reading.latest_first(posted)["request_id"]) == ["b", "a", "a"]
    maps = reading._label_maps(posted)
    [a] = maps["request_id"].reindex(pd.Index(reading._key_hash(pd.Series(["a"])))).tolist()
    assert a == 0.0


def _estimating(**overrides: object):
    import os

    from config import read_config

    extra = {f"AIRLOOP__MONITOR__ESTIMATION__{k.upper()}": str(v) for k, v in overrides.items()}
    return read_config("local", {**os.environ, **extra})


def test_the_estimate_reads_the_champions_scores_of_its_own_lookback_labelled_or_not(airloop_home):
    """Scores of the estimation lookback count whether labelled or not; older ones, another
    version's and synthetic ones do not; beyond ``max_rows`` a uniform sample is kept."""
    from tasks.serving.inference_log import write_labels

    settings = _estimating(lookback_hours=3)
    early = _predictions(40, "early", traffic="live", amount=10.0, score=0.9)
    early["timestamp"] -= pd.Timedelta(hours=5)  # before the estimation lookback
    _log(settings, early, "early")
    recent = _predictions(60, "recent", traffic="live", amount=10.0, score=0.3)
    recent["timestamp"] -= pd.Timedelta(hours=2)  # inside it, before the window
    _log(settings, recent, "recent")
    other = _predictions(20, "other", traffic="live", amount=10.0, score=0.7).assign(model_version="2")
    now = _predictions(30, "now", traffic="live", amount=10.0, score=0.2)
    bench = _predictions(50, "bench", traffic="synthetic", amount=1.0, score=1.0)
    _log(settings, pd.concat([other, now, bench]), "w")
    labels = [{"request_id": f"now{i}", "label": 0} for i in range(5)]
    write_labels(settings, labels, now=T0 + pd.Timedelta(minutes=30))

    window = Window.of(T0, T0 + pd.Timedelta(hours=1))
    data = reading.load_window(settings, window, _reference())
    assert sorted(np.unique(data.scores)) == pytest.approx([0.2, 0.3])
    assert len(data.scores) == 90 and data.estimate_start == window.end - pd.Timedelta(hours=3)
    assert len(data.labelled) == 5  # the performance lookback is labelled rows only

    sampled = reading.load_window(_estimating(lookback_hours=3, max_rows=25), window, _reference())
    assert len(sampled.scores) == 25
