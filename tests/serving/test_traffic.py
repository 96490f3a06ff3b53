"""The traffic player against the real application: it keeps its rate, every request is
answered, and every label it posts joins its prediction in the inference log."""

from __future__ import annotations

import time

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def test_traffic_is_scored_logged_and_labelled(serving_app, client):
    from tasks.platform import simulate, traffic
    from tasks.serving import inference_log

    settings = serving_app.settings
    lines: list[str] = []
    since = pd.Timestamp.now(tz="UTC")
    origin = simulate.history_end(settings).to_pydatetime()  # a whole minute: the first chunk's
    t0 = time.monotonic()
    stats = traffic.play(
        settings,
        rate=40,
        requests=120,
        label_delay=0.5,
        progress=lines.append,
        progress_every=1.0,
        clock=traffic.Clock(origin),
    )
    took = time.monotonic() - t0
    assert stats.sent == stats.ok == 120 and stats.failed == 0, stats.errors
    assert took >= 119 / 40, "the player kept to its rate"
    assert set(stats.versions) == {serving_app.versions["good"]} and stats.routes == {"champion": 120}
    assert stats.labels_posted == 120
    assert lines[-1].startswith("[traffic] done:") and "120 sent" in lines[-1]

    client.flush()
    deadline = time.monotonic() + 60
    while True:
        logged = inference_log.read_predictions(
            settings, since, pd.Timestamp.now(tz="UTC") + pd.Timedelta("1min")
        )
        mine = logged[logged["transaction_id"].astype(str).str.contains(f"-{traffic.FIRST_INDEX}-")]
        if len(mine) >= 120 or time.monotonic() > deadline:
            break
        client.flush()
        time.sleep(0.5)
    assert len(mine) == 120
    assert mine["label"].notna().all(), "every posted label joined its prediction"
    assert (mine["event_timestamp"] >= origin).all(), "stamped on the simulated clock"
    chunk = simulate.generate_batch(
        settings, "stable", traffic.FIRST_INDEX, rows=traffic.CHUNK_ROWS, at=origin
    )
    truth = chunk.head(120)
    expected = truth.set_index("transaction_id")["is_fraud"].astype(float)
    assert mine.set_index("transaction_id")["label"].sort_index().equals(expected.sort_index())


def test_play_needs_a_stopping_point(serving_world):
    from tasks.platform import traffic

    with pytest.raises(ValueError, match="seconds or requests"):
        traffic.play(serving_world.settings, rate=10)
    with pytest.raises(ValueError, match="rate"):
        traffic.play(serving_world.settings, rate=0, requests=1)
