"""The alert thresholds are config's: the rollout judge's service SLOs and the monitor's drift
share threshold, in both profiles (an alert that disagrees with the judge pages on what a
rollout passes, or stays quiet on what it rolls back)."""

from __future__ import annotations

import re

import pytest
import yaml

from config import read_config
from tests.metrics.prom import PROMETHEUS_DIR

RULES = PROMETHEUS_DIR / "rules" / "airloop.yml"


def alert_expr(name: str) -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    [expr] = [r["expr"] for g in groups for r in g["rules"] if r.get("alert") == name]
    return str(expr)


def threshold(name: str) -> tuple[str, float]:
    """The comparison that ends the alert's expression: operator and number."""
    m = re.search(r"(>=|<=|==|>|<)\s*([0-9.]+)\s*$", alert_expr(name).strip())
    assert m, f"{name}: the expression does not end in a comparison with a number"
    return m.group(1), float(m.group(2))


@pytest.mark.parametrize("profile", ["local", "production"])
def test_alert_thresholds_equal_the_config(profile):
    cfg = read_config(profile, {"POSTGRES_PASSWORD": "x"})
    assert threshold("AirloopServingErrorRate") == (">", cfg.rollout.judge.max_error_rate)
    assert threshold("AirloopServingP99Latency") == (">", cfg.rollout.judge.max_p99_ms / 1000.0)
    # a window is data drift at share >= threshold (tasks.monitoring.results.DriftResult)
    assert threshold("AirloopDataDrift") == (">=", cfg.monitor.drift.share_threshold)


def test_the_slo_alerts_read_what_the_judge_reads():
    """The judge's service error rate counts 5xx of the scoring endpoints; its p99 is live
    request-to-prediction latency on the champion and challenger routes."""
    errors = alert_expr("AirloopServingErrorRate")
    assert 'endpoint=~"score.*", code=~"5.."' in errors and "airloop_serving_requests_total" in errors
    p99 = alert_expr("AirloopServingP99Latency")
    assert "histogram_quantile(0.99" in p99
    assert 'airloop_serving_prediction_latency_seconds_bucket{route=~"champion|challenger"}' in p99
