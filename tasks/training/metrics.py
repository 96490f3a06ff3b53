"""The hold-out metrics of one model: what the gate judges and what the training result carries.

A plain record with no numpy, so that the result read back from XCom (``tasks.training.result``)
can be imported wherever the result travels; ``tasks.training.evaluation`` computes it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _number(value: Any) -> float:
    """JSON has no NaN (``json_safe`` wrote None): read it back as NaN."""
    return math.nan if value is None else float(value)


@dataclass
class Metrics:
    rows: int
    positives: int
    roc_auc: float
    pr_auc: float
    log_loss: float
    ece: float
    brier: float
    latency_ms_per_row: float | None
    segment: str
    segments: dict[str, dict[str, float]]
    tpr_gap: float
    """Largest minus smallest TPR over segments with at least ``fairness.min_positives`` frauds."""
    compared_segments: list[str] = field(default_factory=list)
    recall: float = math.nan
    """Recall of the whole hold-out at ``threshold`` (the serving threshold)."""
    threshold: float = 0.5
    segment_quality: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Column -> value -> rows, positives, share, ROC AUC, PR AUC, recall (``training.segments``)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        """The metrics back from ``as_dict()`` after a JSON round trip (None read back as NaN)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for name in ("roc_auc", "pr_auc", "log_loss", "ece", "brier", "tpr_gap", "recall"):
            values[name] = _number(values.get(name))
        values["threshold"] = float(values.get("threshold", 0.5))
        latency = values.get("latency_ms_per_row")
        values["latency_ms_per_row"] = None if latency is None else float(latency)
        values["segments"] = {
            str(seg): {"rows": int(v["rows"]), "positives": int(v["positives"]), "tpr": _number(v["tpr"])}
            for seg, v in (values.get("segments") or {}).items()
        }
        values["compared_segments"] = list(values.get("compared_segments") or [])
        values["segment_quality"] = {
            str(column): {str(v): {k: _number(x) for k, x in q.items()} for v, q in groups.items()}
            for column, groups in (values.get("segment_quality") or {}).items()
        }
        return cls(**values)

    def scalars(self, prefix: str = "holdout_") -> dict[str, float]:
        """The numeric metrics, for ``mlflow.log_metrics``."""
        keys = ("rows", "positives", "roc_auc", "pr_auc", "log_loss", "ece", "brier", "tpr_gap", "recall")
        out = {f"{prefix}{k}": float(getattr(self, k)) for k in keys}
        if self.latency_ms_per_row is not None:
            out[f"{prefix}latency_ms_per_row"] = self.latency_ms_per_row
        for seg, values in self.segments.items():
            if not math.isnan(values["tpr"]):
                out[f"{prefix}tpr_{self.segment}_{seg}"] = values["tpr"]
        return out
