"""Judging a rollout step: the challenger against the champion serving the same traffic in the
same window, from two scrapes of the serving application's ``/metrics`` (``scrape``).

On two busy cores, load slows both models alike, so every limit that a busy machine can break
is either relative to the champion measured at the same moment or a service SLO that fails the
step only when the challenger is the one making it worse. A relative check fails only when the
difference is larger than its slack *and*, where both samples hold ``rollout.judge.min_sample``
observations, larger than chance (``stats``: one-sided Fisher exact test at ``alpha``); a step
too small to test is decided by the slack alone. Every check records its sample sizes and
p-value, which the rollout record and the history page show.

- **error_rate**: the challenger's failed calls (answered by the champion, or, in shadow, only
  counted) over its calls, against the champion's failed calls over its own, plus
  ``error_rate_slack``. **service_error_rate** (SLO): failed scoring requests over all of them
  at most ``max_error_rate``, or else the challenger's errors are not the cause.
- **model_latency_vs_champion**: the challenger's model-call p99 at most ``max_latency_ratio`` x
  the champion's + ``latency_slack_ms``; the test compares the shares of calls slower than the
  bucket that holds the champion's p99. Model calls rather than request latency, because both
  slots' calls of one batch finish together (a slow challenger slows the champion's requests in
  the same batch too). **p99_latency_ms** (SLO): the live routes' request-to-prediction p99 at
  most ``max_p99_ms``, or else the challenger is not slower than the champion (its route's
  request latency on a canary step, its model calls in shadow).
- **score_calibration** and **score_shift_psi**: see ``scores`` (why not the old PSI against any
  champion).

When the champion served too little in a step (canary at 100 %), its numbers from the latest
step where it did serve are the reference (``reference``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.rollout import scores, stats
from tasks.rollout.scrape import (
    PREFIX,
    Buckets,
    CounterReset,
    Samples,
    above,
    count,
    delta,
    histogram,
    mean,
    merged,
    quantile,
    total,
)
from tasks.rollout.stats import Check

if TYPE_CHECKING:
    from config import RolloutJudge

__all__ = [
    "Check",
    "CounterReset",
    "Measure",
    "Samples",
    "Side",
    "checks",
    "delta",
    "failed",
    "measure",
    "total",
]

CHAMPION, CHALLENGER, SHADOW = "champion", "challenger", "shadow"
LIVE_ROUTES = (CHAMPION, CHALLENGER)


@dataclass
class Side:
    """One model's numbers over a step."""

    version: str | None
    calls: int
    """Predictions answered plus calls that failed."""
    errors: int
    scores: Buckets = field(default_factory=list)
    score_mean: float | None = None
    model_latency: Buckets = field(default_factory=list)
    """Model-call round trips, one per batch (``stage_latency_seconds``)."""
    latency: Buckets = field(default_factory=list)
    """Request-to-prediction latency on the model's route."""

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    def p99_ms(self, which: str = "latency") -> float | None:
        q = quantile(getattr(self, which), 0.99)
        return None if q is None else round(q * 1000.0, 3)


@dataclass
class Measure:
    """What one step showed: the challenger, the champion in the same window, the service."""

    route: str
    challenger: Side
    champion: Side
    service_requests: int
    service_failed: int
    service_latency: Buckets
    champion_from_reference: bool = False
    """The champion served too little in this step: its side is an earlier step's."""

    @property
    def version(self) -> str | None:
        return self.challenger.version

    @property
    def requests(self) -> int:
        return self.challenger.calls

    @property
    def errors(self) -> int:
        return self.challenger.errors

    @property
    def error_rate(self) -> float:
        return self.challenger.error_rate

    @property
    def p99_ms(self) -> float | None:
        return self.challenger.p99_ms()

    @property
    def service_p99_ms(self) -> float | None:
        q = quantile(self.service_latency, 0.99)
        return None if q is None else round(q * 1000.0, 3)

    @property
    def score_psi(self) -> float | None:
        return scores.shift(self.champion.scores, self.challenger.scores)

    def summary(self) -> dict[str, Any]:
        """The step's numbers and sample sizes, as the rollout record keeps them."""
        ch, cp = self.challenger, self.champion
        return {
            "route": self.route,
            "version": ch.version,
            "champion_version": cp.version,
            "requests": ch.calls,
            "errors": ch.errors,
            "error_rate": round(ch.error_rate, 6),
            "champion_requests": cp.calls,
            "champion_errors": cp.errors,
            "champion_error_rate": round(cp.error_rate, 6),
            "champion_from_reference": self.champion_from_reference,
            "p99_ms": self.p99_ms,
            "champion_p99_ms": cp.p99_ms(),
            "model_p99_ms": ch.p99_ms("model_latency"),
            "champion_model_p99_ms": cp.p99_ms("model_latency"),
            "model_calls": count(ch.model_latency),
            "champion_model_calls": count(cp.model_latency),
            "service_requests": self.service_requests,
            "service_failed": self.service_failed,
            "service_p99_ms": self.service_p99_ms,
            "score_mean": _round(ch.score_mean),
            "champion_score_mean": _round(cp.score_mean),
            "score_psi": _round(self.score_psi),
        }


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _requests(samples: Samples) -> tuple[int, int]:
    """Scoring requests (``/score``, ``/score/batch``) and those that failed (5xx)."""
    n = failed = 0
    for (name, labels), v in samples.items():
        d = dict(labels)
        if name != f"{PREFIX}_requests_total" or not d.get("endpoint", "").startswith("score"):
            continue
        n += int(v)
        failed += int(v) if d.get("code", "").startswith("5") else 0
    return n, failed


