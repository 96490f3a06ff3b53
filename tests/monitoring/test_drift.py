"""Drift on small known frames: the sampler, its error bound, Evidently's verdicts per column."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from evidently.legacy.calculations.stattests import get_stattest
from evidently.legacy.core import ColumnType

from config import read_config
from tasks.monitoring import drift
from tasks.monitoring.reference import Reference
from tasks.monitoring.sampling import UniformSample, dkw_epsilon, sample_frame


def test_uniform_sample_is_bounded_ordered_and_uniform():
    n, k, chunk, reps = 240, 60, 17, 400
    frame = pd.DataFrame({"i": np.arange(n)})
    hits = np.zeros(n)
    for seed in range(reps):
        sample = UniformSample(k, seed)
        for lo in range(0, n, chunk):
            sample.add(frame.iloc[lo : lo + chunk])
            assert len(sample.frame()) <= k
        got = sample.frame()["i"].to_numpy()
        assert sample.seen == n and len(got) == k == len(set(got))
        assert (np.diff(got) > 0).all()  # stream order kept
        hits[got] += 1
    expected = reps * k / n
    sd = math.sqrt(reps * (k / n) * (1 - k / n))
    assert np.abs(hits - expected).max() < 5 * sd
    assert UniformSample(5, 0).frame() is None


def test_sample_frame_keeps_small_frames_and_cuts_large_ones():
    frame = pd.DataFrame({"x": np.arange(100)})
    assert sample_frame(frame, 100, 0) is frame
    cut = sample_frame(frame, 10, 0)
    assert len(cut) == 10 and cut["x"].is_monotonic_increasing
    pd.testing.assert_frame_equal(cut, sample_frame(frame, 10, 0))


def test_dkw_bound_is_zero_without_sampling_and_holds_on_a_real_sample():
    assert dkw_epsilon(1000, 1000, 0.95) == 0.0
    assert dkw_epsilon(0, 1000, 0.95) == 0.0
    assert 2 * dkw_epsilon(50_000, 10**6, 0.95) == pytest.approx(0.0132, abs=1e-4)  # the docstring's number
    rng = np.random.default_rng(3)
    full = np.sort(rng.lognormal(0, 1, 400_000))
    eps = dkw_epsilon(20_000, len(full), 0.95)
    misses = 0
    for seed in range(20):
        part = np.sort(np.random.default_rng(seed).choice(full, 20_000, replace=False))
        grid = full[:: len(full) // 2000]
        sampled = np.searchsorted(part, grid, "right") / len(part)
        gap = np.abs(sampled - np.searchsorted(full, grid, "right") / len(full))
        misses += gap.max() > eps
    assert misses <= 2  # holds with >= 97.5% per side; 20 draws


def _reference(frame: pd.DataFrame, scores: np.ndarray) -> Reference:
    return Reference(
        model_name="m",
        model_version="1",
        training_set_uri="",
        data_sha256="",
        rows=len(frame),
        numeric=["shifted", "steady", "empty"],
        categorical=["channel"],
        frame=frame.assign(score=scores),
        holdout=pd.DataFrame({"label": np.zeros(len(frame)), "score": scores}),
        holdout_start="",
    )


def _frames(n_ref: int, n_cur: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {
            "shifted": rng.normal(0, 1, n_ref),
            "steady": rng.normal(0, 1, n_ref),
            "empty": rng.normal(0, 1, n_ref),
            "channel": rng.choice(["online", "in_store", "contactless"], n_ref, p=[0.2, 0.5, 0.3]),
        }
    )
    cur = pd.DataFrame(
        {
            "shifted": rng.normal(0.6, 1, n_cur),
            "steady": rng.normal(0, 1, n_cur),
            "empty": np.nan,
            "channel": rng.choice(["online", "in_store", "contactless"], n_cur, p=[0.6, 0.2, 0.2]),
            "score": rng.beta(1, 30, n_cur),
        }
    )
    return ref, cur, rng.beta(1, 30, n_ref)


def test_drift_per_column_type_with_overrides_share_and_untestable_columns(airloop_home):
    ref, cur, ref_scores = _frames(4000, 2000)
    overrides = {
        "AIRLOOP__MONITOR__DRIFT__PER_COLUMN_METHOD": "{steady: ks}",
        "AIRLOOP__MONITOR__DRIFT__PER_COLUMN_THRESHOLD": "{steady: 0.01}",
    }
    settings = read_config("local", {**os.environ, **overrides})
    result, snapshot = drift.compute(settings, cur, _reference(ref, ref_scores))
    assert result.judged and snapshot is not None and result.error_bound == 0.0
    cols = {c.column: c for c in result.columns}
    assert cols["shifted"].drifted and cols["shifted"].method == "wasserstein" and cols["shifted"].score > 0.1
    assert cols["channel"].drifted and cols["channel"].method == "jensenshannon"
    steady = cols["steady"]
    assert steady.method == "ks" and steady.threshold == 0.01 and not steady.drifted and steady.score > 0.01
    assert not cols["empty"].judged and cols["empty"].note == "no values in the window"
    assert result.drifted_columns == ["shifted", "channel"]
    assert result.share == pytest.approx(2 / 3)  # the untestable column is not in the share
    assert result.data_drift and not result.prediction_drift
    assert result.prediction.method == "psi" and result.prediction.score < 0.1
    assert result.as_dict()["drifted_columns"] == ["shifted", "channel"]


def test_small_windows_are_recorded_but_not_judged(settings):
    ref, cur, ref_scores = _frames(1000, 100)
    result, snapshot = drift.compute(settings, cur, _reference(ref, ref_scores))
    assert not result.judged and snapshot is None and result.share is None
    assert not result.data_drift and "min_rows=500" in result.note


def test_the_tests_without_a_report_give_the_reports_scores_and_verdicts(airloop_home):
    """``report=False`` (the backtest's path) runs the very stat tests the report runs."""
    ref, cur, ref_scores = _frames(4000, 2000)
    overrides = {"AIRLOOP__MONITOR__DRIFT__PER_COLUMN_METHOD": "{steady: ks}"}
    settings = read_config("local", {**os.environ, **overrides})
    reference = _reference(ref, ref_scores)
    full, snapshot = drift.compute(settings, cur, reference)
    fast, none = drift.compute(settings, cur, reference, report=False)
    assert snapshot is not None and none is None
    assert fast.as_dict() == full.as_dict()


@pytest.mark.parametrize("ties", [False, True])
def test_the_wasserstein_distance_is_evidentlys_to_the_last_bit(ties):
    """The sorted-reference Wasserstein distance equals Evidently's ``wasserstein`` stat test
    (SciPy's distance over the reference's std), on random columns with and without ties, of up
    to 15 000 values together (past where OpenBLAS splits SciPy's dot product over threads)."""
    rng = np.random.default_rng(int(ties))
    for _ in range(40):
        n, m = int(rng.integers(50, 12000)), int(rng.integers(1, 3000))
        shift, scale = rng.normal(0, 0.3), rng.uniform(0.5, 2.0)
        r, c = rng.normal(0, 1, n), rng.normal(shift, scale, m)
        if ties:
            r, c = np.round(r * 3) / 3, np.round(c * 3) / 3
        ref = pd.DataFrame({"x": r})
        current = pd.Series(c)
        test = get_stattest(pd.Series(r), current, ColumnType.Numerical, "wasserstein")
        expected = test(pd.Series(r), current, ColumnType.Numerical, 0.1).drift_score
        assert drift._wasserstein(ref, "x", current) == float(expected)
