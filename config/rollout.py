"""The rollout section: shadow and canary steps, and what the judge holds a challenger to."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from config.base import Section


class RolloutStep(Section):
    """One traffic step of a rollout: held until both ``hold_seconds`` have passed and the
    challenger has answered ``min_requests``, then judged."""

    weight: float = Field(gt=0, le=1)
    hold_seconds: float = Field(300.0, ge=0)
    min_requests: int = Field(200, ge=1)

    @property
    def name(self) -> str:
        """The step's name in the rollout record and its task id in the deploy DAG."""
        return f"canary_{round(self.weight * 100)}"


class RolloutShadow(Section):
    enabled: bool = True
    hold_seconds: float = Field(300.0, ge=0)
    min_requests: int = Field(200, ge=1)


class RolloutJudge(Section):
    """What a challenger must show at every step, measured on ``/metrics`` over the step against
    the champion serving the same traffic in the same window (see ``tasks.rollout.judge``).

    A relative check fails only when the difference is both larger than its slack and, where both
    samples hold ``min_sample`` observations, larger than chance (one-sided Fisher exact test at
    ``alpha``). The absolute limits are service SLOs: a step fails on them only when the
    challenger makes the service worse."""

    max_error_rate: float = Field(0.01, ge=0, le=1)
    """Service SLO: failed scoring requests (5xx) over all scoring requests in the step."""
    error_rate_slack: float = Field(0.01, ge=0, le=1)
    """The challenger's error rate may exceed the champion's by this much."""
    max_p99_ms: float = Field(250.0, gt=0)
    """Service SLO: p99 of live request-to-prediction latency, champion and challenger together."""
    max_latency_ratio: float = Field(2.0, ge=1)
    latency_slack_ms: float = Field(10.0, ge=0)
    """Relative: the challenger's p99 may be at most ``ratio x champion's + slack`` (model calls;
    on a canary step the routes' request latency too, when the SLO is missed)."""
    alpha: float = Field(0.01, gt=0, lt=1)
    """Significance level of the one-sided tests."""
    min_sample: int = Field(20, ge=1)
    """Groups smaller than this are not tested: the slack alone decides."""
    max_score_psi: float = Field(0.2, gt=0)
    """Score histogram shift (PSI) against the champion's, same step; judged only when no fraud
    rate could be measured (otherwise calibration against it is the judge)."""
    max_calibration_ratio: float = Field(3.0, ge=1)
    """The challenger fails when its mean live score lies beyond this factor of that interval."""
    base_rate_rows: int = Field(20_000, ge=100)
    """The newest curated (labelled) transactions the fraud rate is measured on."""


class Rollout(Section):
    """The deploy DAG (``tasks.rollout``): smoke, shadow, canary steps, then promotion."""

    smoke_rows: int = Field(50, ge=1)
    """The newest curated transactions, scored on the challenger slot before it sees traffic."""
    shadow: RolloutShadow = RolloutShadow()
    canary: list[RolloutStep] = [
        RolloutStep(weight=0.1, hold_seconds=300, min_requests=200),
        RolloutStep(weight=0.5, hold_seconds=300, min_requests=500),
        RolloutStep(weight=1.0, hold_seconds=300, min_requests=500),
    ]
    max_hold_seconds: float = Field(1800.0, gt=0)
    """A step still short of ``min_requests`` by then fails: too little traffic to judge."""
    poll_seconds: float = Field(5.0, gt=0)
    """How often a held step reads ``/metrics`` (errors fail a step as soon as they are seen)."""
    judge: RolloutJudge = RolloutJudge()
    history_dir: str = "rollouts"
    """Rollout records (JSON, one per rollout), under ``storage.data_uri``."""
    ready_timeout_seconds: float = Field(300.0, gt=0)
    """How long the deploy DAG waits for the serving application to answer."""
    metrics_source: Literal["serving", "prometheus"] = "serving"
    """Where a held step reads the counters it judges (``tasks.rollout.prometheus_source``):
    ``serving``, the application's ``/metrics``; ``prometheus``, the sums over every scraped
    replica from ``prometheus_url``'s query API."""
    prometheus_url: str | None = None
    """The Prometheus server the judge queries when ``metrics_source`` is ``prometheus``."""

    @model_validator(mode="after")
    def _prometheus_has_a_url(self) -> Rollout:
        if self.metrics_source == "prometheus" and not self.prometheus_url:
            raise ValueError("rollout.metrics_source prometheus needs rollout.prometheus_url")
        return self

    @field_validator("canary")
    @classmethod
    def _ends_at_full_traffic(cls, steps: list[RolloutStep]) -> list[RolloutStep]:
        weights = [s.weight for s in steps]
        if weights != sorted(weights):
            raise ValueError(f"canary weights must not decrease: {weights}")
        return steps
