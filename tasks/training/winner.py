"""The best passing candidate: its model and model card logged in its run, then registered.

The model is logged as a pyfunc with its signature, an input example and pinned requirements;
the card (``tasks.training.model_card``) goes beside it as ``model_card.html``. Registration
itself (version, hash, lineage tags, aliases) is ``tasks.training.registration.register``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mlflow

from tasks.common import registry
from tasks.training import model_card, registration, tracking
from tasks.training.families.base import model_input

if TYPE_CHECKING:
    from tasks.training.candidate_run import Outcome
    from tasks.training.champion import ChampionScore
    from tasks.training.job import Job
    from tasks.training.registration import Registration

MODEL_ARTIFACT = "model"
CARD_ARTIFACT = "model_card.html"


def card_for(job: Job, best: Outcome, outcomes: list[Outcome], champion: ChampionScore) -> model_card.Card:
    """The winner's model card: what it is, what it was trained on, how it did against the rest."""
    holdout_y = job.holdout_y
    importance = model_card.permutation_importance(
        best.fitted.model, model_input(job.split.holdout, job.spec), holdout_y, seed=job.fit.seed
    )
    others = [
        {
            "name": o.candidate.name,
            "family": o.candidate.family,
            "roc_auc": o.metrics.roc_auc,
            "pr_auc": o.metrics.pr_auc,
            "passed": o.decision.passed,
        }
        for o in outcomes
    ]
    params = {**best.candidate.params, "best_iteration": best.fitted.best_iteration}
    return model_card.Card(
        model_name=job.settings.mlflow.registered_model,
        candidate=best.candidate.name,
        family=best.candidate.family,
        params=params | {"pos_weight": job.fit.pos_weight},
        input_columns=job.spec.columns,
        metrics=best.metrics,
        decision=best.decision,
        y=holdout_y,
        p=best.p,
        importance=importance,
        lineage=job.lineage,
        data_version=job.data.as_dict(),
        champion_metrics=champion.metrics,
        champion_p=champion.p,
        champion_version=champion.version,
        other_candidates=others,
        ece_bins=job.settings.gate.ece_bins,
        threshold=job.settings.gate.fairness.threshold,
        segments=job.settings.gate.segments,
    )


def register_winner(
    job: Job, best: Outcome, outcomes: list[Outcome], champion: ChampionScore
) -> Registration:
    """Log the winner's model and card in its run, then register it as the next version."""
    card = card_for(job, best, outcomes, champion)
    model = best.fitted.model
    with mlflow.start_run(run_id=best.run_id, nested=True):
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=model,
            signature=tracking.signature(job.spec),
            input_example=tracking.input_example(job.split.train, job.spec),
            pip_requirements=tracking.pip_requirements(model.family),
        )
        mlflow.log_text(model_card.render(card), CARD_ARTIFACT)
        card_uri = mlflow.get_artifact_uri(CARD_ARTIFACT)
        mlflow.set_tags({k: registration.tag_value(v) for k, v in job.lineage.items()})
    tags = {
        **job.lineage,
        registry.TAG_FAMILY: best.candidate.family,
        registry.TAG_CANDIDATE: best.candidate.name,
    }
    return registration.register(
        job.settings,
        job.tracking_uri,
        logged_model_uri=info.model_uri,
        logged_model_id=info.model_id,
        run_id=best.run_id,
        tags=tags,
        model_card_uri=card_uri,
        description=model_card.markdown(card),
    )
