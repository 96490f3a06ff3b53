"""The XGBoost family: histogram trees, ``device="cuda"`` on a GPU, class weighting through
``scale_pos_weight``, early stopping on the validation split's class-weighted log loss.

The booster is kept as raw UBJSON bytes and scores on the CPU with ``inplace_predict``
(serving has no GPU), limited to the best round found by early stopping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.training.families import Fitted
from tasks.training.families.base import Encoder, FraudModel, InputSpec

if TYPE_CHECKING:
    import pandas as pd

    from config import XGBoostFamily


@dataclass
class XGBScorer:
    raw: bytes
    best_iteration: int
    _booster: Any = field(default=None, repr=False, compare=False)

    def booster(self) -> Any:
        if self._booster is None:
            # xgboost only where trees score or train: MLP-only runs and their serving never load it
            import xgboost as xgb  # noqa: PLC0415 - see above

            booster = xgb.Booster(model_file=bytearray(self.raw))
            booster.set_param({"device": "cpu"})
            self._booster = booster
        return self._booster

    def logits(self, x: np.ndarray) -> np.ndarray:
        margin = self.booster().inplace_predict(
            x, predict_type="margin", iteration_range=(0, self.best_iteration + 1)
        )
        return np.asarray(margin)

    def gain(self, n_columns: int) -> np.ndarray:
        """Total gain per matrix column (zero for columns no tree splits on)."""
        scores = self.booster().get_score(importance_type="total_gain")
        out = np.zeros(n_columns)
        for name, value in scores.items():
            out[int(name.removeprefix("f"))] = value
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"raw": self.raw, "best_iteration": self.best_iteration, "_booster": None}


def training_params(params: dict[str, Any], *, pos_weight: float, seed: int, device: str) -> dict[str, Any]:
    """The booster's parameters: a candidate's grid point over the family's fixed ones."""
    return {
        "objective": "binary:logistic",
        "eval_metric": ["aucpr", "logloss"],  # the last one drives early stopping
        "tree_method": "hist",
        "device": device,
        "scale_pos_weight": pos_weight,
        "seed": seed,
        **params,
    }


def fit(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    *,
    spec: InputSpec,
    params: dict[str, Any],
    family: XGBoostFamily,
    pos_weight: float,
    seed: int,
    device: str,
) -> Fitted:
    import xgboost as xgb  # noqa: PLC0415 - see XGBScorer.booster

    started = time.perf_counter()
    encoder = Encoder.fit(train, spec, dense=False)
    w_valid = np.where(y_valid == 1, pos_weight, 1.0)
    dtrain = xgb.DMatrix(encoder.transform(train), label=y_train, feature_names=None)
    dvalid = xgb.DMatrix(encoder.transform(valid), label=y_valid, weight=w_valid)
    booster_params = training_params(params, pos_weight=pos_weight, seed=seed, device=device)
    history: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        booster_params,
        dtrain,
        num_boost_round=family.max_rounds,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        evals_result=history,
        early_stopping_rounds=family.early_stopping_rounds,
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    booster.set_param({"device": "cpu"})
    scorer = XGBScorer(raw=bytes(booster.save_raw("ubj")), best_iteration=best)
    model = FraudModel(spec=spec, encoder=encoder, scorer=scorer, family="xgboost", params=params)
    model = model.calibrated(valid, y_valid)
    flat = {f"{split}_{metric}": values for split, ms in history.items() for metric, values in ms.items()}
    return Fitted(model, flat, best, device, time.perf_counter() - started)
