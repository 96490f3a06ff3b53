"""Quality per segment on the hold-out: each value of each configured segment column.

For every column of ``gate.segments.columns`` (region, channel, merchant category, any a user
adds) and every value it takes in the hold-out: rows, fraud rows, share of the hold-out's rows,
ROC AUC, PR AUC and recall at the serving threshold. A segment with a single class has no AUC
(NaN); whether it is large enough to judge is the gate's call (``tasks.training.segment_gate``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

if TYPE_CHECKING:
    from config import Settings

MISSING = "(missing)"

SegmentQuality = dict[str, dict[str, dict[str, float]]]
"""column -> value -> {rows, positives, share, roc_auc, pr_auc, recall}."""


def threshold(settings: Settings) -> float:
    """Where recall is measured: ``gate.segments.threshold``, else the serving threshold."""
    chosen = settings.gate.segments.threshold
    return float(settings.serving.threshold if chosen is None else chosen)


def recall_at(y: np.ndarray, p: np.ndarray, at: float) -> float:
    positives = y == 1
    return float((p[positives] >= at).mean()) if positives.any() else math.nan


def one_segment(y: np.ndarray, p: np.ndarray, total: int, at: float) -> dict[str, float]:
    positives = int(y.sum())
    both = 0 < positives < len(y)
    return {
        "rows": len(y),
        "positives": positives,
        "share": len(y) / total if total else math.nan,
        "roc_auc": float(roc_auc_score(y, p)) if both else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both else math.nan,
        "recall": recall_at(y, p, at),
    }


def segment_quality(
    y: np.ndarray, p: np.ndarray, frame: pd.DataFrame, columns: list[str], at: float
) -> SegmentQuality:
    """Quality of every value of every column (``frame`` is the hold-out, aligned with ``y``/``p``)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"gate.segments.columns {missing} are not columns of the training set")
    out: SegmentQuality = {}
    for column in columns:
        values = frame[column].astype(object).where(frame[column].notna(), MISSING).astype(str).to_numpy()
        out[column] = {
            value: one_segment(y[values == value], p[values == value], len(y), at)
            for value in sorted(set(values))
        }
    return out
