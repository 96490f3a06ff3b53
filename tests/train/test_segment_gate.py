"""Quality per segment in the gate, on numbers whose answers are known (no server, no training):
each segment clears its own floors, stays near the overall and the champion's figure, is judged
with its sampling noise in mind, and a segment too small to judge is reported, failing the gate
only when it carries a material share of the hold-out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from config import read_config
from tasks.training import gate, segment_gate
from tasks.training.metrics import Metrics
from tasks.training.segments import segment_quality


@pytest.fixture
def gate_cfg(tmp_path):
    return read_config("local", {"AIRLOOP_HOME": str(tmp_path)}).gate


def _q(*, rows=1000, positives=30, share=0.25, roc_auc=0.95, pr_auc=0.7, recall=0.5):
    return {
        "rows": rows,
        "positives": positives,
        "share": share,
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "recall": recall,
    }


def _metrics(quality, roc_auc=0.95, recall=0.5):
    return Metrics(
        rows=4000,
        positives=120,
        roc_auc=roc_auc,
        pr_auc=0.7,
        log_loss=0.05,
        ece=0.01,
        brier=0.01,
        latency_ms_per_row=0.01,
        segment="region",
        segments={},
        tpr_gap=0.0,
        recall=recall,
        threshold=0.5,
        segment_quality=quality,
    )


def _regions(**north):
    quality = {r: _q() for r in ("east", "south", "west")} | {"north": _q(**north)}
    return {
        "region": quality,
        "channel": {"online": _q(share=1.0)},
        "merchant_category": {"x": _q(share=1.0)},
    }


def _failed(decision):
    return [c.name for c in decision.checks if c.passed is False]


def test_a_region_no_better_than_chance_fails_naming_the_segment(gate_cfg):
    # the case: 0.49 in one region, 0.95 elsewhere, overall still above the 0.85 floor
    decision = gate.decide("c", _metrics(_regions(roc_auc=0.49, pr_auc=0.03), roc_auc=0.89), None, gate_cfg)
    assert not decision.passed
    assert "segment_roc_auc[region=north]" in decision.failed
    assert "segment_roc_auc_vs_overall[region=north]" in decision.failed
    assert all("region=north" in name for name in decision.failed)
    line = next(r for r in decision.reasons if r.startswith("FAIL  segment_roc_auc[region=north]"))
    assert "0.4900 >= 0.7500" in line and "30 fraud rows of 1000" in line


def test_every_segment_passing_gives_one_summary_check_per_column(gate_cfg):
    decision = gate.decide("c", _metrics(_regions()), None, gate_cfg)
    summaries = [c for c in decision.checks if c.name.startswith("segments[")]
    assert [c.name for c in summaries] == [
        "segments[region]",
        "segments[channel]",
        "segments[merchant_category]",
    ]
    assert all(c.passed for c in summaries)
    assert "4 segments judged (lowest ROC AUC 0.9500)" in summaries[0].detail


@pytest.mark.parametrize(
    ("north", "overall_recall", "failed"),
    [
        ({"pr_auc": 0.01}, 0.5, "segment_pr_auc[region=north]"),
        ({"recall": 0.0, "positives": 60}, 0.25, "segment_recall[region=north]"),
        ({"recall": 0.15, "positives": 300}, 0.6, "segment_recall_vs_overall[region=north]"),
        ({"roc_auc": 0.80, "positives": 200}, 0.5, "segment_roc_auc_vs_overall[region=north]"),
    ],
)
def test_each_floor_and_tolerance_fails_alone(gate_cfg, north, overall_recall, failed):
    decision = gate.decide("c", _metrics(_regions(**north), recall=overall_recall), None, gate_cfg)
    assert _failed(decision) == [failed]


def test_a_few_fraud_rows_are_judged_with_their_noise_in_mind(gate_cfg):
    # 0.70 on 8 fraud rows: below the 0.75 floor, but well within the noise of 8 rows
    noisy = gate.decide("c", _metrics(_regions(roc_auc=0.70, positives=8)), None, gate_cfg)
    assert noisy.passed, noisy.reasons
    # the same figure on 400 fraud rows is a real shortfall
    real = gate.decide("c", _metrics(_regions(roc_auc=0.70, positives=400)), None, gate_cfg)
    assert "segment_roc_auc[region=north]" in real.failed
    assert segment_gate.auc_se(0.7, 8, 992) > 5 * segment_gate.auc_se(0.7, 400, 600)
    assert segment_gate.wilson_upper(0.0, 11, 1.645) == pytest.approx(0.197, abs=0.002)


def test_a_too_small_segment_is_reported_and_fails_only_with_a_material_share(gate_cfg):
    small = _regions(positives=2, share=0.2)
    decision = gate.decide("c", _metrics(small), None, gate_cfg)
    assert decision.passed
    region = next(c for c in decision.checks if c.name == "segments[region]")
    assert "too small to judge: north (20%)" in region.detail
    material = _regions(positives=2, share=0.4)
    decision = gate.decide("c", _metrics(material), None, gate_cfg)
    assert decision.failed == ["segment_too_small[region=north]"]
    assert "40% of the hold-out" in decision.reasons[0]


def test_a_segment_worse_than_the_champions_fails_and_a_configured_column_is_judged(gate_cfg):
    champion = _metrics(_regions(roc_auc=0.97, pr_auc=0.8))
    worse = _metrics(_regions(roc_auc=0.88, pr_auc=0.55, positives=300))
    decision = gate.decide("c", worse, champion, gate_cfg)
    assert {"segment_roc_auc_vs_champion[region=north]", "segment_pr_auc_vs_champion[region=north]"} <= set(
        decision.failed
    )
    # a column a user adds in config is judged like the others; one missing from the data fails
    rule = gate_cfg.segments.columns["region"]
    cfg = gate_cfg.model_copy(
        update={"segments": gate_cfg.segments.model_copy(update={"columns": {"card_type": rule}})}
    )
    assert gate.decide("c", _metrics(_regions()), None, cfg).failed == ["segments[card_type]"]
    quality = {"card_type": {"debit": _q(roc_auc=0.5, pr_auc=0.03)}}
    assert "segment_roc_auc[card_type=debit]" in gate.decide("c", _metrics(quality), None, cfg).failed


def test_segment_quality_on_known_inputs():
    y = np.array([1, 0, 0, 1, 0, 0, 1, 0])
    p = np.array([0.9, 0.1, 0.2, 0.8, 0.6, 0.1, 0.3, 0.7])
    frame = pd.DataFrame({"region": list("aaaabbbb"), "channel": [None] * 8})
    quality = segment_quality(y, p, frame, ["region", "channel"], 0.5)
    assert quality["region"]["a"] == {
        "rows": 4,
        "positives": 2,
        "share": 0.5,
        "roc_auc": 1.0,
        "pr_auc": 1.0,
        "recall": 1.0,
    }
    b = quality["region"]["b"]
    assert b["roc_auc"] == pytest.approx(1 / 3) and b["recall"] == 0.0
    assert list(quality["channel"]) == ["(missing)"]
    single = segment_quality(np.zeros(3, dtype=int), np.zeros(3), frame.head(3), ["region"], 0.5)
    assert math.isnan(single["region"]["a"]["roc_auc"]) and math.isnan(single["region"]["a"]["recall"])
    with pytest.raises(KeyError, match="card_type"):
        segment_quality(y, p, frame, ["card_type"], 0.5)


def test_segment_quality_survives_the_json_round_trip():
    from tasks.common.values import json_safe

    metrics = _metrics({"region": {"north": _q(roc_auc=math.nan)}})
    back = Metrics.from_dict(json_safe(metrics.as_dict()))
    assert math.isnan(back.segment_quality["region"]["north"]["roc_auc"])
    assert back.segment_quality["region"]["north"]["positives"] == 30 and back.recall == 0.5
