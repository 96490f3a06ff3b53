"""One candidate in its own nested MLflow run: fit it, score it on the hold-out, gate it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient

from tasks.training import gate, tracking
from tasks.training.candidates import Candidate
from tasks.training.champion import ChampionScore
from tasks.training.evaluation import evaluate
from tasks.training.families import Fitted
from tasks.training.gate import Decision
from tasks.training.job import Job
from tasks.training.metrics import Metrics
from tasks.training.paired import PairedAUC, paired_auc
from tasks.training.result import SUMMARY_METRICS, CandidateSummary


@dataclass
class Outcome:
    """One candidate after training and gating."""

    candidate: Candidate
    fitted: Fitted
    metrics: Metrics
    decision: Decision
    p: np.ndarray
    run_id: str

    def summary(self) -> CandidateSummary:
        """What the training result reports of this candidate."""
        return CandidateSummary(
            name=self.candidate.name,
            family=self.candidate.family,
            params=self.candidate.params,
            run_id=self.run_id,
            device=self.fitted.device,
            train_seconds=round(self.fitted.seconds, 3),
            best_iteration=self.fitted.best_iteration,
            metrics={k: getattr(self.metrics, k) for k in SUMMARY_METRICS},
            passed=self.decision.passed,
            failed_checks=self.decision.failed,
            reasons=self.decision.reasons,
            checks=self.decision.checks,
        )


def train_candidate(job: Job, candidate: Candidate, champion: ChampionScore, client: MlflowClient) -> Outcome:
    """Fit one candidate in its own nested run, evaluate it on the hold-out and gate it."""
    say = job.say
    with mlflow.start_run(run_name=candidate.name, nested=True) as child:
        tracking.log_candidate(candidate)
        say(f"{candidate.name}: training ({candidate.family}) ...")
        fitted = candidate.fit(job.fit)
        tracking.log_fit(client, child.info.run_id, fitted)
        metrics, p = evaluate(fitted.model.predict_proba, job.split.holdout, job.settings)
        decision = gate.decide(
            candidate.name,
            metrics,
            champion.metrics,
            job.settings.gate,
            champion_note=champion.note,
            paired=_paired(job, p, champion),
        )
        tracking.log_gate(metrics, decision, fitted.seconds)
        verdict = "PASSED" if decision.passed else "FAILED"
        say(
            f"{candidate.name}: {fitted.seconds:.1f}s on {fitted.device}, best iteration "
            f"{fitted.best_iteration}, hold-out ROC AUC {metrics.roc_auc:.4f} PR AUC {metrics.pr_auc:.4f}; "
            f"gate {verdict}"
        )
        for check in decision.checks:
            say(f"    {check.line}")
        return Outcome(candidate, fitted, metrics, decision, p, child.info.run_id)


def _paired(job: Job, p: Any, champion: ChampionScore) -> PairedAUC | None:
    """The candidate against the champion on the same hold-out rows (DeLong), when both scored it."""
    if champion.p is None:
        return None
    labels = job.split.holdout[job.settings.schema_.label].to_numpy()
    return paired_auc(labels, p, champion.p)
