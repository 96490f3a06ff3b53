"""The replayed history: one simulated hour of transactions per monitored window, with the time
each label lands.

Hour ``h`` (from the start of ``simulate.start``) is the simulator's batch ``h`` at one batch an
hour: ``stable`` for the training history and until the onset, the spec's scenario after it
(``ramp`` counts its batches from the onset, so it starts weak). Every label lands uniformly
``label_delay_hours`` after its transaction, drawn from a seed of its own, so every policy sees
the same labels at the same times. Hours are generated once and shared by every policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tasks.common.clock import utc_timestamp
from tasks.platform.simulate import generate_batch

if TYPE_CHECKING:
    from config import Settings
    from tasks.backtest.spec import Spec

LABELED_AT = "labeled_at"
_LABEL_STREAM = 16


@dataclass(frozen=True)
class HourArrays:
    """One hour's columns the replay reads every window, as arrays (no pandas per window)."""

    label: np.ndarray
    """The label as float64."""
    at_ns: np.ndarray
    """Transaction times, ns since the epoch."""
    labeled_ns: np.ndarray
    """When each label lands, ns since the epoch."""


@dataclass
class History:
    """Every hour of the backtest: training history first, then the replayed hours."""

    spec: Spec
    start: pd.Timestamp
    hours: list[pd.DataFrame] = field(default_factory=list)
    arrays: list[HourArrays] = field(default_factory=list)
    context: list[pd.DataFrame] = field(default_factory=list)
    """Transactions before the first hour that its feature windows reach back into (a project's
    first ``train.warmup_hours``); a simulated history's come from ``features.warmup_hours``."""

    @property
    def first_replayed(self) -> int:
        return self.spec.train_hours

    @property
    def onset(self) -> int:
        """The hour the scenario begins."""
        return self.spec.train_hours + self.spec.onset_hour

    def at(self, hour: int) -> pd.Timestamp:
        return self.start + pd.Timedelta(hours=hour)

    def frame(self, lo: int, hi: int) -> pd.DataFrame:
        """Hours ``[lo, hi)`` as one frame."""
        return pd.concat(self.hours[max(lo, 0) : hi], ignore_index=True)

    def labelled_by(self, lo: int, hi: int, when: pd.Timestamp) -> pd.DataFrame:
        """Transactions of hours ``[lo, hi)`` whose label had landed by ``when``: what a retrain
        decided at ``when`` can train on."""
        frame = self.frame(lo, hi)
        return frame[frame[LABELED_AT] <= when].reset_index(drop=True)


def scenario_for(spec: Spec, hour: int) -> tuple[str, int]:
    """The simulator's scenario and batch index of ``hour``."""
    onset = spec.train_hours + spec.onset_hour
    if spec.scenario == "stable" or hour < onset:
        return "stable", hour
    return spec.scenario, hour - onset if spec.scenario == "ramp" else hour


def build(settings: Settings, spec: Spec) -> History:
    """Generate every hour (``settings.simulate.batch_minutes`` must be 60)."""
    if settings.simulate.batch_minutes != 60:
        raise ValueError("a backtest replays hourly batches: simulate.batch_minutes must be 60")
    start = utc_timestamp(settings.simulate.start)
    history = History(spec, start)
    lo, hi = spec.label_delay_hours
    for hour in range(spec.train_hours + spec.hours):
        scenario, index = scenario_for(spec, hour)
        frame = generate_batch(settings, scenario, index=index, rows=spec.rows_per_hour, at=history.at(hour))
        rng = np.random.default_rng([settings.simulate.seed, _LABEL_STREAM, hour])
        delay = pd.to_timedelta(rng.uniform(lo, hi, len(frame)), unit="h")
        at = frame[settings.schema_.timestamp]
        frame[LABELED_AT] = at + delay
        history.hours.append(frame)
        history.arrays.append(
            HourArrays(
                frame[settings.schema_.label].to_numpy("float64"),
                at.to_numpy("datetime64[ns]").view("int64"),
                frame[LABELED_AT].to_numpy("datetime64[ns]").view("int64"),
            )
        )
    return history
