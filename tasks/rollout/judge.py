"""Judging a rollout step from the serving application's ``/metrics``.

A step is measured as the difference of two scrapes of the Prometheus counters and histograms,
so it sees exactly the requests served while the step held, whatever ran before. The challenger
is compared with the champion serving the same traffic at the same moment:

- **error rate**: challenger calls that failed (their requests were served by the champion, or,
  in shadow, only counted) over all the challenger's calls;
- **latency**: the challenger route's request-to-prediction p99 against an absolute limit, and the
  challenger's model-call p99 against the champion's (``ratio x champion + slack``). Model calls
  are compared rather than request latency because both slots' calls of one batch finish
  together, so a slow challenger slows the champion's requests in the same batch too;
- **score shift**: the PSI between the challenger's and the champion's score histograms.

When the champion served nothing in a step (canary at 100 %), its numbers from the latest step
where it did serve are the reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config import RolloutJudge

PREFIX = "airloop_serving"
Samples = Mapping[tuple[str, tuple[tuple[str, str], ...]], float]
"""``ServingClient.metrics()``: ``{(sample name, sorted label pairs): value}``."""

CHAMPION, CHALLENGER, SHADOW = "champion", "challenger", "shadow"


def delta(after: Samples, before: Samples) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What the counters and histograms gained between two scrapes.

    Raises ``CounterReset`` when a counter went down: the application restarted in between, so
    the step's numbers are unknown (and the challenger's traffic state with them).
    """
    out = {}
    for key, value in after.items():
        name = key[0]
        if not (name.endswith("_total") or name.endswith("_bucket") or name.endswith("_count")):
            continue
        gained = value - before.get(key, 0.0)
        if gained < 0:
            raise CounterReset(f"{name} went from {before[key]} to {value}: the application restarted")
        out[key] = gained
    return out


class CounterReset(RuntimeError):
    pass


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over every sample whose labels include ``labels``."""
    want = labels.items()
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= dict(lbls).items())


def histogram(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
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


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket that holds the rank."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower_bound
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper, count
    return lower_bound


def psi(
    expected: list[tuple[float, float]], actual: list[tuple[float, float]], eps: float = 1e-4
) -> float | None:
    """Population stability index between two cumulative histograms with the same buckets."""
    if not expected or not actual or expected[-1][1] <= 0 or actual[-1][1] <= 0:
        return None

    def shares(buckets: list[tuple[float, float]]) -> list[float]:
        counts = [c - p for (_, c), (_, p) in zip(buckets, [(0.0, 0.0), *buckets[:-1]], strict=True)]
        n = sum(counts)
        return [max(c / n, eps) for c in counts]

    e, a = shares(expected), shares(actual)
    return float(sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a, strict=True)))


@dataclass
class Measure:
    """What one step showed, challenger against champion."""

    route: str
    version: str
    champion_version: str | None
    requests: int
    errors: int
    champion_requests: int
    p99_ms: float | None
    model_p99_ms: float | None
    champion_model_p99_ms: float | None
    score_psi: float | None
    champion_scores: list[tuple[float, float]] = field(default_factory=list)
    champion_model_latency: list[tuple[float, float]] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("champion_scores")
        out.pop("champion_model_latency")
        out["error_rate"] = round(self.error_rate, 6)
        return out


def measure(
    samples: Samples,
    *,
    route: str,
    version: str,
    champion_version: str | None,
    reference: Mapping[str, Any] | None = None,
) -> Measure:
    """The challenger's numbers on ``route`` (``challenger`` or ``shadow``) over a scrape delta.

    ``reference``: the champion's histograms from an earlier step (``Measure.reference()``),
    used when the champion served too little in this one.
    """
    m = PREFIX
    served = int(total(samples, f"{m}_predictions_total", route=route, model_version=version))
    error_kind = "shadow" if route == SHADOW else "fallback"
    errors = int(total(samples, f"{m}_errors_total", kind=error_kind, route=route))
    champ = {"route": CHAMPION, **({"model_version": champion_version} if champion_version else {})}
    champion_requests = int(total(samples, f"{m}_predictions_total", **champ))

    champion_scores = histogram(samples, f"{m}_score", **champ)
    champion_model = histogram(samples, f"{m}_stage_latency_seconds", stage=f"model_{CHAMPION}")
    if champion_requests < 20 and reference:
        champion_scores = [tuple(b) for b in reference.get("scores", [])]
        champion_model = [tuple(b) for b in reference.get("model_latency", [])]

    p99 = quantile(
        histogram(samples, f"{m}_prediction_latency_seconds", route=route, model_version=version), 0.99
    )
    model_p99 = quantile(histogram(samples, f"{m}_stage_latency_seconds", stage=f"model_{CHALLENGER}"), 0.99)
    champion_model_p99 = quantile(champion_model, 0.99)
    score_psi = psi(champion_scores, histogram(samples, f"{m}_score", route=route, model_version=version))
    return Measure(
        route=route,
        version=version,
        champion_version=champion_version,
        requests=served + errors,
        errors=errors,
        champion_requests=champion_requests,
        p99_ms=None if p99 is None else round(p99 * 1000.0, 3),
        model_p99_ms=None if model_p99 is None else round(model_p99 * 1000.0, 3),
        champion_model_p99_ms=None if champion_model_p99 is None else round(champion_model_p99 * 1000.0, 3),
        score_psi=None if score_psi is None else round(score_psi, 6),
        champion_scores=champion_scores,
        champion_model_latency=champion_model,
    )


def reference(m: Measure) -> dict[str, Any] | None:
    """The champion's histograms of a step, kept for later steps where it serves too little."""
    if m.champion_requests < 20:
        return None
    return {"scores": m.champion_scores, "model_latency": m.champion_model_latency}


@dataclass
class Check:
    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def checks(m: Measure, judge: RolloutJudge) -> list[Check]:
    """Every check of a measured step, held to ``rollout.judge``."""
    out = [
        Check(
            "error_rate",
            m.error_rate <= judge.max_error_rate,
            round(m.error_rate, 6),
            judge.max_error_rate,
            f"{m.errors} of {m.requests} challenger calls failed",
        )
    ]
    if m.p99_ms is not None:
        out.append(
            Check(
                "p99_latency_ms",
                m.p99_ms <= judge.max_p99_ms,
                m.p99_ms,
                judge.max_p99_ms,
                f"challenger ({m.route}) request-to-prediction p99",
            )
        )
    if m.model_p99_ms is not None and m.champion_model_p99_ms is not None:
        limit = round(m.champion_model_p99_ms * judge.max_latency_ratio + judge.latency_slack_ms, 3)
        out.append(
            Check(
                "model_latency_vs_champion",
                m.model_p99_ms <= limit,
                m.model_p99_ms,
                limit,
                f"model-call p99 {m.model_p99_ms} ms vs the champion's {m.champion_model_p99_ms} ms "
                f"x {judge.max_latency_ratio} + {judge.latency_slack_ms} ms",
            )
        )
    if m.score_psi is not None:
        out.append(
            Check(
                "score_shift_psi",
                m.score_psi <= judge.max_score_psi,
                m.score_psi,
                judge.max_score_psi,
                "PSI of the challenger's score histogram against the champion's",
            )
        )
    return out


def failed(found: list[Check]) -> str | None:
    """One sentence naming every failed check, or None."""
    bad = [c for c in found if not c.passed]
    if not bad:
        return None
    return "; ".join(f"{c.name} {c.value} > {c.limit} ({c.detail})" for c in bad)
