"""Every metric the Grafana dashboard and the alert rules query is one airloop exports: the
serving registry (``tasks.serving.metrics``, instantiated), the monitor's Pushgateway gauges
(``tasks.monitoring.gauges``) and the Airflow names statsd-exporter's mapping produces. Every
dashboard expression is also valid PromQL (promtool checks it as a recording rule)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from tasks.monitoring import gauges
from tasks.serving.metrics import ServingMetrics
from tests.metrics.prom import PROMETHEUS_DIR, ROOT, tool

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "airloop.json"
RULES = PROMETHEUS_DIR / "rules" / "airloop.yml"
PROMETHEUS_OWN = {"up"}
"""Series Prometheus writes itself for every scrape target (the serving-down alert reads it)."""

_WORDS = """
sum min max avg group stddev stdvar count count_values bottomk topk quantile
by without on ignoring group_left group_right offset bool and or unless atan2
abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week
day_of_year days_in_month delta deriv exp floor histogram_quantile holt_winters hour idelta
increase irate label_join label_replace ln log2 log10 minute month predict_linear rate resets
round scalar sgn sort sort_desc sqrt time timestamp vector year avg_over_time min_over_time
max_over_time sum_over_time count_over_time quantile_over_time stddev_over_time last_over_time
present_over_time stdvar_over_time inf nan
"""
PROMQL_WORDS = frozenset(_WORDS.split())
"""PromQL's aggregations, modifiers, keywords and functions: never metric names."""


def dashboard_exprs() -> list[str]:
    def walk(panels: list[dict[str, Any]]) -> list[str]:
        out = []
        for p in panels:
            out += [t["expr"] for t in p.get("targets", [])]
            out += walk(p.get("panels", []))
        return out

    return walk(json.loads(DASHBOARD.read_text())["panels"])


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [str(r["expr"]) for g in groups for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: strings, label matchers, ranges and
    grouping clauses removed, then every identifier that is not a PromQL word."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set(re.findall(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {n for n in names if n not in PROMQL_WORDS}


def serving_names() -> set[str]:
    """Every sample name the real serving registry exposes (one child per labelled family)."""
    m = ServingMetrics()
    for metric in vars(m).values():
        if isinstance(metric, MetricWrapperBase):
            names = m.label_names()[metric._name]
            child = metric.labels(*["x"] * len(names)) if names else metric
            (
                child.inc
                if hasattr(child, "inc")
                else child.observe
                if hasattr(child, "observe")
                else child.set
            )(1)
    return {s.name for family in m.registry.collect() for s in family.samples}


def statsd_names() -> set[str]:
    mapping = yaml.safe_load((PROMETHEUS_DIR / "statsd-mapping.yml").read_text())
    out = set()
    for rule in mapping["mappings"]:
        if rule.get("match_metric_type") == "observer":
            out |= {rule["name"] + s for s in ("_bucket", "_count", "_sum")}
        else:
            out.add(rule["name"])
    return out


def exported() -> set[str]:
    return serving_names() | set(gauges.GAUGES) | statsd_names()


def test_the_extractor_finds_metrics_and_skips_functions_labels_and_durations():
    expr = (
        'sum by (le, route) (rate(a_b_total{route=~"x|y", le="0.5"}[5m])) / on (route) '
        "group_left () max without (instance) (c_d offset 30m) > bool 0.5 or absent(e)"
    )
    assert metric_names(expr) == {"a_b_total", "c_d", "e"}


def test_the_serving_names_come_from_the_real_registry():
    names = serving_names()
    assert "airloop_serving_requests_total" in names
    assert "airloop_serving_prediction_latency_seconds_bucket" in names
    assert "airloop_serving_challenger_weight" in names
    assert "airloop_serving_requests" not in names  # a family name, never a sample


def test_every_metric_the_dashboard_and_the_alerts_query_is_exported():
    known = exported()
    for where, exprs, extra in (
        ("dashboard", dashboard_exprs(), set()),
        ("rules", rule_exprs(), PROMETHEUS_OWN),
    ):
        assert exprs
        for expr in exprs:
            names = metric_names(expr)
            assert names, f"{where}: no metric found in {expr!r}"
            unknown = names - known - extra
            assert not unknown, f"{where}: {sorted(unknown)} in {expr!r} is not exported"


def test_the_dashboard_shows_what_the_issue_asks_for():
    queried = set().union(*(metric_names(e) for e in dashboard_exprs()))
    exprs = "\n".join(dashboard_exprs())
    assert {
        "airloop_serving_requests_total",
        "airloop_serving_predictions_total",
        "airloop_serving_prediction_latency_seconds_bucket",
        "airloop_serving_errors_total",
        "airloop_serving_challenger_weight",
        "airloop_monitor_drift_share",
        "airloop_monitor_live_roc_auc",
        "airloop_monitor_retrain_triggered",
        "airloop_monitor_retrain_failed",
        "airflow_dagrun_failed_seconds_count",
    } <= queried
    assert "histogram_quantile(0.5, sum by (le, route, model_version)" in exprs
    assert "histogram_quantile(0.99, sum by (le, route, model_version)" in exprs


def test_every_panel_uses_the_provisioned_datasource():
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [ds] = source["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"]["uid"] == ds["uid"] for p in panels)
    assert all(t["datasource"]["uid"] == ds["uid"] for p in panels for t in p["targets"])
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "airloop.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_dashboard_expression_is_valid_promql(tmp_path: Path):
    exprs = [e.replace("$__rate_interval", "5m") for e in dashboard_exprs()]
    group = {
        "name": "dashboard",
        "rules": [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(exprs)],
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump({"groups": [group]}))
    out = subprocess.run(
        [tool("promtool"), "check", "rules", str(tmp_path / "dashboard.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
