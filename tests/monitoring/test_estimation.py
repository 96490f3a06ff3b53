"""Performance estimated before labels arrive (CBPE) against a Monte-Carlo ground truth, its
trust checks, and the decision's early trigger (off by default)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from config import read_config
from tasks.monitoring import decision, estimation, performance
from tasks.monitoring.reference import Reference
from tasks.monitoring.results import ColumnDrift, DriftResult, Scores, WindowResult

T0 = pd.Timestamp("2026-03-01T00:00:00Z")


def _settings(**overrides: object):
    extra = {f"AIRLOOP__MONITOR__{k.upper()}": str(v) for k, v in overrides.items()}
    return read_config("local", {**os.environ, **extra})


def _calibrated(n: int, seed: int) -> np.ndarray:
    """Fraud-like calibrated scores: most near zero, a few high."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.05, rng.beta(4, 2, n), rng.beta(0.6, 40, n))


def _reference(p: np.ndarray, seed: int = 1, *, miscalibrate: float = 1.0) -> Reference:
    rng = np.random.default_rng(seed)
    y = (rng.random(len(p)) < p).astype("int64")
    frame = pd.DataFrame({"amount": rng.lognormal(3, 0.5, len(p)), "channel": rng.choice(["a", "b"], len(p))})
    return Reference(
        model_name="m",
        model_version="1",
        training_set_uri="",
        data_sha256="",
        rows=len(p),
        numeric=["amount"],
        categorical=["channel"],
        frame=frame.assign(score=p),
        holdout=pd.DataFrame({"label": y, "score": np.clip(p * miscalibrate, 0, 1)}),
        holdout_start="",
    )


def test_the_estimate_is_the_mean_realised_metric_and_its_band_covers_it(airloop_home):
    """Labels drawn from calibrated scores: the estimate equals the realised metrics' mean, and
    the realised metric falls inside the band about as often as its confidence says."""
    settings = _settings()
    p = _calibrated(3000, 0)
    ref = _reference(_calibrated(20_000, 5))
    sample = pd.DataFrame({"amount": ref.frame["amount"].iloc[:3000].to_numpy(), "channel": "a", "score": p})
    est = estimation.estimate(settings, p, sample, ref, 0.5)
    assert est is not None and est.trusted and est.rows == 3000
    rng = np.random.default_rng(42)
    realised = {m: [] for m in ("roc_auc", "precision", "recall")}
    inside = {m: 0 for m in realised}
    reps = 250
    for _ in range(reps):
        live = performance.scores((rng.random(len(p)) < p).astype(int), p, 0.5)
        for m, values in realised.items():
            values.append(getattr(live, m))
            inside[m] += bool(est.within(m, getattr(live, m)))
    for m, values in realised.items():
        assert np.mean(values) == pytest.approx(getattr(est, m), abs=0.01), m
        assert 0.85 <= inside[m] / reps <= 0.995, (m, inside[m] / reps)
        # the band is the realised spread (Hanley-McNeil's is a little wide for ROC AUC: conservative)
        assert 0.8 <= est.bands[m] / (1.96 * np.std(values)) <= 1.5, m


def test_expected_auc_handles_ties_like_the_realised_one():
    p = np.repeat([0.1, 0.1, 0.5, 0.9], 50)
    rng = np.random.default_rng(3)
    mean = np.mean(
        [performance.scores((rng.random(len(p)) < p).astype(int), p, 0.5).roc_auc for _ in range(300)]
    )
    assert estimation.expected_roc_auc(p) == pytest.approx(mean, abs=0.01)
    assert estimation.expected_roc_auc(np.zeros(10)) is None


def test_the_estimate_is_not_trusted_off_support_or_miscalibrated(airloop_home):
    settings = _settings()
    p = _calibrated(1000, 0)
    good = _reference(_calibrated(20_000, 5))
    far = pd.DataFrame({"amount": 1e9, "channel": "a", "score": p})
    off = estimation.estimate(settings, p, far, good, 0.5)
    assert off is not None and not off.trusted and off.out_of_support == 1.0
    assert "outside the reference's support" in off.notes[0]
    unseen = pd.DataFrame({"amount": 20.0, "channel": "new", "score": p})
    assert not estimation.estimate(settings, p, unseen, good, 0.5).trusted
    bad = _reference(_calibrated(20_000, 5), miscalibrate=3.0)
    inside = pd.DataFrame({"amount": 20.0, "channel": "a", "score": p})
    skewed = estimation.estimate(settings, p, inside, bad, 0.5)
    assert not skewed.trusted and "hold-out ECE" in skewed.notes[0]
    assert estimation.estimate(settings, p[:50], inside, good, 0.5) is None  # below min_rows
    assert estimation.estimate(_settings(estimation__enabled="false"), p, inside, good, 0.5) is None