def _side(samples: Samples, route: str, version: str | None, slot: str, errors: int) -> Side:
    m = PREFIX
    on = {"route": route, **({"model_version": version} if version else {})}
    score_mean, _ = mean(samples, f"{m}_score", **on)
    return Side(
        version=version,
        calls=int(total(samples, f"{m}_predictions_total", **on)) + errors,
        errors=errors,
        scores=histogram(samples, f"{m}_score", **on),
        score_mean=score_mean,
        model_latency=histogram(samples, f"{m}_stage_latency_seconds", stage=f"model_{slot}"),
        latency=histogram(samples, f"{m}_prediction_latency_seconds", **on),
    )


def measure(
    samples: Samples,
    *,
    route: str,
    version: str,
    champion_version: str | None,
    reference: Mapping[str, Any] | None = None,
    min_sample: int = 20,
) -> Measure:
    """The step's numbers over a scrape delta; the challenger on ``route`` (``challenger`` or
    ``shadow``). ``reference``: the champion's side from an earlier step (``reference()``), used
    when the champion served fewer than ``min_sample`` requests in this one."""
    m = PREFIX
    kind = SHADOW if route == SHADOW else "fallback"
    challenger = _side(
        samples, route, version, CHALLENGER, int(total(samples, f"{m}_errors_total", kind=kind, route=route))
    )
    champion_errors = int(total(samples, f"{m}_errors_total", route=CHAMPION))
    champion = _side(samples, CHAMPION, champion_version, CHAMPION, champion_errors)
    kept = _side_from(reference, champion_version)
    from_reference = champion.calls < min_sample and kept is not None
    if kept is not None and from_reference:
        champion = kept
    requests, failed = _requests(samples)
    live = [histogram(samples, f"{m}_prediction_latency_seconds", route=r) for r in LIVE_ROUTES]
    return Measure(route, challenger, champion, requests, failed, merged(*live), from_reference)


def _side_from(reference: Mapping[str, Any] | None, version: str | None) -> Side | None:
    """The champion's side kept by an earlier step (None: none, or one an older judge kept)."""
    if not reference or "calls" not in reference:
        return None
    fields = ("calls", "errors", "scores", "score_mean", "model_latency", "latency")
    kept = {k: reference[k] for k in fields if k in reference}
    for k in ("scores", "model_latency", "latency"):  # JSON gives lists back for the pairs
        kept[k] = [(float(le), float(c)) for le, c in kept.get(k, [])]
    return Side(version=version, **kept)


def reference(m: Measure, min_sample: int = 20) -> dict[str, Any] | None:
    """The champion's side of a step, kept for later steps where it serves too little."""
    if m.champion_from_reference or m.champion.calls < min_sample:
        return None
    side = asdict(m.champion)
    side.pop("version")
    return side


def checks(m: Measure, judge: RolloutJudge, base_rate: scores.BaseRate | None = None) -> list[Check]:
    """Every check of a measured step, held to ``rollout.judge``; ``base_rate``: the observed
    fraud rate the scores are held to (None: unknown)."""
    errors = error_check(m, judge)
    model = model_latency_check(m, judge)
    return [
        errors,
        _service_error_check(m, judge, errors),
        *([model] if model else []),
        _service_latency_check(m, judge, model),
        scores.calibration_check(m.challenger.score_mean, m.challenger.calls, base_rate, judge),
        scores.shift_check(m.champion.scores, m.challenger.scores, base_rate, judge),
    ]


