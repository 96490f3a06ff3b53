"""The quality gate: every check of one candidate, with its value, threshold and verdict.

A candidate passes only when every check passes:
- absolute thresholds: hold-out positives, ROC AUC, PR AUC, log loss, ECE, latency per row;
- no regression beyond a tolerance against the champion on the same hold-out (ROC AUC, PR AUC;
  ROC AUC judged with DeLong's paired test when ``gate.champion_confidence`` is set: ``paired``);
- the largest TPR difference between segments with enough fraud rows is under the bound;
- quality per segment: every value of every ``gate.segments`` column clears its own floors and
  stays near the overall figure and the champion's figure for it (``segment_gate``).
A check that cannot be computed (no champion yet, a champion that is not comparable) is reported
as skipped, never as passed. No numpy here: decisions travel in the training result.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from tasks.training.checks import Check, Op, passes
from tasks.training.segment_gate import segment_checks

if TYPE_CHECKING:
    from config import Gate
    from tasks.training.metrics import Metrics
    from tasks.training.paired import PairedAUC

__all__ = ["Check", "Decision", "Op", "decide"]


@dataclass
class Decision:
    candidate: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.passed is False]

    @property
    def reasons(self) -> list[str]:
        return [c.line for c in self.checks if c.passed is False]

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "passed": self.passed,
            "failed": self.failed,
            "checks": [c.as_dict() for c in self.checks],
        }


def absolute_checks(metrics: Metrics, cfg: Gate) -> list[Check]:
    """Thresholds that hold for every model, whatever the champion."""
    positives = passes(
        "holdout_positives", metrics.positives, ">=", cfg.min_holdout_positives, "fraud rows in the hold-out"
    )
    if metrics.latency_ms_per_row is None:
        latency = Check("latency_ms_per_row", None, "<=", cfg.max_latency_ms_per_row, None, "not measured")
    else:
        latency = passes("latency_ms_per_row", metrics.latency_ms_per_row, "<=", cfg.max_latency_ms_per_row)
    return [
        positives,
        passes("roc_auc", metrics.roc_auc, ">=", cfg.min_roc_auc),
        passes("pr_auc", metrics.pr_auc, ">=", cfg.min_pr_auc),
        passes("log_loss", metrics.log_loss, "<=", cfg.max_log_loss),
        passes("ece", metrics.ece, "<=", cfg.max_ece, f"{cfg.ece_bins} bins"),
        latency,
    ]


def champion_checks(
    metrics: Metrics,
    champion: Metrics | None,
    cfg: Gate,
    note: str = "",
    paired: PairedAUC | None = None,
) -> list[Check]:
    """No regression beyond the tolerance against the champion on the same hold-out."""
    checks = []
    for metric, tolerance in (("roc_auc", cfg.roc_auc_tolerance), ("pr_auc", cfg.pr_auc_tolerance)):
        name = f"{metric}_vs_champion"
        if champion is None:
            checks.append(Check(name, None, ">=", None, None, note or "no champion yet"))
            continue
        ours, theirs = getattr(metrics, metric), getattr(champion, metric)
        detail = f"{ours:.4f} vs champion {theirs:.4f}, same hold-out"
        allowed = tolerance
        if metric == "roc_auc" and paired is not None and cfg.champion_confidence is not None:
            z = NormalDist().inv_cdf(cfg.champion_confidence)
            allowed = tolerance + z * paired.se
            detail += f"; paired SE {paired.se:.4f}, {cfg.champion_confidence:.0%} one-sided (DeLong)"
        checks.append(passes(name, ours - theirs, ">=", -allowed, detail))
    return checks


def fairness_check(metrics: Metrics, cfg: Gate) -> Check:
    """The TPR gap across segments of the fairness column that have enough fraud rows."""
    fair = cfg.fairness
    if len(metrics.compared_segments) < 2:
        detail = f"fewer than two {fair.segment} segments with >= {fair.min_positives} fraud rows"
        return Check("fairness_tpr_gap", None, "<=", fair.max_tpr_gap, None, detail)
    tprs = ", ".join(f"{s} {metrics.segments[s]['tpr']:.2f}" for s in metrics.compared_segments)
    detail = f"TPR by {fair.segment} at p>={fair.threshold}: {tprs}"
    return passes("fairness_tpr_gap", metrics.tpr_gap, "<=", fair.max_tpr_gap, detail)


def decide(
    candidate: str,
    metrics: Metrics,
    champion: Metrics | None,
    cfg: Gate,
    *,
    champion_note: str = "",
    paired: PairedAUC | None = None,
) -> Decision:
    """Every check of the gate for one candidate, with its value and threshold."""
    checks = [
        *absolute_checks(metrics, cfg),
        *champion_checks(metrics, champion, cfg, champion_note, paired),
        fairness_check(metrics, cfg),
        *segment_checks(metrics, champion, cfg.segments),
    ]
    return Decision(candidate, checks)
