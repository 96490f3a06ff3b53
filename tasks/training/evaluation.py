"""Evaluation: the time split and the hold-out metrics of a model.

Every candidate and the current champion are scored on the same time-based hold-out: the last
``train.holdout_fraction`` of the training set's time range (the validation split, used for early
stopping and calibration, is the last ``train.validation_fraction`` of what remains before it).

Metrics: ROC AUC, PR AUC (average precision), log loss, expected calibration error (equal-width
bins), Brier score, latency per row (batch scoring, median of three), per segment of the
fairness column the true positive rate at its threshold, and the quality of every segment of
``gate.segments`` (``tasks.training.segments``). The gate that judges them is
``tasks.training.gate``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from tasks.training.metrics import Metrics
from tasks.training.segments import SegmentQuality, recall_at, segment_quality, threshold

if TYPE_CHECKING:
    from config import Gate, Settings


class SplitError(ValueError):
    """The training set cannot be split into non-empty train, validation and hold-out parts."""


@dataclass
class Split:
    """Row frames of the three time-ordered parts of a training set."""

    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame
    valid_start: str
    holdout_start: str

    def describe(self, label: str) -> dict[str, Any]:
        parts = {"train": self.train, "valid": self.valid, "holdout": self.holdout}
        out: dict[str, Any] = {f"{n}_rows": len(f) for n, f in parts.items()}
        out |= {f"{n}_positives": int(f[label].sum()) for n, f in parts.items()}
        return out | {"valid_start": self.valid_start, "holdout_start": self.holdout_start}


def time_split(frame: pd.DataFrame, settings: Settings) -> Split:
    """Cut the time range ``[first, last]`` of the events: the last ``holdout_fraction`` is the
    hold-out, the last ``validation_fraction`` of the rest is the validation split."""
    ts_col, label = settings.schema_.timestamp, settings.schema_.label
    t = settings.train
    ts = frame[ts_col]
    first, last = ts.min(), ts.max()
    holdout_start = first + (last - first) * (1 - t.holdout_fraction)
    valid_start = first + (holdout_start - first) * (1 - t.validation_fraction)
    ordered = frame.sort_values([ts_col, settings.schema_.key], kind="stable")
    parts = (
        ordered[ordered[ts_col] < valid_start],
        ordered[(ordered[ts_col] >= valid_start) & (ordered[ts_col] < holdout_start)],
        ordered[ordered[ts_col] >= holdout_start],
    )
    for name, part in zip(("train", "validation", "hold-out"), parts, strict=True):
        if part.empty or part[label].nunique() < 2:
            raise SplitError(
                f"the {name} split ({len(part)} rows from {first} to {last}) needs both classes; "
                f"train on a longer time range or change train.holdout_fraction/validation_fraction"
            )
    train, valid, holdout = (p.reset_index(drop=True) for p in parts)
    return Split(train, valid, holdout, valid_start.isoformat(), holdout_start.isoformat())


# --- metrics --------------------------------------------------------------------------------


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    """Mean |observed rate - mean probability| over equal-width probability bins, by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(float(y[mask].mean()) - float(p[mask].mean()))
    return total / max(len(y), 1)


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int) -> list[tuple[float, float, int]]:
    """Per non-empty bin: (mean probability, observed rate, rows), for the model card."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    return [
        (float(p[which == b].mean()), float(y[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]


def segment_tpr(
    y: np.ndarray, p: np.ndarray, segments: np.ndarray, threshold: float
) -> dict[str, dict[str, float]]:
    """Per segment: rows, fraud rows and the true positive rate at ``threshold``."""
    out: dict[str, dict[str, float]] = {}
    for seg in sorted({str(s) for s in segments}):
        mask = segments.astype(str) == seg
        pos = mask & (y == 1)
        n_pos = int(pos.sum())
        tpr = float((p[pos] >= threshold).mean()) if n_pos else float("nan")
        out[seg] = {"rows": int(mask.sum()), "positives": n_pos, "tpr": tpr}
    return out


def score_metrics(
    y: np.ndarray,
    p: np.ndarray,
    segments: np.ndarray,
    gate: Gate,
    latency_ms_per_row: float | None = None,
    *,
    quality: SegmentQuality | None = None,
    at: float = 0.5,
) -> Metrics:
    y = np.asarray(y, dtype="int64")
    p = np.clip(np.asarray(p, dtype="float64"), 1e-7, 1 - 1e-7)
    both = len(np.unique(y)) == 2
    fair = gate.fairness
    per_segment = segment_tpr(y, p, np.asarray(segments), fair.threshold)
    compared = [s for s, v in per_segment.items() if v["positives"] >= fair.min_positives]
    tprs = [per_segment[s]["tpr"] for s in compared]
    return Metrics(
        rows=len(y),
        positives=int(y.sum()),
        roc_auc=float(roc_auc_score(y, p)) if both else float("nan"),
        pr_auc=float(average_precision_score(y, p)) if both else float("nan"),
        log_loss=float(log_loss(y, p, labels=[0, 1])),
        ece=expected_calibration_error(y, p, gate.ece_bins),
        brier=float(brier_score_loss(y, p)),
        latency_ms_per_row=latency_ms_per_row,
        segment=fair.segment,
        segments=per_segment,
        tpr_gap=float(max(tprs) - min(tprs)) if len(tprs) >= 2 else 0.0,
        compared_segments=compared,
        recall=recall_at(y, p, at),
        threshold=at,
        segment_quality=quality or {},
    )


def latency_ms_per_row(predict: Callable[[pd.DataFrame], Any], frame: pd.DataFrame, rows: int) -> float:
    """Milliseconds per row of batch scoring: median of three timed calls after a warm-up."""
    sample = frame.iloc[: max(1, min(rows, len(frame)))]
    predict(sample.iloc[:10])
    times = []
    for _ in range(3):
        started = time.perf_counter()
        predict(sample)
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times) / len(sample)


def evaluate(
    predict: Callable[[pd.DataFrame], Any], holdout: pd.DataFrame, settings: Settings, *, latency: bool = True
) -> tuple[Metrics, np.ndarray]:
    """Score ``holdout`` (a model-input frame plus the label and segment columns)."""
    label, gate = settings.schema_.label, settings.gate
    p = np.asarray(predict(holdout), dtype="float64").reshape(-1)
    lat = latency_ms_per_row(predict, holdout, settings.train.latency_rows) if latency else None
    y, at = np.asarray(holdout[label].to_numpy(), dtype="int64"), threshold(settings)
    quality = segment_quality(y, p, holdout, list(gate.segments.columns), at)
    metrics = score_metrics(
        y, p, holdout[gate.fairness.segment].to_numpy(), gate, lat, quality=quality, at=at
    )
    return metrics, p