def _window(estimate: estimation.Estimate | None) -> WindowResult:
    d = DriftResult(True, 2000, 9000, 2000, 9000, 0.0, 0.95, [], share_threshold=0.3)
    d.prediction = ColumnDrift("score", "prediction", "psi", 0.1, score=0.01, drifted=False)
    base = Scores(rows=4000, positives=80, threshold=0.5, roc_auc=0.97, precision=0.6, recall=0.66)
    live = Scores(rows=10, positives=0, threshold=0.5)  # no labels yet
    perf = performance.compare(_settings(), live, base, start=T0.isoformat(), end=T0.isoformat())
    return WindowResult(
        window_id="w0",
        start=(T0 - pd.Timedelta(hours=1)).isoformat(),
        end=T0.isoformat(),
        model_name="m",
        model_version="1",
        data_sha256="",
        rows=2000,
        scored_rows=2000,
        versions={"1": 2000},
        drift=d,
        performance=perf,
        computed_at=T0.isoformat(),
        estimate=estimate.as_dict() if estimate else None,
    )


def test_a_trusted_estimated_drop_triggers_early_only_when_turned_on(airloop_home):
    yardstick = {"roc_auc": 0.97, "precision": 0.6, "recall": 0.66}  # the hold-out's estimate
    low = estimation.Estimate(2000, 0.5, 40.0, roc_auc=0.85, precision=0.5, recall=0.6, trusted=True)
    low.holdout = yardstick
    w = _window(low)
    assert not decision.decide(_settings(), w, now=T0).triggered  # off by default
    on = _settings(estimation__trigger="true")
    made = decision.decide(on, w, now=T0)
    assert made.retrain and made.reason == "estimated_performance"
    assert made.triggers == [
        "estimated performance: estimated roc_auc 0.850 (+0.000) < hold-out's estimated 0.970 - 0.05"
    ]
    wide = estimation.Estimate(2000, 0.5, 40.0, roc_auc=0.85, bands={"roc_auc": 0.1}, trusted=True)
    wide.holdout = yardstick
    assert not decision.decide(on, _window(wide), now=T0).triggered  # within its band of the tolerance
    untrusted = estimation.Estimate(2000, 0.5, 40.0, roc_auc=0.85, trusted=False, notes=["x"])
    untrusted.holdout = yardstick
    assert not decision.decide(on, _window(untrusted), now=T0).triggered
    assert not decision.decide(on, _window(None), now=T0).triggered
    back = WindowResult.from_dict(w.as_dict())
    assert back.estimate == w.estimate and back.row()["estimated_roc_auc"] == 0.85


def _overstated_low(p: np.ndarray) -> np.ndarray:
    """Scores that overstate every low probability a little, as real models do: too little for
    the hold-out's ECE bound, much for expected recall, which sums them over thousands of rows."""
    return np.where(p < 0.2, p * 1.4 + 0.003, p)


def test_the_trigger_compares_the_estimate_with_the_holdouts_estimate_not_its_realised_metrics(
    airloop_home,
):
    """On scores whose small calibration errors add up, expected recall sits below the realised
    one. Live traffic like the hold-out must not trigger although its estimated recall is below
    the hold-out's realised recall by more than the tolerance; a real drop still does."""
    on = _settings(estimation__trigger="true", performance__recall_tolerance="0.1")
    truth = _calibrated(20_000, 5)
    ref = _reference(truth)  # labels drawn from the true probabilities ...
    ref.holdout["score"] = _overstated_low(truth)  # ... the model's scores overstate the low ones
    realised = performance.scores(ref.holdout["label"], ref.holdout["score"], 0.5)
    inputs = pd.DataFrame({"amount": [20.0], "channel": ["a"]})
    p = _overstated_low(_calibrated(20_000, 6))  # the same traffic, another draw
    est = estimation.estimate(on, p, inputs, ref, 0.5)
    assert est is not None and est.trusted and est.hours == 24, est
    assert est.holdout["recall"] == pytest.approx(estimation.expected_scores(ref.holdout["score"], 0.5)[2])
    assert realised.recall - est.recall > 0.1 + est.bands["recall"]  # would trigger against it
    assert abs(est.recall - est.holdout["recall"]) < est.bands["recall"]
    assert not decision.decide(on, _window(est), now=T0).triggered
    worse = estimation.estimate(on, np.where(p > 0.5, p * 0.6, p), inputs, ref, 0.5)
    made = decision.decide(on, _window(worse), now=T0)
    assert made.reason == "estimated_performance" and "recall" in made.triggers[0], made.triggers


def test_the_summary_shows_the_estimate_beside_realised_performance(airloop_home):
    from tasks.monitoring import pages

    settings = _settings()
    trusted = estimation.Estimate(2000, 0.5, 40.0, roc_auc=0.912, recall=0.61, trusted=True)
    doubtful = estimation.Estimate(2000, 0.5, 40.0, roc_auc=0.733, recall=0.4, trusted=False, notes=["x"])
    rows = [_window(trusted).row(), {**_window(doubtful).row(), "window_id": "w1"}]
    rows[1]["end"] = rows[0]["end"] + pd.Timedelta(hours=1)
    page = pages.render_summary(settings, pd.DataFrame(rows), pd.DataFrame())
    assert "ROC AUC live / estimated / hold-out" in page and "estimated" in page
    assert "0.912 /" in page and "0.733? /" in page
