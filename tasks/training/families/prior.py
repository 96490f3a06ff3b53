"""The base-rate family: every row gets the training split's fraud rate. A baseline to compare
with, and the shape of a "constant predictor" that the gate must reject."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tasks.training.families import Fitted
from tasks.training.families.base import Encoder, FraudModel, InputSpec, PriorScorer

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def fit(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    *,
    spec: InputSpec,
    params: dict[str, Any],
    seed: int,
    device: str,
    **_: Any,
) -> Fitted:
    started = time.perf_counter()
    encoder = Encoder.fit(train, spec, dense=False)
    scorer = PriorScorer(rate=float(y_train.mean()))
    model = FraudModel(spec=spec, encoder=encoder, scorer=scorer, family="prior", params=params)
    return Fitted(model, {}, 0, "cpu", time.perf_counter() - started)
