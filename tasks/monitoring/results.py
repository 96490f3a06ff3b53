"""The monitor's shared types: a window, its drift and performance, and its whole result.

Every other module of ``tasks.monitoring`` imports these and this imports none of them, so the
package's imports form a tree. ``WindowResult`` crosses task boundaries as ``as_dict()`` (XCom)
and comes back with ``from_dict``; ``row()`` is what the store keeps.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from tasks.common.clock import utc_timestamp
from tasks.common.values import json_safe

if TYPE_CHECKING:
    import pandas as pd

SCORE = "score"
"""The champion's fraud probability, in the inference log and in the reference."""
LABEL = "label"
MODEL_VERSION = "model_version"
ROUTE = "route"
NUMERIC, CATEGORICAL, PREDICTION = "numeric", "categorical", "prediction"
"""Kinds of drift test: an input column's (by type) or the score's."""
METRICS = ("roc_auc", "recall", "precision")
"""Metrics held to a tolerance against the hold-out."""
SCORE_METRICS = ("roc_auc", "pr_auc", "precision", "recall")
"""Metrics stored per window, live and hold-out."""
SUMMARY = "index"
"""The summary page's name among the monitor's reports (``index.html``)."""


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in UTC; its id names its report and its rows in the store."""

    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def of(cls, start: Any, end: Any) -> Window:
        lo, hi = utc_timestamp(start), utc_timestamp(end)
        if not lo < hi:
            raise ValueError(f"a window needs start < end, got [{lo.isoformat()}, {hi.isoformat()})")
        return cls(lo, hi)

    @property
    def id(self) -> str:
        return f"{self.start:%Y%m%dT%H%M%SZ}-{self.end:%Y%m%dT%H%M%SZ}"


@dataclass
class ColumnDrift:
    """One column's drift test: Evidently's score, the threshold it was held to, the verdict."""

    column: str
    kind: str
    """``numeric``, ``categorical`` or ``prediction`` (the score)."""
    method: str
    threshold: float | None
    score: float | None = None
    drifted: bool = False
    note: str = ""
    """Why the column was not tested (no values on one side), else empty."""

    @property
    def judged(self) -> bool:
        return self.score is not None


@dataclass
class DriftResult:
    """Drift of one window against the reference: every column's test, the share, the score's."""

    judged: bool
    rows: int
    """Live predictions in the window (all of them, before sampling)."""
    reference_rows: int
    """Rows of the champion's training set (before sampling)."""
    sample_rows: int
    reference_sample_rows: int
    error_bound: float
    """Bound on the sampling error of any CDF-based distance (see ``tasks.monitoring.drift``)."""
    error_confidence: float
    columns: list[ColumnDrift] = field(default_factory=list)
    prediction: ColumnDrift | None = None
    share_threshold: float = 0.0
    note: str = ""

    @property
    def tested(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.judged]

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def share(self) -> float | None:
        """Share of the tested input columns that drifted (``None`` when none was tested)."""
        tested = self.tested
        return len(self.drifted_columns) / len(tested) if tested else None

    @property
    def data_drift(self) -> bool:
        share = self.share
        return self.judged and share is not None and share >= self.share_threshold

    @property
    def prediction_drift(self) -> bool:
        return self.judged and self.prediction is not None and self.prediction.drifted

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(share=self.share, drifted_columns=self.drifted_columns, data_drift=self.data_drift)
        out["prediction_drift"] = self.prediction_drift
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftResult:
        derived = ("share", "drifted_columns", "data_drift", "prediction_drift")
        d = {k: v for k, v in data.items() if k not in derived}
        d["columns"] = [ColumnDrift(**c) for c in d["columns"]]
        d["prediction"] = ColumnDrift(**d["prediction"]) if d.get("prediction") else None
        return cls(**d)


@dataclass
class Scores:
    """Classification metrics of one set of labelled scores."""

    rows: int
    positives: int
    threshold: float
    roc_auc: float | None = None
    pr_auc: float | None = None
    precision: float | None = None
    """Of the rows scored at or above the threshold, the share that is fraud (``None``: none was)."""
    recall: float | None = None
    """Of the fraud rows, the share scored at or above the threshold (``None``: no fraud)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Performance:
    """Live scores against the hold-out's, and which metrics fell by more than their tolerance."""

    judged: bool
    live: Scores
    baseline: Scores
    start: str
    """Labelled predictions made from here to the window's end count."""
    end: str
    drops: dict[str, float] = field(default_factory=dict)
    """Hold-out minus live, per metric both have."""
    degraded: list[str] = field(default_factory=list)
    """One line per metric over its tolerance (empty when not judged)."""
    note: str = ""

    @property
    def is_degraded(self) -> bool:
        return bool(self.degraded)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"is_degraded": self.is_degraded}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Performance:
        p = {k: v for k, v in data.items() if k != "is_degraded"}
        p["live"], p["baseline"] = Scores(**p["live"]), Scores(**p["baseline"])
        return cls(**p)


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


