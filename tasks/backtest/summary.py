"""A policy's backtest in a few numbers: retrains, how long drift went unanswered, what it cost.

- ``retrains``: retrain decisions; ``deployed``: those whose model passed the gate and served;
- ``detected_after_hours``: from the scenario's onset to the first window after it that triggered;
- ``restored_after_hours``: from the onset to the first retrained champion serving after it (the
  time from drift onset to the retrained champion);
- ``area_lost_roc_auc`` / ``area_lost_recall``: the area between the quality before the onset
  (the mean over replayed windows before it; the hold-out's when the onset is at the start) and
  the quality curve, where the curve is below it, in metric-hours: a policy that reacts late or
  never loses more;
- ``estimate``: how often the estimated ROC AUC's band held the true one (when trusted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tasks.backtest.replay import PolicyRun


def _hours(a: Any, b: Any) -> float:
    return float((pd.Timestamp(b) - pd.Timestamp(a)) / pd.Timedelta(hours=1))


def _area(values: pd.Series, level: float) -> float:
    v = pd.to_numeric(values, errors="coerce").to_numpy("float64")
    return float(np.nansum(np.clip(level - v, 0.0, None)))


def _level(w: pd.DataFrame, metric: str, before: pd.Series, fallback: float | None) -> float:
    known = pd.to_numeric(w.loc[before, metric], errors="coerce").dropna()
    if len(known):
        return float(known.mean())
    return float(fallback) if fallback is not None else float("nan")


def _estimate(w: pd.DataFrame) -> dict[str, Any]:
    est = pd.to_numeric(w["estimated_roc_auc"], errors="coerce")
    band = pd.to_numeric(w["estimate_band_roc_auc"], errors="coerce")
    true = pd.to_numeric(w["roc_auc"], errors="coerce")
    ok = est.notna() & band.notna() & true.notna() & w["estimate_trusted"].astype(bool)
    inside = ((true - est).abs() <= band)[ok]
    return {
        "windows_estimated": int(est.notna().sum()),
        "windows_trusted": int(w["estimate_trusted"].astype(bool).sum()),
        "share_within_band": float(inside.mean()) if len(inside) else None,
        "mean_error": float((est - true)[ok].mean()) if ok.any() else None,
    }


def policy_summary(run: PolicyRun, onset: pd.Timestamp) -> dict[str, Any]:
    """The numbers of one policy's replay (``onset``: when the scenario began)."""
    w = pd.DataFrame(run.windows)
    ends = pd.to_datetime(w["end"], utc=True)
    before = ends <= onset
    after = w[~before]
    triggered = after[after["reason"] != "none"]
    deployed = [r for r in run.retrains if r.get("deployed_at")]
    restored = [r for r in deployed if pd.Timestamp(r["deployed_at"]) > onset]
    holdout = w["holdout_roc_auc"].dropna()
    levels = {
        "roc_auc": _level(w, "roc_auc", before, float(holdout.iloc[0]) if len(holdout) else None),
        "recall": _level(w, "recall", before, None),
    }
    return {
        "policy": run.policy.name,
        "monitor": run.policy.monitor,
        "windows": len(w),
        "retrains": len(run.retrains),
        "deployed": len(deployed),
        "rejected_by_gate": sum(1 for r in run.retrains if r.get("passed") is False),
        "detected_after_hours": _hours(onset, triggered["end"].iloc[0]) if len(triggered) else None,
        "restored_after_hours": _hours(onset, restored[0]["deployed_at"]) if restored else None,
        "quality_before_onset": levels,
        "area_lost_roc_auc": _area(after["roc_auc"], levels["roc_auc"]),
        "area_lost_recall": _area(after["recall"], levels["recall"]),
        "mean_roc_auc_after_onset": float(pd.to_numeric(after["roc_auc"], errors="coerce").mean()),
        "estimate": _estimate(w),
    }
