"""The backtest on the project's own history (``history: project``): curated transactions written
by the ingest stage's writer (``ingest.curated.write_curated``, one batch an hour of the
simulator's traffic: 3 stable days, then half a day stable and a day and a half of covariate
drift), labels from the curated column, and for one hour labels posted to serving's inference
log (``inference_log.write_labels``), whose posting time is when they land."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.backtest import source, spec
from tasks.backtest.history import LABELED_AT
from tasks.backtest.run import backtest
from tests.backtest.conftest import SMALL

START = pd.Timestamp("2026-03-02T00:00:00Z")
"""Not the simulator's own start: the hours must come from the data."""
TRAIN_HOURS, REPLAYED_HOURS, ONSET_DAY = 72, 48, 0.5
POSTED_HOUR = TRAIN_HOURS + 2
POSTED_AFTER = pd.Timedelta(minutes=75)
EMPTY_HOUR = TRAIN_HOURS + 3
"""A replayed hour without transactions: an empty window, as the monitor would see it."""


def _spec(**changes: Any) -> spec.Spec:
    data = {**SMALL, "history": "project", "scenario": "covariate_drift", "days": 30, "onset_day": ONSET_DAY}
    return spec.parse(data | changes)


def _write_warmup(settings: Any, s: spec.Spec) -> None:
    """The features' warm-up before ``START`` (``train.warmup_hours``: context, not rows), stable
    hours written a day per file."""
    from tasks.ingest.curated import write_curated
    from tasks.platform.simulate import generate_batch
    from tasks.training.dataset import warmup

    hours = int(warmup(settings) / pd.Timedelta(hours=1))
    day: list[pd.DataFrame] = []
    for hour in range(-hours, 0):
        at = START + pd.Timedelta(hours=hour)
        index = 10_000 + hours + hour
        day.append(generate_batch(settings, "stable", index=index, rows=s.rows_per_hour, at=at))
        if len(day) == 24 or hour == -1:
            write_curated(settings, pd.concat(day, ignore_index=True), f"warmup-{hour + hours:03d}")
            day = []


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A project whose curated dataset holds the hours, and the settings the backtest reads."""
    from tasks.backtest.history import scenario_for
    from tasks.ingest.curated import write_curated
    from tasks.platform.simulate import generate_batch
    from tasks.serving.inference_log import write_labels

    home = tmp_path_factory.mktemp("backtest-project")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRLOOP_HOME", str(home))
        s = _spec()
        settings = spec.policy_settings(s, s.policies[0])
        _write_warmup(settings, s)
        for hour in range(TRAIN_HOURS + REPLAYED_HOURS):
            if hour == EMPTY_HOUR:
                continue
            scenario, index = scenario_for(s, hour)
            at = START + pd.Timedelta(hours=hour)
            batch = generate_batch(settings, scenario, index=index, rows=s.rows_per_hour, at=at)
            write_curated(settings, batch, f"hour-{hour:03d}")
            if hour == POSTED_HOUR:
                ts = batch[settings.schema_.timestamp]
                posted = batch.assign(label=batch[settings.schema_.label])[["transaction_id", "label"]]
                write_labels(settings, posted, now=at + POSTED_AFTER)
                assert (ts < at + POSTED_AFTER).all()
        yield settings


def test_labels_land_when_posted_else_after_the_specs_delay(project):
    settings = project
    frame = source.transactions(settings)
    ts, label = settings.schema_.timestamp, settings.schema_.label
    assert (frame[ts] >= START).sum() == (TRAIN_HOURS + REPLAYED_HOURS - 1) * SMALL["rows_per_hour"]
    history = source.project(settings, _spec())
    assert [len(h) for h in history.hours].count(0) == 1 and history.hours[EMPTY_HOUR].empty
    posted = history.hours[POSTED_HOUR]
    assert (posted[LABELED_AT] == START + pd.Timedelta(hours=POSTED_HOUR) + POSTED_AFTER).all()
    others = pd.concat([h for i, h in enumerate(history.hours) if i != POSTED_HOUR])
    delay = (others[LABELED_AT] - others[ts]) / pd.Timedelta(hours=1)
    lo, hi = SMALL["label_delay_hours"]
    assert delay.between(lo, hi).all() and delay.std() > 0.5
    assert set(others[label].unique()) == {0, 1}
    assert np.array_equal(history.arrays[POSTED_HOUR].label, posted[label].to_numpy("float64"))


def test_the_backtest_replays_the_projects_hours_and_finds_its_drift(project, tmp_path):
    """``airloop backtest --history project`` on a file that names no history."""
    from tasks.backtest import cli

    policies = tmp_path / "policies.json"
    policies.write_text(
        json.dumps({**SMALL, "days": 30, "onset_day": ONSET_DAY, "policies": [{"name": "default"}]})
    )
    argv = [
        "--history",
        "project",
        "--policies",
        str(policies),
        "--name",
        "p",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["spec"]["history"] == "project"
    assert result["spec"]["days"] * 24 == REPLAYED_HOURS  # 30 days asked for, 2 present
    w = pd.DataFrame(result["windows"]["default"])
    ends = pd.to_datetime(w["end"], utc=True)
    first = START + pd.Timedelta(hours=TRAIN_HOURS + 1)
    assert list(ends) == list(pd.date_range(first, periods=REPLAYED_HOURS, freq="h"))
    assert w["drift_share"].isna().tolist() == [i == EMPTY_HOUR - TRAIN_HOURS for i in range(len(w))]
    onset = pd.Timestamp(result["onset"])
    assert onset == START + pd.Timedelta(hours=TRAIN_HOURS + ONSET_DAY * 24)
    summary = result["policies"][0]
    assert summary["detected_after_hours"] is not None and summary["retrains"] >= 1, summary
    drift = w[w["reason"] == "drift"]
    assert len(drift) and (pd.to_datetime(drift["end"], utc=True) > onset).all(), drift[
        ["end", "drift_share"]
    ]
    found = pd.Timestamp(drift["end"].iloc[0]) - onset
    assert found <= pd.Timedelta(hours=6), found
    # the retrains trained on the project's data: each is decided at a replayed hour's end
    decided = pd.to_datetime([r["decided_at"] for r in result["retrains"]["default"]], utc=True)
    assert set(decided) <= set(ends) and any(r["reason"] == "drift" for r in result["retrains"]["default"])


def test_an_empty_curated_dataset_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="no curated transactions"):
        backtest(_spec())
