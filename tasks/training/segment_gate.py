"""The gate's checks per segment: every value of every ``gate.segments`` column on its own.

A segment large enough to judge (``min_rows`` rows and ``min_positives`` fraud rows in the
hold-out) must clear the floors of its column's rule (ROC AUC, PR AUC, recall at the serving
threshold), stay within a tolerance of the overall ROC AUC and recall, and within a tolerance of
the champion's ROC AUC and PR AUC for the same segment. A figure fails only when even its upper
confidence bound is below the bound (ROC AUC plus z standard errors, Hanley and McNeil; Wilson's
upper bound for recall; PR AUC plus z binomial standard errors over its fraud rows), so the
sampling noise of a small segment does not fail a good model, while a segment no better than
chance fails. A segment too small to judge is reported; it fails the gate when it holds more
than ``max_unjudged_share`` of the hold-out's rows. Failed checks are named after the segment
(``segment_roc_auc[region=north]``); a column whose segments all pass gets one summary check.
No numpy: the result of the gate travels in the training result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

from tasks.training.checks import Check

if TYPE_CHECKING:
    from config.training import SegmentRule, Segments
    from tasks.training.metrics import Metrics

Quality = Mapping[str, float]


def auc_se(auc: float, positives: float, negatives: float) -> float:
    """Standard error of a ROC AUC (Hanley and McNeil, 1982)."""
    if math.isnan(auc) or positives < 1 or negatives < 1:
        return math.inf
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    return math.sqrt(max(var, 0.0) / (positives * negatives))


def wilson_upper(rate: float, n: float, z: float) -> float:
    """Wilson's upper confidence bound of a proportion observed as ``rate`` over ``n`` trials."""
    if math.isnan(rate) or n < 1:
        return math.inf
    centre = rate + z * z / (2 * n)
    spread = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return (centre + spread) / (1 + z * z / n)


@dataclass(frozen=True)
class Segment:
    """One value of one segment column, with its figures and their upper bounds."""

    column: str
    value: str
    q: Quality
    z: float

    @property
    def label(self) -> str:
        return f"{self.column}={self.value}"

    def upper(self, figure: str) -> float:
        q = self.q
        if figure == "recall":
            return wilson_upper(q["recall"], q["positives"], self.z)
        if figure == "roc_auc":
            return q["roc_auc"] + self.z * auc_se(q["roc_auc"], q["positives"], q["rows"] - q["positives"])
        pr = q["pr_auc"]
        return pr + self.z * math.sqrt(max(pr * (1 - pr), 0.0) / max(q["positives"], 1.0))

    def check(self, kind: str, figure: str, bound: float, why: str) -> Check | None:
        """A failed check when even the upper bound of ``figure`` is below ``bound``; else None
        (also when the bound itself is unknown: an overall figure that is NaN fails on its own)."""
        value, upper = self.q[figure], self.upper(figure)
        if math.isnan(bound) or (not math.isnan(value) and upper >= bound):
            return None
        detail = (
            f"{why}; {int(self.q['positives'])} fraud rows of {int(self.q['rows'])}, "
            f"upper bound {upper:.3f} still below it"
        )
        return Check(f"segment_{kind}[{self.label}]", value, ">=", bound, False, detail)


def too_small(q: Quality, rule: SegmentRule) -> bool:
    return q["rows"] < rule.min_rows or q["positives"] < rule.min_positives or q["positives"] == q["rows"]


def _judge(seg: Segment, rule: SegmentRule, overall: Metrics, champion: Quality | None) -> list[Check]:
    wanted = [
        seg.check("roc_auc", "roc_auc", rule.min_roc_auc, "floor"),
        seg.check("pr_auc", "pr_auc", rule.min_pr_auc, "floor"),
        seg.check("recall", "recall", rule.min_recall, f"floor, at p>={overall.threshold}"),
        seg.check(
            "roc_auc_vs_overall",
            "roc_auc",
            overall.roc_auc - rule.max_roc_auc_below_overall,
            f"overall {overall.roc_auc:.4f} - {rule.max_roc_auc_below_overall}",
        ),
        seg.check(
            "recall_vs_overall",
            "recall",
            overall.recall - rule.max_recall_below_overall,
            f"overall {overall.recall:.4f} - {rule.max_recall_below_overall}",
        ),
    ]
    if champion is not None:
        for figure in ("roc_auc", "pr_auc"):
            theirs = champion[figure]
            if not math.isnan(theirs):
                why = f"champion {theirs:.4f} - {rule.champion_tolerance}, same segment"
                wanted.append(
                    seg.check(f"{figure}_vs_champion", figure, theirs - rule.champion_tolerance, why)
                )
    return [c for c in wanted if c is not None]


def _unjudged(seg: Segment, rule: SegmentRule) -> Check | None:
    share = seg.q["share"]
    if share <= rule.max_unjudged_share:
        return None
    detail = (
        f"{int(seg.q['rows'])} rows, {int(seg.q['positives'])} fraud: too few to judge "
        f"(min {rule.min_rows} rows, {rule.min_positives} fraud), yet {share:.0%} of the hold-out"
    )
    return Check(f"segment_too_small[{seg.label}]", share, "<=", rule.max_unjudged_share, False, detail)


def column_checks(column: str, rule: SegmentRule, metrics: Metrics, champion: Metrics | None) -> list[Check]:
    """The failed checks of one column's segments, or one passing summary check."""
    groups = metrics.segment_quality.get(column)
    if groups is None:
        return [Check(f"segments[{column}]", None, ">=", None, False, f"{column} is not in the hold-out")]
    z = NormalDist().inv_cdf(rule.confidence)
    theirs = (champion.segment_quality.get(column) or {}) if champion else {}
    failed: list[Check] = []
    judged, small = [], []
    for value, q in groups.items():
        seg = Segment(column, value, q, z)
        if too_small(q, rule):
            small.append(f"{value} ({q['share']:.0%})")
            failed += [c for c in [_unjudged(seg, rule)] if c is not None]
            continue
        judged.append(q["roc_auc"])
        failed += _judge(seg, rule, metrics, theirs.get(value) if champion else None)
    if failed:
        return failed
    lowest = f" (lowest ROC AUC {min(judged):.4f})" if judged else ""
    detail = f"{len(judged)} segments judged{lowest}; too small to judge: {', '.join(small) or 'none'}"
    return [Check(f"segments[{column}]", None, ">=", None, True, detail)]


def segment_checks(metrics: Metrics, champion: Metrics | None, cfg: Segments) -> list[Check]:
    """Every configured segment column's checks (see the module's docstring)."""
    return [c for column, rule in cfg.columns.items() for c in column_checks(column, rule, metrics, champion)]
