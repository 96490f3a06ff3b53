"""The evaluation and gate logic on numbers whose answers are known (no server, no training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from config import read_config
from tasks.training import evaluation, gate
from tasks.training.metrics import Metrics


@pytest.fixture
def gate_cfg(tmp_path):
    return read_config("local", {"AIRLOOP_HOME": str(tmp_path)}).gate


GOOD_SEGMENT = {"rows": 500, "positives": 20, "share": 0.5, "roc_auc": 0.95, "pr_auc": 0.7, "recall": 0.5}


def _metrics(gate_cfg, **values):
    base = {"roc_auc": 0.95, "pr_auc": 0.7, "log_loss": 0.05, "ece": 0.01, "positives": 100}
    base |= values
    segments = {
        "east": {"rows": 100, "positives": 20, "tpr": 0.6},
        "west": {"rows": 100, "positives": 20, "tpr": 0.5},
    }
    quality = {c: {"a": dict(GOOD_SEGMENT), "b": dict(GOOD_SEGMENT)} for c in gate_cfg.segments.columns}
    return Metrics(
        rows=1000,
        positives=base["positives"],
        roc_auc=base["roc_auc"],
        pr_auc=base["pr_auc"],
        log_loss=base["log_loss"],
        ece=base["ece"],
        brier=0.01,
        latency_ms_per_row=base.get("latency", 0.01),
        segment="region",
        segments=segments,
        tpr_gap=base.get("tpr_gap", 0.1),
        compared_segments=["east", "west"],
        recall=0.5,
        segment_quality=quality,
    )


def test_a_good_candidate_passes_with_champion_checks_skipped_when_there_is_none(gate_cfg):
    decision = gate.decide("c", _metrics(gate_cfg), None, gate_cfg)
    assert decision.passed and decision.failed == []
    skipped = {c.name for c in decision.checks if c.passed is None}
    assert skipped == {"roc_auc_vs_champion", "pr_auc_vs_champion"}
    assert {c.name for c in decision.checks} == {
        "holdout_positives",
        "roc_auc",
        "pr_auc",
        "log_loss",
        "ece",
        "latency_ms_per_row",
        "roc_auc_vs_champion",
        "pr_auc_vs_champion",
        "fairness_tpr_gap",
        "segments[region]",
        "segments[channel]",
        "segments[merchant_category]",
    }


@pytest.mark.parametrize(
    ("values", "failed"),
    [
        ({"roc_auc": 0.5}, ["roc_auc"]),
        ({"pr_auc": 0.02}, ["pr_auc"]),
        ({"log_loss": 0.5}, ["log_loss"]),
        ({"ece": 0.2}, ["ece"]),
        ({"latency": 50.0}, ["latency_ms_per_row"]),
        ({"positives": 3}, ["holdout_positives"]),
        ({"tpr_gap": 0.9}, ["fairness_tpr_gap"]),
        ({"roc_auc": float("nan")}, ["roc_auc"]),
    ],
)
def test_each_absolute_check_fails_alone_and_is_named(gate_cfg, values, failed):
    decision = gate.decide("c", _metrics(gate_cfg, **values), None, gate_cfg)
    assert not decision.passed
    assert decision.failed == failed
    assert decision.reasons[0].startswith(f"FAIL  {failed[0]}")


def test_regression_against_the_champion_beyond_tolerance_fails(gate_cfg):
    champion = _metrics(gate_cfg, roc_auc=0.97, pr_auc=0.75)
    within = gate.decide("c", _metrics(gate_cfg, roc_auc=0.965, pr_auc=0.73), champion, gate_cfg)
    assert within.passed
    beyond = gate.decide("c", _metrics(gate_cfg, roc_auc=0.95, pr_auc=0.70), champion, gate_cfg)
    assert beyond.failed == ["roc_auc_vs_champion", "pr_auc_vs_champion"]
    assert "vs champion 0.9700" in beyond.reasons[0]


def test_ece_and_segment_tpr_on_known_inputs():
    y = np.array([0, 0, 1, 1])
    assert evaluation.expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0]), 10) == 0.0
    assert evaluation.expected_calibration_error(y, np.array([0.5, 0.5, 0.5, 0.5]), 10) == pytest.approx(0.0)
    assert evaluation.expected_calibration_error(y, np.array([1.0, 1.0, 0.0, 0.0]), 10) == pytest.approx(1.0)
    segs = evaluation.segment_tpr(
        np.array([1, 1, 1, 1, 0]), np.array([0.9, 0.1, 0.8, 0.7, 0.9]), np.array(list("aabbb")), 0.5
    )
    assert segs["a"] == {"rows": 2, "positives": 2, "tpr": 0.5}
    assert segs["b"] == {"rows": 3, "positives": 2, "tpr": 1.0}


def test_fairness_compares_only_segments_with_enough_fraud(gate_cfg):
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(30), np.zeros(300)].astype(int)
    seg = np.r_[["a"] * 15, ["b"] * 12, ["c"] * 3, rng.choice(list("abc"), 300)]
    p = np.where(y == 1, 0.9, 0.01)
    p[27:30] = 0.0  # segment c misses every fraud, but has 3 < min_positives of them
    cfg = gate_cfg.model_copy(update={"fairness": gate_cfg.fairness.model_copy(update={"min_positives": 10})})
    m = evaluation.score_metrics(y, p, seg, cfg)
    assert m.compared_segments == ["a", "b"]
    assert m.tpr_gap == 0.0 and m.segments["c"]["tpr"] == 0.0


def test_time_split_orders_parts_and_refuses_a_part_without_both_classes(tmp_path):
    settings = read_config("local", {"AIRLOOP_HOME": str(tmp_path)})
    ts = pd.date_range("2026-01-01", periods=1000, freq="min", tz="UTC")
    frame = pd.DataFrame(
        {
            "transaction_id": [f"t{i:04d}" for i in range(1000)],
            "event_timestamp": ts,
            "is_fraud": np.arange(1000) % 7 == 0,
        }
    ).sample(frac=1.0, random_state=1)
    frame["is_fraud"] = frame["is_fraud"].astype(int)
    split = evaluation.time_split(frame, settings)
    assert split.train.event_timestamp.max() < split.valid.event_timestamp.min()
    assert split.valid.event_timestamp.max() < split.holdout.event_timestamp.min()
    assert len(split.train) + len(split.valid) + len(split.holdout) == 1000
    assert len(split.holdout) == pytest.approx(200, abs=2)
    frame.loc[frame.event_timestamp >= ts[790], "is_fraud"] = 0
    with pytest.raises(evaluation.SplitError, match="hold-out"):
        evaluation.time_split(frame, settings)


def test_a_champion_that_cannot_be_compared_leaves_its_checks_skipped_with_the_reason(gate_cfg):
    note = "champion v3 is not comparable: its files hash to abc, the model_sha256 recorded is def"
    decision = gate.decide("c", _metrics(gate_cfg), None, gate_cfg, champion_note=note)
    vs = [c for c in decision.checks if c.name.endswith("_vs_champion")]
    assert [(c.passed, c.detail) for c in vs] == [(None, note), (None, note)]
    assert decision.passed and all(c.line == f"skip  {c.name}: {note}" for c in vs)
