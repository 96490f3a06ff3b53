"""Uniform samples of large frames and streams, and the bound on what sampling costs a drift test.

Both sides of a drift test (the window while it is read, the reference when it is built) are cut
to at most ``monitor.drift.max_rows`` rows, so time and memory do not grow with the window.
``dkw_epsilon`` is the Dvoretzky-Kiefer-Wolfowitz bound (Massart's constant) on how far a
uniform sample's empirical CDF lies from the full data's (see ``tasks.monitoring.drift``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from numpy.typing import NDArray


def dkw_epsilon(sample: int, population: int, confidence: float) -> float:
    """Sup-distance bound between the empirical CDF of a uniform sample of ``sample`` rows and
    that of all ``population`` rows (0 when nothing was left out), for one of two sides holding
    together with probability ``confidence``."""
    if sample <= 0 or sample >= population:
        return 0.0
    return math.sqrt(math.log(4.0 / (1.0 - confidence)) / (2.0 * sample))


def uniform_rows(length: int, size: int, seed: int) -> NDArray[np.intp]:
    """Positions of ``size`` of ``length`` rows, drawn uniformly without replacement, in order."""
    return np.sort(np.random.default_rng(seed).choice(length, size=size, replace=False))


def sample_frame(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """At most ``size`` rows, drawn uniformly without replacement, in their original order."""
    if len(frame) <= size:
        return frame
    return frame.iloc[uniform_rows(len(frame), size, seed)].reset_index(drop=True)


class UniformSample:
    """A uniform sample without replacement of at most ``size`` rows of a stream of frames.

    Every row gets a random key and the ``size`` rows with the smallest keys are kept (a bottom-k
    sample), so memory is bounded by ``size`` plus one chunk whatever the stream's length, and
    the stream's length need not be known in advance. Kept rows stay in stream order.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._frame: pd.DataFrame | None = None
        self._keys: NDArray[Any] | None = None

    def add(self, chunk: pd.DataFrame) -> None:
        if chunk.empty:
            return
        keys = self._rng.random(len(chunk))
        self.seen += len(chunk)
        if self._frame is None or self._keys is None:
            frame, all_keys = chunk.reset_index(drop=True), keys
        else:
            frame = pd.concat([self._frame, chunk], ignore_index=True)
            all_keys = np.concatenate([self._keys, keys])
        if len(frame) > self.size:
            keep = np.sort(np.argpartition(all_keys, self.size)[: self.size])
            frame, all_keys = frame.iloc[keep].reset_index(drop=True), all_keys[keep]
        self._frame, self._keys = frame, all_keys

    def frame(self) -> pd.DataFrame | None:
        """The sample (``None`` when nothing was added)."""
        return self._frame
