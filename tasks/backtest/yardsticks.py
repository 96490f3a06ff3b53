"""What a policy's quality after a drift is judged against, measured in the same run.

Under concept drift the best quality a model can reach changes with the traffic, so "the retrain
restored quality" cannot mean "back to the level before the onset": with the feature service's
features the first champion scores ~0.96 ROC AUC before a concept drift, and no model trained on
the drifted traffic gets there (its new background fraud has no velocity signal). Two curves on
the replayed windows, computed as the policies' quality curve is (ROC AUC and recall over the
last ``quality_hours``, every label known):

- ``reference``: a model trained by the same code at the same scale (``models.train`` on
  ``train_days``) on the scenario's traffic at full strength only, simulated apart from the replay
  (a random stream and ids of its own, at the training history's times, after the same warm-up
  context), so it never saw a window it is scored on: what a retrain reaches once its whole
  training window is the new traffic;
- ``first_champion``: the first champion serving on, never retrained: what not retraining costs.

Simulated histories only: a project's own history has no scenario to simulate apart (no
reference); a stable one has no new traffic (its reference would be the first champion).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from tasks.backtest import features, source
from tasks.backtest.history import History
from tasks.backtest.models import Model, gate_settings, train
from tasks.backtest.replay import PolicyRun, Shared, _quality
from tasks.backtest.spec import Policy
from tasks.platform.simulate.batches import build_batch, knobs_for

if TYPE_CHECKING:
    from config import Settings
    from tasks.backtest.spec import Spec

_STREAM = (16, 2)
"""The reference's hours' random stream (the warm-up's is ``(16, 1)``, the scenarios' ``(1, ...)``)."""


def new_traffic(settings: Settings, spec: Spec, start: pd.Timestamp, context: list[pd.DataFrame]) -> History:
    """``train_days`` of the scenario at full strength from ``start``, with the service's features
    (``context``: the hours before ``start`` their windows reach back into)."""
    knobs = knobs_for(spec.scenario, 1.0)
    history = History(spec, start)
    for k in range(spec.train_hours):
        history.hours.append(
            build_batch(
                settings,
                knobs,
                stream=_STREAM,
                id_prefix=f"rf{settings.simulate.seed}",
                index=k,
                rows=spec.rows_per_hour,
                start=None,
                at=start + pd.Timedelta(hours=k),
            )
        )
    features.add(settings, history, context)
    return history


def reference(
    settings: Settings, spec: Spec, start: pd.Timestamp, context: list[pd.DataFrame]
) -> Model | None:
    """The reference model (``None`` when not asked for or without a scenario to simulate); not
    held to the gate, as it never serves: at this scale a model of the new traffic can miss a
    fixed floor (the fairness gap, ROC AUC 0.85) and still be the best that traffic allows."""
    if not spec.reference or spec.history == source.PROJECT or spec.scenario == "stable":
        return None
    frame = pd.concat(new_traffic(settings, spec, start, context).hours, ignore_index=True)
    return train(gate_settings(settings, spec.segment_gate), frame, "reference", None, gated=False).model


def curve(shared: Shared, spec: Spec, settings: Settings, model: Model) -> dict[str, Any]:
    """``model`` serving every replayed window: its quality curve, as a policy's is measured."""
    h = shared.history
    hours = range(h.first_replayed, h.first_replayed + spec.hours)
    run = PolicyRun(Policy(model.id), settings, model, served=dict.fromkeys(hours, model.id))
    windows = []
    for hour in hours:
        shared.score(hour, model)  # cached a day at a time
        windows.append({"end": h.at(hour + 1).isoformat(), **_quality(shared, spec, run, hour)})
    onset = h.at(h.onset)
    after = [w["roc_auc"] for w in windows if pd.Timestamp(w["end"]) > onset]
    mean = float(pd.Series(after, dtype="float64").mean()) if after else None
    return {"id": model.id, "holdout": model.holdout, "mean_roc_auc_after_onset": mean, "windows": windows}


def measure(
    shared: Shared, spec: Spec, settings: Settings, champion: Model, context: list[pd.DataFrame]
) -> dict[str, Any]:
    """The result's ``reference`` (``None`` when there is none) and ``first_champion`` curves."""
    model = reference(settings, spec, shared.history.start, context)
    return {
        "reference": curve(shared, spec, settings, model) if model is not None else None,
        "first_champion": curve(shared, spec, settings, champion),
    }
