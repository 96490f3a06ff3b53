"""Prometheus ``/metrics``: counts, errors and latency histograms per model version and route."""

from __future__ import annotations

import time

import pytest
import requests

from tests.serving.conftest import PLACEMENTS

pytestmark = pytest.mark.slow  # the session's Ray Serve app takes a minute or more to start


def _value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.parametrize("client", PLACEMENTS, indirect=True)
def test_metrics_count_predictions_errors_and_latency_per_version_and_route(client, serving_app):
    before = client.metrics()
    client.set_traffic(challenger_weight=0.5)
    preds = client.score_batch([serving_app.transaction(i) for i in range(200)])
    client.score(serving_app.transaction(3))
    requests.post(f"{client.url}/score", json={"amount": -1}, timeout=30)  # a validation error
    after = client.metrics()

    by_route = {r: sum(p["route"] == r for p in preds) for r in ("champion", "challenger")}
    for route, version in (("champion", "1"), ("challenger", "2")):
        name = "airloop_serving_predictions_total"
        grown = _value(after, name, endpoint="score_batch", route=route, model_version=version) - _value(
            before, name, endpoint="score_batch", route=route, model_version=version
        )
        assert grown == by_route[route]
        count = "airloop_serving_prediction_latency_seconds_count"
        labels = {"endpoint": "score_batch", "route": route, "model_version": version}
        assert _value(after, count, **labels) - _value(before, count, **labels) == by_route[route]
        bucket = _value(after, "airloop_serving_prediction_latency_seconds_bucket", le="+Inf", **labels)
        assert bucket == _value(after, count, **labels)
        assert _value(after, "airloop_serving_score_count", route=route, model_version=version) > 0

    errors = "airloop_serving_errors_total"
    labels = {"endpoint": "score", "kind": "validation", "route": ""}
    assert _value(after, errors, **labels) - _value(before, errors, **labels) == 1
    assert _value(after, "airloop_serving_requests_total", endpoint="score", code="422") >= 1
    assert _value(after, "airloop_serving_request_latency_seconds_count", endpoint="score_batch") >= 1
    assert _value(after, "airloop_serving_challenger_weight") == 0.5
    assert _value(after, "airloop_serving_slot_model_version", slot="champion") == 1.0
    for stage in ("queue", "features", "model_champion", "model_challenger"):
        assert _value(after, "airloop_serving_stage_latency_seconds_count", stage=stage) > 0


def test_metrics_endpoint_speaks_prometheus_text(client):
    resp = requests.get(f"{client.url}/metrics", timeout=30)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert "# TYPE airloop_serving_prediction_latency_seconds histogram" in resp.text


def _per_replica(url: str, name: str) -> list:
    from prometheus_client.parser import text_string_to_metric_families

    resp = requests.get(f"{url}/metrics", params={"scope": "replicas"}, timeout=30)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    return [s for f in text_string_to_metric_families(resp.text) for s in f.samples if s.name == name]


def test_the_per_replica_scrape_sums_to_what_the_application_counts(client, serving_app):
    """What Prometheus scrapes (``?scope=replicas``) on the real application: every series carries
    the replica it came from, and summed over replicas it comes to what ``/metrics`` counts once
    every replica has reported (a replica reports as it goes, so this converges)."""
    name = "airloop_serving_predictions_total"
    client.score_batch([serving_app.transaction(i) for i in range(20)])
    counted = sum(v for (n, _), v in client.metrics().items() if n == name)
    deadline = time.monotonic() + 60
    while True:
        per_replica = _per_replica(client.url, name)
        assert per_replica and all(s.labels.get("replica") for s in per_replica)
        summed = sum(s.value for s in per_replica)
        if summed == counted or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert summed == counted, f"per replica {summed} vs the application's {counted}"
    bad = requests.get(f"{client.url}/metrics", params={"scope": "everything"}, timeout=30)
    assert bad.status_code == 422 and "scope" in bad.text
