"""Live traffic happens on the simulated world's clock: just after the history upstream landed,
which is what the online store describes, and running on at wall speed from there."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from config import Settings, read_config
from tasks.platform import simulate, traffic


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return read_config("local", {"AIRLOOP_HOME": str(tmp_path)})


def _poll(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_history_end_follows_the_landed_batches(settings: Settings) -> None:
    start = pd.Timestamp(settings.simulate.start)
    window = pd.Timedelta(minutes=settings.simulate.batch_minutes)
    assert simulate.history_end(settings) == start
    for i in range(2):
        frame = simulate.generate_batch(settings, "stable", index=i, rows=50)
        simulate.write_batch(frame, settings.storage.landing_uri, simulate.batch_name("stable", i))
    assert simulate.landed_batches(settings) == 2
    assert simulate.history_end(settings) == start + 2 * window
    assert frame["event_timestamp"].max() < simulate.history_end(settings)


def test_an_anchored_clock_starts_at_its_origin_and_runs_at_wall_speed() -> None:
    origin = datetime(2026, 1, 13, tzinfo=UTC)
    clock = traffic.Clock(origin)
    first = clock.now()
    assert origin <= first < origin + timedelta(seconds=5)
    _poll(lambda: clock.now() > first)
    clock.anchor(origin + timedelta(days=8))
    assert clock.now() - origin >= timedelta(days=8)
    wall = traffic.Clock()
    assert abs(wall.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_traffic_is_drawn_for_the_clock_s_present_with_unique_ids(settings: Settings) -> None:
    """Chunks are placed by the clock, not by index x batch window: a 4-day window at index
    100 000 would be centuries ahead (and beyond what pandas holds)."""
    origin = simulate.history_end(settings, 3).to_pydatetime()
    clock = traffic.Clock(origin)
    rows = traffic.transactions(settings, traffic.Mix("stable"), traffic.FIRST_INDEX, clock)
    frame = pd.DataFrame([next(rows) for _ in range(3 * traffic.CHUNK_ROWS)])
    assert frame["transaction_id"].is_unique
    window = timedelta(minutes=settings.simulate.batch_minutes)
    assert frame["event_timestamp"].min() >= origin
    assert frame["event_timestamp"].max() < origin + 2 * window
