"""The statistics a rollout judge uses: is the challenger's share of bad events (errors, slow
calls) larger than the champion's beyond chance, and where does a rate plausibly lie.

- ``greater_p``: one-sided Fisher exact test of two proportions (``k1`` of ``n1`` against ``k2`` of
  ``n2``): the probability, were both groups drawn from one population, of a first group with
  ``k1`` or more events given the total. Exact for any sample size (no normal approximation, so
  a step with a handful of errors is judged as soundly as one with thousands); the hypergeometric
  tail is summed in log space until its terms no longer matter.
- ``binomial_below`` / ``binomial_above``: exact binomial tails, for the sum of a calibrated
  model's scores (about the number of frauds among what it scored) against a fraud rate.
- ``wilson``: the Wilson score interval of a proportion (the observed fraud rate the scores are
  held to), sound near 0 where the plain normal interval is not.

Plain ``math``: the deploy DAG's steps do not import scipy for three formulas.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def greater_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided Fisher exact p-value that ``k1 / n1`` is larger than ``k2 / n2``."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    events, total = k1 + k2, n1 + n2
    top = min(n1, events)
    if k1 > top:
        return 0.0
    log_denominator = _log_choose(total, n1)
    p = 0.0
    for k in range(k1, top + 1):
        term = math.exp(_log_choose(events, k) + _log_choose(total - events, n1 - k) - log_denominator)
        p += term
        if k > k1 and term < p * 1e-12:
            break
    return min(1.0, p)


def _binomial_tail(ks: range, n: int, p: float) -> float:
    """The summed binomial probabilities of ``ks``, in log space, stopping once terms vanish."""
    if p <= 0.0 or p >= 1.0:
        return float(any(k == (0 if p <= 0.0 else n) for k in ks))
    log_p, log_q, total = math.log(p), math.log1p(-p), 0.0
    for k in ks:
        term = math.exp(_log_choose(n, k) + k * log_p + (n - k) * log_q)
        total += term
        if term < total * 1e-12:
            break
    return min(1.0, total)


def binomial_below(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p) (summed from the far side of the mode: a few terms)."""
    if k >= n or k < 0:
        return float(k >= n)
    if k > n * p:
        return max(0.0, 1.0 - binomial_above(k + 1, n, p))
    return _binomial_tail(range(k, -1, -1), n, p)


def binomial_above(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0 or k > n:
        return float(k <= 0)
    if k < n * p:
        return max(0.0, 1.0 - binomial_below(k - 1, n, p))
    return _binomial_tail(range(k, n + 1), n, p)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of ``k`` events in ``n`` trials (95 % by default)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Comparison:
    """Two groups' shares of some event, and whether the first's is larger beyond chance."""

    events: int
    n: int
    reference_events: int
    reference_n: int
    p_value: float | None
    """One-sided Fisher exact test (None: a group is smaller than ``min_sample``, not tested)."""

    @property
    def share(self) -> float:
        return self.events / self.n if self.n else 0.0

    @property
    def reference_share(self) -> float:
        return self.reference_events / self.reference_n if self.reference_n else 0.0

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    def significant(self, alpha: float) -> bool:
        """Larger beyond chance at level ``alpha``; an untested comparison counts as significant,
        so that the practical limit alone decides a step whose sample is too small to test."""
        return self.p_value is None or self.p_value < alpha

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(events: int, n: int, reference_events: int, reference_n: int, *, min_sample: int) -> Comparison:
    """``events`` of ``n`` against ``reference_events`` of ``reference_n``, tested when both groups
    hold at least ``min_sample`` observations."""
    p = greater_p(events, n, reference_events, reference_n) if min(n, reference_n) >= min_sample else None
    return Comparison(events, n, reference_events, reference_n, None if p is None else round(p, 8))


@dataclass
class Check:
    """One judged check of a step: its verdict, the value against its limit, and why."""

    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str
    judged: bool = True
    """False: the check could not be judged (it passes, and the detail says why)."""
    samples: dict[str, Any] = field(default_factory=dict)
    """Sample sizes (and the test's p-value) behind the verdict."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
