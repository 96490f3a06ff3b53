"""Where a backtest's hours come from: the simulator, or the project's own history.

``history: simulator`` (the default) generates the spec's scenario (``history.build``).
``history: project`` (``airloop backtest --history project``) replays what the project has
seen instead: the ingest stage's curated transactions (``storage.curated_uri``, every
``event_date=`` partition, ``ingest.curated.read_curated_dates``) cut into hours by event time
from the first hour after the features' warm-up (``train.warmup_hours``, the longest feature
window by default: as in training, those transactions are the first hours' feature context, not
rows). The first ``train_days`` of hours train the first champion;
the replay is every hour after them, at most ``days`` of them. The hours are contiguous: an
hour without transactions is an empty window, as the monitor would see it.

Labels: a transaction's label is the curated label column (``schema.label``), else the latest
label posted for its ``transaction_id`` to serving's ``POST /labels`` (the inference log's
``labels/``). When each label became known: the first time one was posted for the transaction
(``labeled_at``); where no label was ever posted (data ingested with its labels, the usual case)
the arrival time is unknown and the spec's ``label_delay_hours`` stands in for it (uniform, a
seed per hour, as for the simulator's hours). Labels posted by ``request_id`` only are not
matched. Transactions with no label at all are left out (the replay's quality curve needs every
label). The spec's
``scenario`` and ``rows_per_hour`` do not apply; ``onset_day`` marks when the user believes
the drift began (the report's detection and area-lost numbers count from it).
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tasks.backtest import history as hist
from tasks.ingest.curated import curated_dates, read_curated_dates
from tasks.serving.inference_log import read_labels
from tasks.training.dataset import warmup

if TYPE_CHECKING:
    from config import Settings
    from tasks.backtest.spec import Spec

PROJECT = "project"
_LABEL_STREAM = 17
"""The label delays' random stream (the simulator's hours draw theirs from stream 16)."""


def build(settings: Settings, spec: Spec) -> hist.History:
    """The hours of ``spec.history``; a project history's spec says how many hours it replays."""
    if spec.history == PROJECT:
        return project(settings, spec)
    return hist.build(settings, spec)


def transactions(settings: Settings) -> pd.DataFrame:
    """Every curated transaction with its label and ``labeled_at``, oldest first."""
    frame = read_curated_dates(settings, curated_dates(settings))
    if frame.empty:
        raise ValueError(f"no curated transactions under {settings.storage.curated_uri}: ingest some first")
    schema = settings.schema_
    frame[schema.timestamp] = pd.to_datetime(frame[schema.timestamp], utc=True)
    frame = frame.sort_values([schema.timestamp, schema.key], kind="stable").reset_index(drop=True)
    posted = _posted(settings)
    keys = frame[schema.key]
    frame[schema.label] = pd.to_numeric(frame[schema.label], errors="coerce").fillna(
        keys.map(posted["label"])
    )
    frame[hist.LABELED_AT] = pd.to_datetime(keys.map(posted["first"]), utc=True)
    return frame[frame[schema.label].notna()].reset_index(drop=True)


def _posted(settings: Settings) -> pd.DataFrame:
    """Per ``transaction_id``: the latest label posted to serving and when the first one landed."""
    labels = read_labels(settings).dropna(subset=["transaction_id"])
    by_key = labels.groupby("transaction_id", sort=False)
    return pd.DataFrame(
        {
            "label": by_key["label"].last().astype("float64"),
            "first": pd.to_datetime(by_key[hist.LABELED_AT].min(), utc=True),
        }
    )


def project(settings: Settings, spec: Spec) -> hist.History:
    """The project's curated history as the backtest's hours (see the module's docstring)."""
    frame = transactions(settings)
    ts = settings.schema_.timestamp
    # as training does: the first train.warmup_hours are the features' context, not rows
    start = (frame[ts].min().floor("h") + warmup(settings)).ceil("h")
    context, frame = frame[frame[ts] < start], frame[frame[ts] >= start].reset_index(drop=True)
    if frame.empty:
        raise ValueError(f"the curated history is no longer than the features' warm-up ({warmup(settings)})")
    hour_of = ((frame[ts] - start) // pd.Timedelta(hours=1)).to_numpy("int64")
    present = int(hour_of.max()) + 1
    if present <= spec.train_hours:
        raise ValueError(
            f"the curated history spans {present} hours, no more than train_days ({spec.train_hours} h)"
        )
    spec = replace(spec, days=min(spec.hours, present - spec.train_hours) / 24)
    history = hist.History(spec, start, context=[context])
    bounds = np.searchsorted(hour_of, np.arange(spec.train_hours + spec.hours + 1))
    for hour, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        part = frame.iloc[lo:hi].reset_index(drop=True)
        history.hours.append(part)
        history.arrays.append(_arrays(settings, spec, part, hour))
    return history


def _arrays(settings: Settings, spec: Spec, part: pd.DataFrame, hour: int) -> hist.HourArrays:
    """The hour's arrays; labels never posted land ``label_delay_hours`` after their transaction,
    uniformly, drawn from a seed of the hour's own (every policy sees them land at one time)."""
    ts = part[settings.schema_.timestamp]
    unknown = part[hist.LABELED_AT].isna().to_numpy()
    if unknown.any():
        lo, hi = spec.label_delay_hours
        rng = np.random.default_rng([settings.simulate.seed, _LABEL_STREAM, hour])
        delay = pd.to_timedelta(rng.uniform(lo, hi, int(unknown.sum())), unit="h")
        part.loc[unknown, hist.LABELED_AT] = ts[unknown] + delay.to_numpy()
    return hist.HourArrays(
        part[settings.schema_.label].to_numpy("float64"),
        ts.to_numpy("datetime64[ns]").view("int64"),
        part[hist.LABELED_AT].to_numpy("datetime64[ns]").view("int64"),
    )
