"""One training run: candidates of two families, one gate, at most one registered version.

Given a training set built by ``tasks.training.dataset``, ``run``:

1. prepares the job (``job``): reads the set, splits it by time into train | validation (early
   stopping, calibration) | hold-out (the gate), resolves device, context and lineage;
2. scores the current ``champion`` on the same hold-out (``champion``, verified load);
3. trains every candidate of the configured grid (``candidates``): XGBoost (hist, CUDA when
   present) and a PyTorch MLP (CUDA when present), class-weighted, early-stopped, seeded; each in
   a nested MLflow run with its params, curves, hold-out metrics and gate checks (``candidate_run``);
4. registers the best passing candidate with its model card (``winner``), or nothing, saying
   which checks failed; and returns the typed ``TrainingResult``. A retry of the same DAG run
   first settles what an earlier attempt left (``attempts``: a half-registered version deleted,
   a complete one reported instead of registering twice).

The parent MLflow run holds the data version (content hash, partitions), the feature service and
its features, the git commit, the run context (DAG, run, reason, drift summary) and the decision.
``python -m tasks.training`` (``tasks.training.cli``) runs it and writes the result as JSON.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient

from tasks.training import attempts, scaleout
from tasks.training.candidate_run import Outcome, train_candidate
from tasks.training.candidates import Candidate, plan
from tasks.training.champion import ChampionScore, score_champion
from tasks.training.job import Job, Say, prepare, say_to_stdout
from tasks.training.registration import Registration
from tasks.training.result import ChampionSummary, Status, TrainingResult
from tasks.training.summary import summary_table
from tasks.training.tracking import log_inputs
from tasks.training.winner import CARD_ARTIFACT, register_winner

if TYPE_CHECKING:
    from config import Settings


def run(
    settings: Settings,
    training_set_uri: str,
    *,
    tracking_uri: str | None = None,
    reason: str | None = None,
    run_context: str | dict[str, Any] | None = None,
    candidates: list[Candidate] | None = None,
    say: Say = say_to_stdout,
) -> TrainingResult:
    """Train, gate and (maybe) register.

    ``candidates`` replaces the configured grid (tools and tests); they go through the same
    training, evaluation, gate and registration path.
    """
    started = time.perf_counter()
    job = prepare(
        settings, training_set_uri, tracking_uri=tracking_uri, reason=reason, run_context=run_context, say=say
    )
    todo = candidates if candidates is not None else plan(settings)
    say(
        f"{len(todo)} candidates on {job.fit.device}, pos_weight {job.fit.pos_weight:.1f}, "
        f"seed {job.fit.seed}, git {job.commit}, MLflow {job.tracking_uri}"
    )
    mlflow.set_tracking_uri(job.tracking_uri)
    mlflow.set_registry_uri(job.tracking_uri)
    experiment = mlflow.set_experiment(settings.mlflow.experiment)
    client = MlflowClient(tracking_uri=job.tracking_uri, registry_uri=job.tracking_uri)
    with mlflow.start_run(run_name=f"train-{job.context.reason}"[:250]) as parent:
        log_inputs(job, todo)
        earlier = attempts.settle(job, client, experiment.experiment_id, parent.info.run_id)
        champion = _champion(job)
        with scaleout.session(settings):  # Ray for train.workers > 1, started once a run
            outcomes = [train_candidate(job, cand, champion, client) for cand in todo]
        best = best_passing(outcomes, settings.gate.select_by)
        registration = earlier or (register_winner(job, best, outcomes, champion) if best else None)
        _log_decision(best, registration, outcomes)
    result = build_result(
        job,
        experiment_id=experiment.experiment_id,
        run_id=parent.info.run_id,
        outcomes=outcomes,
        champion=champion,
        best=best,
        registration=registration,
    )
    result.seconds = round(time.perf_counter() - started, 2)
    for line in summary_table(result):
        say(line)
    return result


def best_passing(outcomes: list[Outcome], select_by: str) -> Outcome | None:
    """The passing candidate with the highest ``gate.select_by`` metric, or None."""
    passing = [o for o in outcomes if o.decision.passed]
    return max(passing, key=lambda o: float(getattr(o.metrics, select_by)), default=None)


def _champion(job: Job) -> ChampionScore:
    """The champion on the hold-out, logged in the parent run."""
    champion = score_champion(job.settings, job.tracking_uri, job.split.holdout)
    if champion.metrics is None:
        job.say(f"champion: {champion.note}")
        return champion
    cm = champion.metrics
    mlflow.log_metrics(cm.scalars("champion_holdout_"))
    mlflow.set_tag("champion_version", champion.version)
    job.say(f"champion v{champion.version}: hold-out ROC AUC {cm.roc_auc:.4f}, PR AUC {cm.pr_auc:.4f}")
    return champion


def _log_decision(best: Outcome | None, registration: Registration | None, outcomes: list[Outcome]) -> None:
    """The run's decision as tags (``gate.decision``, the registered version) and ``gate.json``."""
    status: Status = "registered" if registration else "rejected"
    mlflow.set_tags({"gate.decision": status, "best_candidate": best.candidate.name if best else "-"})
    if best and registration:
        mlflow.set_tags(
            {
                "registered_model": registration.name,
                "registered_version": registration.version,
                "model_sha256": registration.model_sha256,
                "model_card": registration.model_card_uri,
            }
        )
        mlflow.log_metrics({f"best_{k}": v for k, v in best.metrics.scalars().items()})
    mlflow.log_dict({"status": status, "decisions": [o.decision.as_dict() for o in outcomes]}, "gate.json")


def build_result(
    job: Job,
    *,
    experiment_id: str,
    run_id: str,
    outcomes: list[Outcome],
    champion: ChampionScore,
    best: Outcome | None,
    registration: Registration | None,
) -> TrainingResult:
    """The typed result of a finished run (``as_dict()`` is the entrypoint's JSON)."""
    base = job.tracking_uri.rstrip("/")
    reasons = [f"{o.candidate.name}: {r}" for o in outcomes for r in o.decision.reasons]
    reg = registration
    status: Status = "registered" if reg else "rejected"
    return TrainingResult(
        status=status,
        mlflow_run_id=run_id,
        experiment_id=experiment_id,
        tracking_uri=job.tracking_uri,
        run_url=f"{base}/#/experiments/{experiment_id}/runs/{run_id}",
        registered_model=job.settings.mlflow.registered_model,
        version=reg.version if reg else None,
        aliases=reg.aliases if reg else [],
        model_uri=reg.model_uri if reg else None,
        model_sha256=reg.model_sha256 if reg else None,
        model_card_uri=reg.model_card_uri if reg else None,
        model_card_url=f"{base}/get-artifact?path={CARD_ARTIFACT}&run_uuid={reg.run_id}" if reg else None,
        best_candidate=best.candidate.name if best else None,
        best_run_id=best.run_id if best else None,
        reasons=[] if reg else (reasons or ["no candidates to train"]),
        candidates=[o.summary() for o in outcomes],
        champion=ChampionSummary(champion.version, champion.note, champion.metrics),
        data_version={k: v for k, v in job.data.as_dict().items() if k != "batches"},
        split=job.split.describe(job.settings.schema_.label),
        context=job.context,
        git_commit=job.commit,
        device=job.fit.device,
    )
