"""Performance estimated before the labels arrive: confidence-based performance estimation (CBPE).

NannyML's CBPE reads a calibrated classifier's score ``p`` as the probability that the row is
fraud. Then, with no label at all, every cell of the confusion matrix at the decision threshold
``t`` has an expected value: ``E[TP] = sum(p | p >= t)``, ``E[FP] = sum(1 - p | p >= t)``,
``E[FN] = sum(p | p < t)``; expected precision and recall are their ratios. ROC AUC is the area
under the expected ROC curve: rows ranked by score, each adds ``p`` to the expected true
positives and ``1 - p`` to the expected false ones (ties as one step). ``nannyml`` itself is
not a dependency: it pins xgboost below the 3.x the project trains with.

The band is the sampling error of the metric on a window of this size, at ``confidence``:
Hanley and McNeil's standard error for ROC AUC with the expected counts of fraud and legit rows,
the binomial one for precision (over the expected flagged rows) and recall (over the expected
fraud rows). It says how far the realised metric of a window this small may fall from its
expectation, so a realised number outside the band means the estimate is wrong.

The estimate spans the champion's live scores of ``monitor.estimation.lookback_hours`` (one
hour's few expected fraud rows make its recall swing from 0 to 0.9 on stable traffic), and the
early trigger compares it with **the same estimator on the champion's hold-out scores**
(``Estimate.holdout``), not with the hold-out's realised metrics. Expected recall sums every
unflagged row's chance of fraud, so calibration errors far too small for the ECE bound add up over
thousands of low scores (3 of the simulator's stable days at the backtest file's scale: expected
recall over a day 0.64, from 0.61 to 0.67, against a realised 0.70; ROC AUC 0.985 against 0.982);
the estimator's bias on this model's scores cancels when like meets like.

The estimate is only as good as the calibration, and it cannot see concept drift (the scores
stay calibrated to the old concept). It is marked *not trusted* when

- the champion's hold-out calibration error (ECE, ``gate.ece_bins`` bins) is above
  ``monitor.estimation.max_holdout_ece``: the scores are not probabilities;
- more than ``max_out_of_support`` of the window's rows lie outside the reference's support (a
  number outside the training range, a category never seen): calibration was never checked there.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tasks.monitoring.results import LABEL, METRICS, SCORE
from tasks.training.evaluation import expected_calibration_error

if TYPE_CHECKING:
    from config import Settings
    from tasks.monitoring.reference import Reference


@dataclass
class Estimate:
    """Expected metrics of the champion's recent scores, their bands (half widths), the same of
    its hold-out, and whether to trust them."""

    rows: int
    threshold: float
    expected_positives: float
    hours: float | None = None
    """The span of live scores estimated (``monitor.estimation.lookback_hours``)."""
    roc_auc: float | None = None
    precision: float | None = None
    recall: float | None = None
    bands: dict[str, float] = field(default_factory=dict)
    """Metric -> half width of its band at ``confidence``."""
    confidence: float = 0.95
    holdout: dict[str, float | None] = field(default_factory=dict)
    """Metric -> the same estimate of the champion's hold-out scores: the early trigger's yardstick."""
    holdout_ece: float | None = None
    out_of_support: float | None = None
    trusted: bool = False
    notes: list[str] = field(default_factory=list)

    def within(self, metric: str, value: float | None) -> bool | None:
        """Whether a realised ``value`` lies in the estimate's band (None: nothing to compare)."""
        est, half = getattr(self, metric), self.bands.get(metric)
        if est is None or half is None or value is None or not math.isfinite(value):
            return None
        return bool(abs(value - float(est)) <= half)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Estimate:
        return cls(**data)


def expected_roc_auc(p: np.ndarray) -> float | None:
    """Area under the expected ROC curve of calibrated scores ``p`` (ties as one step)."""
    p = np.sort(np.asarray(p, dtype="float64"))[::-1]
    pos, neg = p.sum(), (1.0 - p).sum()
    if pos <= 0 or neg <= 0:
        return None
    _, starts = np.unique(-p, return_index=True)  # groups of tied scores, highest first
    tp = np.add.reduceat(p, starts)
    fp = np.add.reduceat(1.0 - p, starts)
    cum_tp_before = np.concatenate([[0.0], np.cumsum(tp)[:-1]])
    # each group's false positives rank below the true positives before it, and tie with its own
    area = float(np.sum(fp * (cum_tp_before + tp / 2.0)))
    return area / float(pos * neg)


def expected_scores(
    p: np.ndarray, threshold: float
) -> tuple[float | None, float | None, float | None, float]:
    """Expected ROC AUC, precision and recall at ``threshold``, and the expected fraud rows."""
    p = np.asarray(p, dtype="float64")
    flagged = p >= threshold
    tp, fp, fn = float(p[flagged].sum()), float((1 - p[flagged]).sum()), float(p[~flagged].sum())
    precision = tp / (tp + fp) if flagged.any() else None
    recall = tp / (tp + fn) if tp + fn > 0 else None
    return expected_roc_auc(p), precision, recall, tp + fn