@dataclass
class WindowResult:
    """Every number of one window; ``row()`` is what the store keeps, ``as_dict()`` what XCom gets."""

    window_id: str
    start: str
    end: str
    model_name: str
    model_version: str
    data_sha256: str
    rows: int
    scored_rows: int
    versions: dict[str, int]
    drift: DriftResult
    performance: Performance
    computed_at: str
    seconds: float = 0.0
    report_uri: str | None = None
    summary_uri: str | None = None
    notes: list[str] = field(default_factory=list)
    estimate: dict[str, Any] | None = None
    """Performance estimated from the scores before labels arrive
    (``tasks.monitoring.estimation.Estimate.as_dict()``); None: not estimated."""

    @property
    def window(self) -> Window:
        return Window.of(self.start, self.end)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["drift"], out["performance"] = self.drift.as_dict(), self.performance.as_dict()
        safe: dict[str, Any] = json_safe(out)
        return safe

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowResult:
        """The result back from ``as_dict()`` (e.g. from XCom, for the decide task)."""
        plain = {k: v for k, v in data.items() if k not in ("drift", "performance")}
        return cls(
            **plain,
            drift=DriftResult.from_dict(data["drift"]),
            performance=Performance.from_dict(data["performance"]),
        )

    def numbers(self) -> dict[str, Any]:
        """The headline numbers a decision records (and a train run's conf carries)."""
        d, p = self.drift, self.performance
        return {
            "rows": self.rows,
            "drift_share": d.share,
            "share_threshold": d.share_threshold,
            "drifted_columns": d.drifted_columns,
            "columns_tested": len(d.tested),
            "prediction_method": d.prediction.method if d.prediction else None,
            "prediction_score": d.prediction.score if d.prediction else None,
            "prediction_threshold": d.prediction.threshold if d.prediction else None,
            "labelled_rows": p.live.rows,
            "labelled_positives": p.live.positives,
            "roc_auc": p.live.roc_auc,
            "recall": p.live.recall,
            "precision": p.live.precision,
            "holdout_roc_auc": p.baseline.roc_auc,
            "holdout_recall": p.baseline.recall,
            "holdout_precision": p.baseline.precision,
            "threshold": p.live.threshold,
            "error_bound": d.error_bound,
        }

    def row(self) -> dict[str, Any]:
        """One flat metrics row: scalars, with lists and per-column scores as JSON text."""
        return {
            "window_id": self.window_id,
            "start": utc_timestamp(self.start),
            "end": utc_timestamp(self.end),
            "computed_at": utc_timestamp(self.computed_at),
            "model_name": self.model_name,
            "model_version": self.model_version,
            "data_sha256": self.data_sha256,
            "rows": self.rows,
            "scored_rows": self.scored_rows,
            **_drift_row(self.drift),
            **_performance_row(self.performance),
            **_estimate_row(self.estimate),
            "report_uri": self.report_uri or "",
            "seconds": self.seconds,
            "notes": json.dumps(self.notes),
        }


def _drift_row(d: DriftResult) -> dict[str, Any]:
    pred = d.prediction
    return {
        "sample_rows": d.sample_rows,
        "reference_rows": d.reference_rows,
        "reference_sample_rows": d.reference_sample_rows,
        "error_bound": d.error_bound,
        "drift_judged": d.judged,
        "columns_tested": len(d.tested),
        "columns_drifted": len(d.drifted_columns),
        "drift_share": _num(d.share),
        "share_threshold": d.share_threshold,
        "data_drift": d.data_drift,
        "drifted_columns": json.dumps(d.drifted_columns),
        "column_scores": json.dumps({c.column: c.score for c in d.columns if c.judged}),
        "prediction_method": pred.method if pred else "",
        "prediction_score": _num(pred.score if pred else None),
        "prediction_threshold": _num(pred.threshold if pred else None),
        "prediction_drift": d.prediction_drift,
    }


def _estimate_row(e: dict[str, Any] | None) -> dict[str, Any]:
    e = e or {}
    return {
        **{f"estimated_{m}": _num(e.get(m)) for m in METRICS},
        "estimate_trusted": bool(e.get("trusted", False)),
    }


def _performance_row(p: Performance) -> dict[str, Any]:
    return {
        "performance_judged": p.judged,
        "labelled_rows": p.live.rows,
        "labelled_positives": p.live.positives,
        "threshold": p.live.threshold,
        **{m: _num(getattr(p.live, m)) for m in SCORE_METRICS},
        **{f"baseline_{m}": _num(getattr(p.baseline, m)) for m in SCORE_METRICS},
        **{f"{m}_drop": _num(p.drops.get(m)) for m in METRICS},
        "degraded": p.is_degraded,
        "degraded_reasons": json.dumps(p.degraded),
    }
