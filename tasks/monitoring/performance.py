"""Live performance: the champion's predictions whose delayed labels have arrived, against the
champion's own numbers on its hold-out split, at the same decision threshold, by the same code.

ROC AUC and PR AUC are scikit-learn's (``roc_auc_score``, ``average_precision_score``, as
``tasks.training.evaluation`` computes them), by the same arithmetic on the same numbers without
their input validation, which cost most of a call on a window's few thousand rows (the backtest
computes them tens of thousands of times; ``tests/monitoring/test_decision.py`` holds them equal to
scikit-learn's, ties included). Precision and recall are at ``monitor.performance.threshold``
(default ``serving.threshold``: what serving decides with).
Performance is *judged* only with at least ``min_labels`` labelled predictions of which
``min_positives`` are fraud; a metric is *degraded* when it fell below the hold-out's by more
than its tolerance (``roc_auc_tolerance``, ``recall_tolerance``, ``precision_tolerance``; ``None``
turns a check off).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.integrate import trapezoid

from tasks.monitoring.results import METRICS, Performance, Scores

if TYPE_CHECKING:
    from config import Settings


def threshold_for(settings: Settings) -> float:
    t = settings.monitor.performance.threshold
    return settings.serving.threshold if t is None else t


def _curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each distinct score, highest first (scikit-learn's
    ``confusion_matrix_at_thresholds``: counts are whole numbers, so the order of ties is moot)."""
    order = np.argsort(p, kind="stable")[::-1]
    ends = np.r_[np.nonzero(np.diff(p[order]))[0], len(p) - 1]
    tps = np.cumsum(y[order], dtype="float64")[ends]
    return tps, 1 + ends.astype("float64") - tps


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """``sklearn.metrics.roc_auc_score`` of 0/1 labels ``y`` (both present) and finite scores ``p``."""
    return _roc_area(*_curve(y, p))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """``sklearn.metrics.average_precision_score`` of 0/1 labels ``y`` (a positive present) and
    finite scores ``p``."""
    return _step_area(*_curve(y, p))


def _roc_area(tps: np.ndarray, fps: np.ndarray) -> float:
    """The ROC curve's trapezoidal area, as scikit-learn draws it: collinear points dropped, from (0, 0)."""
    if len(fps) > 2:
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        tps, fps = tps[keep], fps[keep]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return float(trapezoid(tps / tps[-1], fps / fps[-1]))


def _step_area(tps: np.ndarray, fps: np.ndarray) -> float:
    """Average precision: the step integral of the precision-recall curve, as scikit-learn's."""
    precision = np.r_[(tps / (tps + fps))[::-1], 1.0]
    recall = np.r_[(tps / tps[-1])[::-1], 0.0]
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def scores(y: Any, p: Any, threshold: float) -> Scores:
    """Metrics of labels ``y`` (0/1) and scores ``p``; rows with a missing label or score are left out."""
    y = np.asarray(y, dtype="float64").reshape(-1)
    p = np.asarray(p, dtype="float64").reshape(-1)
    keep = np.isfinite(y) & np.isfinite(p)
    y, p = y[keep].astype("int64"), p[keep]
    rows, positives = len(y), int(y.sum())
    out = Scores(rows=rows, positives=positives, threshold=float(threshold))
    if 0 < positives < rows:
        curve = _curve(y, p)
        out.roc_auc, out.pr_auc = _roc_area(*curve), _step_area(*curve)
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
