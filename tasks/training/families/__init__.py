"""The fraud model families: XGBoost (``xgb``), a PyTorch MLP (``mlp``) and the base-rate ``prior``.

Each family module has ``fit(train, valid, ...) -> Fitted``; every family returns the same
``FraudModel`` (``base``), so evaluation, the gate, registration and serving never care which
family a model came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.training.families.base import FraudModel


@dataclass
class Fitted:
    """A trained, calibrated model and how its training went."""

    model: FraudModel
    history: dict[str, list[float]] = field(default_factory=dict)
    """Per round (XGBoost) or epoch (MLP): metric name -> values, logged as MLflow steps."""
    best_iteration: int = 0
    device: str = "cpu"
    seconds: float = 0.0
