"""The table a training run ends its log with: every candidate, the champion, the decision."""

from __future__ import annotations

import math
from collections.abc import Mapping

from tasks.training.result import TrainingResult

WIDTH = 34


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, fmt)


def _scores(m: Mapping[str, float | None]) -> str:
    """ROC AUC, PR AUC, log loss, ECE and TPR gap, in the table's columns."""
    return (
        f"{_num(m['roc_auc'], '.4f'):>8} {_num(m['pr_auc'], '.4f'):>7} {_num(m['log_loss'], '.4f'):>8} "
        f"{_num(m['ece'], '.4f'):>7} {_num(m['tpr_gap'], '.3f'):>8}"
    )


def _decision(result: TrainingResult) -> list[str]:
    if result.registered:
        return [
            f"REGISTERED {result.registered_model} version {result.version} "
            f"({', '.join(result.aliases)}) from {result.best_candidate}; "
            f"sha256 {(result.model_sha256 or '')[:16]}",
            f"model card {result.model_card_uri}",
        ]
    return ["NOTHING REGISTERED: no candidate passed the gate", *(f"  {r}" for r in result.reasons)]


def summary_table(result: TrainingResult) -> list[str]:
    """Lines for the training log: one per candidate and the champion, then the decision."""
    head = (
        f"{'candidate':<{WIDTH}} {'device':<6} {'train s':>8} {'ROC AUC':>8} {'PR AUC':>7} {'logloss':>8} "
        f"{'ECE':>7} {'TPR gap':>8} {'ms/row':>7}  gate"
    )
    lines = ["", head, "-" * len(head)]
    for c in result.candidates:
        gate = "pass" if c.passed else "FAIL " + ",".join(c.failed_checks)
        lines.append(
            f"{c.name[:WIDTH]:<{WIDTH}} {c.device:<6} {c.train_seconds:>8.2f} {_scores(c.metrics)} "
            f"{_num(c.metrics['latency_ms_per_row'], '.4f'):>7}  {gate}"
        )
    champ = result.champion
    if champ.metrics:
        m = champ.metrics
        scores = {"roc_auc": m.roc_auc, "pr_auc": m.pr_auc, "log_loss": m.log_loss, "ece": m.ece}
        lines.append(
            f"{'champion v' + str(champ.version):<{WIDTH}} {'':<6} {'':>8} "
            f"{_scores(scores | {'tpr_gap': m.tpr_gap})} {'':>7}  (current champion)"
        )
    lines += ["", *_decision(result), f"MLflow run {result.run_url}  ({result.seconds:.1f}s)"]
    return lines
