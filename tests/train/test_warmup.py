"""Training rows start once the longest feature window lies inside the history: earlier events
are the features' context only (their long-window counts ramp up from zero, which serving never
sees)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from config import read_config
from tasks.features.tables import MAX_WINDOW
from tasks.platform import simulate
from tasks.training import dataset


def _events(settings, batches: int) -> pd.DataFrame:
    frames = [simulate.generate_batch(settings, "stable", index=i, rows=2000) for i in range(batches)]
    return pd.concat(frames, ignore_index=True)


def test_events_within_the_longest_window_of_the_start_are_left_out(tmp_path: Path) -> None:
    settings = read_config("local", {"AIRLOOP_HOME": str(tmp_path)})
    events = _events(settings, 3)
    kept = dataset.after_warmup(settings, events)
    first = events["event_timestamp"].min()
    assert dataset.warmup(settings) == pd.Timedelta(MAX_WINDOW)
    assert kept["event_timestamp"].min() >= first + MAX_WINDOW
    assert len(kept) == (events["event_timestamp"] >= first + MAX_WINDOW).sum() > 0.3 * len(events)


def test_the_warm_up_is_configurable_and_zero_keeps_every_row(tmp_path: Path) -> None:
    env = {"AIRLOOP_HOME": str(tmp_path), "AIRLOOP__TRAIN__WARMUP_HOURS": "0"}
    settings = read_config("local", env)
    events = _events(settings, 1)
    assert len(dataset.after_warmup(settings, events)) == len(events)


def test_a_history_no_longer_than_the_warm_up_is_a_clear_error(tmp_path: Path) -> None:
    settings = read_config("local", {"AIRLOOP_HOME": str(tmp_path)})
    with pytest.raises(
        dataset.TrainingDataError, match=r"not longer than the features' warm-up .*warmup_hours"
    ):
        dataset.after_warmup(settings, _events(settings, 1))
