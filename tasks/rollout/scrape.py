"""Reading the serving application's ``/metrics`` for a rollout step: what two scrapes gained,
sums over labels, cumulative histograms, their quantiles, means and population stability.

A step is measured as the difference of two scrapes of the Prometheus counters and histograms
(``delta``), so it sees exactly the requests served while the step held, whatever ran before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

PREFIX = "airloop_serving"
Key = tuple[str, tuple[tuple[str, str], ...]]
Samples = Mapping[Key, float]
"""``ServingClient.metrics()``: ``{(sample name, sorted label pairs): value}``."""
Buckets = list[tuple[float, float]]
"""A cumulative histogram: ``(upper bound, count)`` pairs, the last one ``+Inf``."""

_GROWING = ("_total", "_bucket", "_count", "_sum")
"""Sample suffixes that only grow while the application runs (the ``_sum`` of the scores and of
the latencies, which are never negative, included)."""


class CounterReset(RuntimeError):
    """A counter went down between two scrapes: the application restarted in between."""


def delta(after: Samples, before: Samples) -> dict[Key, float]:
    """What the counters and histograms gained between two scrapes.

    Raises ``CounterReset`` when a counter went down: the application restarted in between, so
    the step's numbers are unknown (and the challenger's traffic state with them).
    """
    out = {}
    for key, value in after.items():
        name = key[0]
        if not name.endswith(_GROWING):
            continue
        gained = value - before.get(key, 0.0)
        if gained < 0:
            raise CounterReset(f"{name} went from {before[key]} to {value}: the application restarted")
        out[key] = gained
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over every sample whose labels include ``labels``."""
    want = labels.items()
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= dict(lbls).items())


def histogram(samples: Samples, name: str, **labels: str) -> Buckets:
    """Cumulative ``(upper bound, count)`` pairs of a histogram, summed over the other labels."""
    sums: dict[float, float] = {}
    want = labels.items()
    for (n, lbls), v in samples.items():
        if n != f"{name}_bucket":
            continue
        d = dict(lbls)
        if want <= d.items():
            le = float(d["le"])
            sums[le] = sums.get(le, 0.0) + v
    return sorted(sums.items())


def merged(*histograms: Buckets) -> Buckets:
    """Several cumulative histograms with the same buckets, as one."""
    sums: dict[float, float] = {}
    for buckets in histograms:
        for le, count in buckets:
            sums[le] = sums.get(le, 0.0) + count
    return sorted(sums.items())


def count(buckets: Buckets) -> int:
    """Observations in a cumulative histogram."""
    return int(buckets[-1][1]) if buckets else 0


def above(buckets: Buckets, bound: float) -> int:
    """Observations above ``bound``, which must be one of the histogram's upper bounds."""
    at = next((c for le, c in buckets if le == bound), None)
    if at is None:
        raise ValueError(f"{bound} is not an upper bound of the histogram")
    return int(count(buckets) - at)


def bucket_at_or_above(buckets: Buckets, value: float) -> float | None:
    """The smallest finite upper bound at or above ``value`` (None: only ``+Inf`` is)."""
    return next((le for le, _ in buckets if le >= value and not math.isinf(le)), None)


def quantile(buckets: Buckets, q: float) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket that holds the rank."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper, n in buckets:
        if n >= rank:
            if math.isinf(upper):
                return lower_bound
            if n == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (n - lower_count)
        lower_bound, lower_count = upper, n
    return lower_bound


def mean(samples: Samples, name: str, **labels: str) -> tuple[float | None, int]:
    """The mean of a histogram's observations (from its ``_sum`` and ``_count``) and their number."""
    n = int(total(samples, f"{name}_count", **labels))
    if n <= 0:
        return None, 0
    return total(samples, f"{name}_sum", **labels) / n, n


def psi(expected: Buckets, actual: Buckets, eps: float = 1e-4) -> float | None:
    """Population stability index between two cumulative histograms with the same buckets."""
    if not expected or not actual or expected[-1][1] <= 0 or actual[-1][1] <= 0:
        return None

    def shares(buckets: Buckets) -> list[float]:
        counts = [c - p for (_, c), (_, p) in zip(buckets, [(0.0, 0.0), *buckets[:-1]], strict=True)]
        n = sum(counts)
        return [max(c / n, eps) for c in counts]

    e, a = shares(expected), shares(actual)
    return float(sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a, strict=True)))
