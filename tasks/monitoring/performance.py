"""Live performance: the champion's predictions whose delayed labels have arrived, against the
champion's own numbers on its hold-out split, at the same decision threshold, by the same code.

ROC AUC and PR AUC are computed as in ``tasks.training.evaluation`` (scikit-learn); precision and recall are
at ``monitor.performance.threshold`` (default ``serving.threshold``: what serving decides with).
Performance is *judged* only with at least ``min_labels`` labelled predictions of which
``min_positives`` are fraud; a metric is *degraded* when it fell below the hold-out's by more
than its tolerance (``roc_auc_tolerance``, ``recall_tolerance``, ``precision_tolerance``; ``None``
turns a check off).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from tasks.monitoring.results import METRICS, Performance, Scores

if TYPE_CHECKING:
    from config import Settings


def threshold_for(settings: Settings) -> float:
    t = settings.monitor.performance.threshold
    return settings.serving.threshold if t is None else t


def scores(y: Any, p: Any, threshold: float) -> Scores:
    """Metrics of labels ``y`` (0/1) and scores ``p``; rows with a missing label or score are left out."""
    y = np.asarray(y, dtype="float64").reshape(-1)
    p = np.asarray(p, dtype="float64").reshape(-1)
    keep = np.isfinite(y) & np.isfinite(p)
    y, p = y[keep].astype("int64"), p[keep]
    rows, positives = len(y), int(y.sum())
    out = Scores(rows=rows, positives=positives, threshold=float(threshold))
    if 0 < positives < rows:
        out.roc_auc = float(roc_auc_score(y, p))
        out.pr_auc = float(average_precision_score(y, p))
    flagged = p >= threshold
    hits = int((flagged & (y == 1)).sum())
    if flagged.any():
        out.precision = hits / int(flagged.sum())
    if positives:
        out.recall = hits / positives
    return out


def compare(settings: Settings, live: Scores, baseline: Scores, *, start: str, end: str) -> Performance:
    """Judge ``live`` against ``baseline`` with the tolerances of ``monitor.performance``."""
    cfg = settings.monitor.performance
    out = Performance(judged=False, live=live, baseline=baseline, start=start, end=end)
    if live.rows < cfg.min_labels or live.positives < cfg.min_positives:
        out.note = (
            f"{live.rows} labelled predictions ({live.positives} fraud); judging needs "
            f"{cfg.min_labels} ({cfg.min_positives} fraud)"
        )
    else:
        out.judged = True
    tolerances = {
        "roc_auc": cfg.roc_auc_tolerance,
        "recall": cfg.recall_tolerance,
        "precision": cfg.precision_tolerance,
    }
    for metric in METRICS:
        now, before = getattr(live, metric), getattr(baseline, metric)
        if now is None or before is None:
            continue
        drop = before - now
        out.drops[metric] = drop
        tolerance = tolerances[metric]
        if out.judged and tolerance is not None and drop > tolerance:
            out.degraded.append(f"{metric} {now:.3f} < hold-out {before:.3f} - {tolerance:g}")
    return out
