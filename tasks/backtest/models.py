"""Retrains in a backtest: the training code of ``tasks.training`` without MLflow.

A retrain decided at time ``t`` trains on the last ``train_days`` of transactions whose labels had
landed by ``t``, with the candidates of ``train.families`` (``candidates.plan``, ``Candidate.fit``),
scores them on the time-split hold-out (``evaluation.evaluate``) and gates them against the
champion on the same hold-out (``gate.decide``, DeLong's paired test as in a real run); the best
passing one (``run.best_passing``) becomes the champion ``retrain_hours`` later. What is not
replayed: MLflow (nothing is logged or registered), the model card and the rollout's canary (a
champion that passed the gate serves all traffic). Models see what production's see: the feature
service's features (``features.add`` puts them on the history, computed by the feature store's
code) and the request's raw columns.

A retrain trains on the last ``train_days``, or on less where the train DAG would
(``dataset.time_range``: ``train.performance_window_hours`` for a performance-triggered retrain).
Models are cached by the hours they train on: two policies that retrain on the same range get
the same model, trained once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.backtest.features import names
from tasks.monitoring.reference import Reference, build_reference
from tasks.training import gate
from tasks.training.candidates import FitContext, plan
from tasks.training.evaluation import evaluate, time_split
from tasks.training.families.base import FraudModel, InputSpec
from tasks.training.paired import paired_auc

if TYPE_CHECKING:
    import pandas as pd

    from config import Settings


@dataclass
class Model:
    """A champion of the backtest: the model, its monitoring reference, its hold-out numbers."""

    id: str
    model: FraudModel
    reference: Reference
    trained_on: tuple[str, str]
    holdout: dict[str, Any] = field(default_factory=dict)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict_proba(frame), dtype="float64")


@dataclass
class Retrained:
    """What one retrain produced: the new champion, or why none (the gate's failed checks)."""

    model: Model | None
    candidates: list[dict[str, Any]]
    seconds: float

    @property
    def passed(self) -> bool:
        return self.model is not None


def gate_settings(settings: Settings, segment_gate: bool) -> Settings:
    """``settings`` with the gate's per-segment checks off unless ``segment_gate``."""
    if segment_gate:
        return settings
    segments = settings.gate.segments.model_copy(update={"columns": {}})
    return settings.model_copy(update={"gate": settings.gate.model_copy(update={"segments": segments})})


def _fit_context(settings: Settings, frame: pd.DataFrame, features: list[str]) -> FitContext:
    split = time_split(frame, settings)
    y = split.train[settings.schema_.label].to_numpy()
    pos_weight = settings.train.pos_weight or float((y == 0).sum() / max(1, (y == 1).sum()))
    spec = InputSpec.from_settings(settings, features)
    return FitContext(settings, spec, split, pos_weight, settings.train.seed, "cpu")


def train(
    settings: Settings, frame: pd.DataFrame, model_id: str, champion: Model | None, *, gated: bool = True
) -> Retrained:
    """Train the configured candidates on ``frame``, gate them against ``champion``; the best
    passing one as a ``Model`` (with its reference built as the monitor builds it). Not
    ``gated``: the best one, passed or not (a yardstick, never a champion)."""
    started = time.perf_counter()
    features = names(settings)
    ctx = _fit_context(settings, frame, features)
    holdout, label = ctx.split.holdout, settings.schema_.label
    champ_metrics, champ_p = (None, None)
    if champion is not None:
        champ_metrics, champ_p = evaluate(champion.model.predict_proba, holdout, settings, latency=False)
    outcomes: list[_Outcome] = []
    summaries: list[dict[str, Any]] = []
    for candidate in plan(settings):
        fitted = candidate.fit(ctx)
        metrics, p = evaluate(fitted.model.predict_proba, holdout, settings)
        paired = paired_auc(holdout[label].to_numpy(), p, champ_p) if champ_p is not None else None
        note = "" if champion is not None else "no champion yet"
        decision = gate.decide(
            candidate.name, metrics, champ_metrics, settings.gate, champion_note=note, paired=paired
        )
        outcomes.append(_Outcome(fitted.model, metrics, decision))
        summaries.append({"candidate": candidate.name, "passed": decision.passed, "failed": decision.reasons})
    best = _best_passing(outcomes, settings.gate.select_by, gated)
    model = None
    if best is not None:
        ts = frame[settings.schema_.timestamp]
        ref = build_reference(
            settings,
            frame,
            best.model.predict_proba,
            features=features,
            model_name="backtest",
            model_version=model_id,
        )
        held = {"roc_auc": best.metrics.roc_auc, "pr_auc": best.metrics.pr_auc, "ece": best.metrics.ece}
        model = Model(model_id, best.model, ref, (ts.min().isoformat(), ts.max().isoformat()), held)
    return Retrained(model, summaries, time.perf_counter() - started)


def _best_passing(outcomes: list[_Outcome], select_by: str, gated: bool = True) -> _Outcome | None:
    """``tasks.training.run.best_passing``'s rule (that module logs to MLflow): the passing
    candidate with the highest ``gate.select_by`` metric (any candidate, not ``gated``)."""
    passing = [o for o in outcomes if o.decision.passed or not gated]
    return max(passing, key=lambda o: float(getattr(o.metrics, select_by)), default=None)


@dataclass
class _Outcome:
    """What ``run.best_passing`` reads of a candidate: its metrics and its gate decision."""

    model: FraudModel
    metrics: Any
    decision: gate.Decision