def hanley_mcneil_se(auc: float, positives: float, negatives: float) -> float:
    """Standard error of a ROC AUC measured on ``positives`` and ``negatives`` rows."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (
        positives * negatives
    )
    return math.sqrt(max(var, 0.0))


def _bands(est: Estimate, p: np.ndarray, z: float) -> dict[str, float]:
    pos, neg = est.expected_positives, float((1 - p).sum())
    flagged = float((p >= est.threshold).sum())
    out: dict[str, float] = {}
    if est.roc_auc is not None and pos >= 1 and neg >= 1:
        out["roc_auc"] = z * hanley_mcneil_se(est.roc_auc, pos, neg)
    if est.precision is not None and flagged >= 1:
        out["precision"] = z * math.sqrt(est.precision * (1 - est.precision) / flagged)
    if est.recall is not None and pos >= 1:
        out["recall"] = z * math.sqrt(est.recall * (1 - est.recall) / pos)
    return out


_SUPPORT: dict[int, dict[str, Any]] = {}
"""The reference's support per reference frame (by id, dropped with the frame): range per number,
set per category; keys starting with ``_`` hold what is computed once per reference (the hold-out's
ECE and estimate)."""


def _support(reference: Reference) -> dict[str, Any]:
    ref = reference.frame
    if id(ref) not in _SUPPORT:
        out: dict[str, Any] = {}
        for col in reference.numeric:
            if col in ref and ref[col].notna().any():
                out[col] = (float(ref[col].min()), float(ref[col].max()))
        for col in reference.categorical:
            if col in ref:
                out[col] = set(ref[col].dropna().astype(str))
        _SUPPORT[id(ref)] = out
        weakref.finalize(ref, _SUPPORT.pop, id(ref), None)
    return _SUPPORT[id(ref)]


def out_of_support(sample: pd.DataFrame, reference: Reference) -> float | None:
    """Share of the window's rows with a number outside the reference's range or a category the
    reference never saw (None: an empty window)."""
    if sample.empty:
        return None
    outside = np.zeros(len(sample), dtype=bool)
    for col, support in _support(reference).items():
        if col.startswith("_") or col not in sample:  # "_" keys: cached numbers, not columns
            continue
        if isinstance(support, tuple):
            x = pd.to_numeric(sample[col], errors="coerce").to_numpy("float64")
            outside |= np.isfinite(x) & ((x < support[0]) | (x > support[1]))
        else:
            values = sample[col]
            outside |= (values.notna() & ~values.astype(str).isin(support)).to_numpy()
    return float(outside.mean())


def holdout_estimate(reference: Reference, threshold: float) -> dict[str, float | None]:
    """The estimated metrics of the champion's hold-out scores at ``threshold`` (once per reference)."""
    cache = _support(reference)
    key = f"_estimate_{threshold!r}"
    if key not in cache:
        h = reference.holdout
        p = np.clip(h[SCORE].to_numpy("float64"), 0.0, 1.0) if len(h) else np.zeros(0)
        auc, precision, recall, _ = expected_scores(p, threshold)
        cache[key] = {"roc_auc": auc, "precision": precision, "recall": recall}
    return dict(cache[key])


def holdout_ece(settings: Settings, reference: Reference) -> float | None:
    """The champion's calibration error on its own hold-out (computed once per reference)."""
    h = reference.holdout
    if h.empty:
        return None
    cache = _support(reference)
    key = f"_ece_{settings.gate.ece_bins}"
    if key not in cache:
        y = h[LABEL].to_numpy("int64")
        cache[key] = float(
            expected_calibration_error(y, h[SCORE].to_numpy("float64"), settings.gate.ece_bins)
        )
    return float(cache[key])


def estimate(
    settings: Settings, scores: np.ndarray, sample: pd.DataFrame, reference: Reference, threshold: float
) -> Estimate | None:
    """CBPE of the reference model's live ``scores`` (the estimation lookback's); trust judged
    on the window's ``sample`` of inputs. None when turned off or too few rows were scored."""
    cfg = settings.monitor.estimation
    p = np.asarray(scores, dtype="float64")
    p = np.clip(p[np.isfinite(p)], 0.0, 1.0)
    if not cfg.enabled or len(p) < cfg.min_rows:
        return None
    auc, precision, recall, positives = expected_scores(p, threshold)
    est = Estimate(
        len(p),
        threshold,
        positives,
        cfg.lookback_hours,
        auc,
        precision,
        recall,
        confidence=cfg.confidence,
        holdout=holdout_estimate(reference, threshold),
    )
    est.bands = _bands(est, p, NormalDist().inv_cdf(0.5 + cfg.confidence / 2))
    est.holdout_ece, est.out_of_support = holdout_ece(settings, reference), out_of_support(sample, reference)
    if est.holdout_ece is not None and est.holdout_ece > cfg.max_holdout_ece:
        est.notes.append(
            f"hold-out ECE {est.holdout_ece:.3f} > {cfg.max_holdout_ece:g}: scores not calibrated"
        )
    if est.out_of_support is not None and est.out_of_support > cfg.max_out_of_support:
        est.notes.append(
            f"{est.out_of_support:.1%} of rows outside the reference's support "
            f"(> {cfg.max_out_of_support:.0%})"
        )
    est.trusted = not est.notes
    return est


def degraded(settings: Settings, est: Estimate | None) -> list[str]:
    """The metrics a trusted estimate puts below the hold-out's estimate by more than the
    performance tolerances (``monitor.performance``) even at the top of its band: the early
    trigger's lines."""
    if est is None or not est.trusted:
        return []
    cfg = settings.monitor.performance
    tolerances = {
        "roc_auc": cfg.roc_auc_tolerance,
        "recall": cfg.recall_tolerance,
        "precision": cfg.precision_tolerance,
    }
    lines = []
    for metric in METRICS:
        now, before, tolerance = getattr(est, metric), est.holdout.get(metric), tolerances[metric]
        if now is None or before is None or tolerance is None:
            continue
        band = est.bands.get(metric, 0.0)
        if before - (now + band) > tolerance:
            lines.append(
                f"estimated {metric} {now:.3f} (+{band:.3f}) < hold-out's estimated "
                f"{before:.3f} - {tolerance:g}"
            )
    return lines