def error_check(m: Measure, judge: RolloutJudge) -> Check:
    """The challenger's error rate against the champion's, same window."""
    ch, cp = m.challenger, m.champion
    test = stats.compare(ch.errors, ch.calls, cp.errors, cp.calls, min_sample=judge.min_sample)
    limit = round(cp.error_rate + judge.error_rate_slack, 6)
    worse = ch.error_rate > limit and test.significant(judge.alpha)
    return Check(
        "error_rate",
        not worse,
        round(ch.error_rate, 6),
        limit,
        f"{ch.errors} of {ch.calls} challenger calls failed, {cp.errors} of {cp.calls} champion calls "
        f"(+ {judge.error_rate_slack:g}){_p(test)}",
        samples=test.as_dict(),
    )


def _service_error_check(m: Measure, judge: RolloutJudge, errors: Check) -> Check:
    rate = m.service_failed / m.service_requests if m.service_requests else 0.0
    slo = rate <= judge.max_error_rate
    cause = "the challenger's errors add to it" if not errors.passed else "not the challenger's doing"
    why = "within the SLO" if slo else cause
    return Check(
        "service_error_rate",
        slo or errors.passed,
        round(rate, 6),
        judge.max_error_rate,
        f"{m.service_failed} of {m.service_requests} scoring requests failed: {why}",
        samples={"n": m.service_requests, "failed": m.service_failed},
    )


def _p(test: stats.Comparison) -> str:
    if test.p_value is None:
        return "; too few to test"
    return f"; one-sided Fisher p={test.p_value:.3g}"


def slower(ch: Buckets, cp: Buckets, judge: RolloutJudge, what: str) -> Check | None:
    """``ch``'s p99 against ``cp``'s x ratio + slack, tested on the shares of observations above
    the bucket that holds ``cp``'s p99 (None: either histogram is empty)."""
    p_ch, p_cp = quantile(ch, 0.99), quantile(cp, 0.99)
    if p_ch is None or p_cp is None:
        return None
    limit = p_cp * judge.max_latency_ratio + judge.latency_slack_ms / 1000.0
    bound = next((le for le, _ in cp if le >= p_cp), cp[-1][0])
    slow = [above(h, bound) for h in (ch, cp)]
    test = stats.compare(slow[0], count(ch), slow[1], count(cp), min_sample=judge.min_sample)
    worse = p_ch > limit and test.significant(judge.alpha)
    return Check(
        what,
        not worse,
        round(p_ch * 1000.0, 3),
        round(limit * 1000.0, 3),
        f"p99 {p_ch * 1000:.1f} ms vs the champion's {p_cp * 1000:.1f} ms x {judge.max_latency_ratio:g} "
        f"+ {judge.latency_slack_ms:g} ms; {slow[0]} of {count(ch)} vs {slow[1]} of {count(cp)} "
        f"above {bound * 1000:g} ms{_p(test)}",
        samples=test.as_dict(),
    )


def model_latency_check(m: Measure, judge: RolloutJudge) -> Check | None:
    return slower(m.challenger.model_latency, m.champion.model_latency, judge, "model_latency_vs_champion")


def _service_latency_check(m: Measure, judge: RolloutJudge, model: Check | None) -> Check:
    p99 = m.service_p99_ms
    slo = p99 is None or p99 <= judge.max_p99_ms
    if m.route == SHADOW:
        blame, whose = model, "its model calls"
    else:
        blame = slower(m.challenger.latency, m.champion.latency, judge, "route_latency")
        whose = "its route's request latency"
    # nothing to compare with (no champion traffic in this step or before): the SLO decides alone
    worse = blame is None or not blame.passed
    cause = (
        f"the challenger is slower ({whose})" if blame is not None and worse else "load, not the challenger"
    )
    if blame is None:
        cause = "no champion traffic to compare with"
    verdict = "within the SLO" if slo else cause
    return Check(
        "p99_latency_ms",
        slo or not worse,
        p99,
        judge.max_p99_ms,
        f"service request-to-prediction p99, live routes: {verdict}"
        + (f"; {blame.detail}" if blame is not None and not slo else ""),
        samples={"n": count(m.service_latency), **({"blame": blame.samples} if blame else {})},
    )


def failed(found: list[Check]) -> str | None:
    """One sentence naming every failed check, or None."""
    bad = [c for c in found if c.judged and not c.passed]
    if not bad:
        return None
    return "; ".join(f"{c.name} {c.value} vs limit {c.limit} ({c.detail})" for c in bad)
