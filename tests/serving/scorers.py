"""Model scorers for serving tests, in an importable module: the model replicas unpickle them.

Every test model is a real ``FraudModel`` (the class training logs) registered through the real
``tasks.registry.register``; only its scorer is simple, so that what a test checks is visible in
the score: a constant probability tells which version answered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class ConstantScorer:
    """Every row gets the same probability ``p`` (before calibration, which is the identity here)."""

    p: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), math.log(self.p / (1 - self.p)))


@dataclass
class FailingScorer:
    """A model that loads fine and fails on every call: a broken challenger."""

    def logits(self, x: np.ndarray) -> np.ndarray:
        raise RuntimeError("this model is broken on purpose")
