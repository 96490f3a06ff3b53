"""DeLong's paired comparison of two ROC AUCs on the same hold-out, and how the gate uses it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from config import read_config
from tasks.training.gate import champion_checks
from tasks.training.paired import paired_auc


def _scores(rng: np.random.Generator, y: np.ndarray, signal: float) -> np.ndarray:
    return signal * y + rng.normal(size=len(y))


def test_the_difference_is_the_difference_of_the_aucs_and_its_se_matches_a_bootstrap():
    rng = np.random.default_rng(7)
    y = (rng.random(3000) < 0.05).astype(int)
    a, b = _scores(rng, y, 2.0), _scores(rng, y, 1.6)
    got = paired_auc(y, a, b)
    assert got is not None
    assert got.difference == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b), abs=1e-12)
    diffs = []
    for _ in range(400):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            diffs.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    assert got.se == pytest.approx(float(np.std(diffs)), rel=0.2)


def test_a_model_against_itself_has_no_difference_and_no_noise():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.1).astype(int)
    a = _scores(rng, y, 1.0)
    got = paired_auc(y, a, a)
    assert got is not None and got.difference == 0.0 and got.se == pytest.approx(0.0, abs=1e-12)
    assert paired_auc(np.array([1, 0, 0]), a[:3], a[:3]) is None  # one positive: nothing to judge


def test_the_gate_fails_only_a_regression_the_hold_out_can_tell(monkeypatch, tmp_path):
    """A small hold-out (16 fraud rows): a 0.03 drop is noise (SE 0.055) and passes; a large drop on a
    large hold-out fails; without a confidence the fixed tolerance alone decides."""
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    cfg = read_config("local").gate
    rng = np.random.default_rng(3)
    small = (rng.random(700) < 0.02).astype(int)
    champ, cand = _scores(rng, small, 3.0), _scores(rng, small, 2.2)
    paired = paired_auc(small, cand, champ)
    assert paired is not None and paired.difference < -cfg.roc_auc_tolerance
    theirs = _fake(roc_auc_score(small, champ))
    ours = _fake(roc_auc_score(small, cand))
    noisy = champion_checks(ours, theirs, cfg, paired=paired)[0]
    assert noisy.name == "roc_auc_vs_champion" and noisy.passed, noisy
    assert "DeLong" in noisy.detail
    fixed = champion_checks(
        ours, theirs, cfg.model_copy(update={"champion_confidence": None}), paired=paired
    )[0]
    assert not fixed.passed

    large = (rng.random(40000) < 0.05).astype(int)
    champ, cand = _scores(rng, large, 2.5), _scores(rng, large, 1.5)
    paired = paired_auc(large, cand, champ)
    assert paired is not None
    worse = champion_checks(
        _fake(roc_auc_score(large, cand)), _fake(roc_auc_score(large, champ)), cfg, paired=paired
    )
    assert not worse[0].passed, worse[0]


class _fake:
    def __init__(self, roc_auc: float, pr_auc: float = 0.5) -> None:
        self.roc_auc, self.pr_auc = roc_auc, pr_auc
