"""Two models' ROC AUC on the same hold-out, compared with DeLong's paired test.

The gate's "no regression against the champion" check compares two AUCs measured on the same
rows. On a small hold-out (a dozen fraud rows) their difference has a standard error of a few
hundredths, so a fixed tolerance of 0.01 rejects good challengers on noise. DeLong, DeLong and
Clarke-Pearson (1988) give the variance of the paired difference from the models' placement
values (the fast midrank form of Sun and Xu, 2014); the gate then fails a candidate only when it
is worse than the champion beyond the tolerance with the configured confidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


@dataclass(frozen=True)
class PairedAUC:
    """``candidate - champion`` ROC AUC on the same rows, and its standard error."""

    difference: float
    se: float


def _placements(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: per positive, the share of negatives it outranks; per
    negative, the share of positives that outrank it (ties count a half)."""
    pos, neg = scores[positive], scores[~positive]
    m, n = len(pos), len(neg)
    combined = rankdata(np.concatenate([pos, neg]))
    v10 = (combined[:m] - rankdata(pos)) / n
    v01 = 1.0 - (combined[m:] - rankdata(neg)) / m
    return v10, v01


def paired_auc(labels: np.ndarray, candidate: np.ndarray, champion: np.ndarray) -> PairedAUC | None:
    """The paired comparison, or None when the hold-out has fewer than two rows of a class."""
    positive = np.asarray(labels) > 0
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        return None
    c10, c01 = _placements(np.asarray(candidate, dtype=float), positive)
    h10, h01 = _placements(np.asarray(champion, dtype=float), positive)
    difference = float(c10.mean() - h10.mean())
    s10, s01 = np.cov(np.vstack([c10, h10])), np.cov(np.vstack([c01, h01]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return PairedAUC(difference, math.sqrt(max(float(var), 0.0)))
