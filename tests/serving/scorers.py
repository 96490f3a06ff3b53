"""Model scorers for serving tests, in an importable module: the model replicas unpickle them.

Every test model is a real ``FraudModel`` (the class training logs) registered through the real
``tasks.training.registration.register``; only its scorer is simple, so that what a test checks is visible in
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


@dataclass
class SlowScorer:
    """A constant probability ``p`` that takes ``seconds`` per call: a challenger too slow to serve."""

    p: float
    seconds: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        import time

        time.sleep(self.seconds)
        return np.full(len(x), math.log(self.p / (1 - self.p)))


@dataclass
class SmallBatchFailingScorer:
    """Scores large batches (so it passes a smoke test) and fails on the small batches of live
    traffic: a challenger whose errors only show under real requests."""

    p: float
    min_rows: int = 20

    def logits(self, x: np.ndarray) -> np.ndarray:
        if len(x) < self.min_rows:
            raise RuntimeError(f"fails on batches under {self.min_rows} rows on purpose")
        return np.full(len(x), math.log(self.p / (1 - self.p)))
