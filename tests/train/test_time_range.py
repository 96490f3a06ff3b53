"""The events a train run trains on: a retrain the monitor triggered on live performance (the
concept changed) trains on the recent ``train.performance_window_hours`` only; every other run on
the range it was given."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from config import read_config
from tasks.monitoring.decision import Decision
from tasks.training.dataset import time_range

END = "2026-01-05T12:00:00+00:00"


def _conf(reason: str) -> dict:
    """The train run's conf as the monitor DAG's ``should_retrain`` sends it."""
    made = Decision(window_id="w1", end=END, decided_at=END, retrain=True, reason=reason, detail="")
    return made.conf()


def test_a_performance_retrain_trains_on_the_recent_window_only(tmp_path: Path) -> None:
    env = {"AIRLOOP_HOME": str(tmp_path), "AIRLOOP__TRAIN__PERFORMANCE_WINDOW_HOURS": "36"}
    settings = read_config("local", env)
    got = time_range(settings, _conf("performance"))
    assert pd.Timestamp(got["start"]) == pd.Timestamp(END) - pd.Timedelta(hours=36) and got["end"] is None
    assert time_range(settings, _conf("drift")) == {"start": None, "end": None}
    given = {**_conf("performance"), "start": "2026-01-01T00:00:00+00:00"}
    assert time_range(settings, given)["start"] == given["start"]  # a range asked for is kept
    assert time_range(settings, {"reason": "scheduled"}) == {"start": None, "end": None}


def test_unset_every_run_trains_on_the_whole_range(tmp_path: Path) -> None:
    settings = read_config("local", {"AIRLOOP_HOME": str(tmp_path)})
    assert settings.train.performance_window_hours is None
    assert time_range(settings, _conf("performance")) == {"start": None, "end": None}
