"""What Prometheus scrapes from serving (``/metrics?scope=replicas``): every replica's counters
and histograms, labelled by replica, and the answering replica's gauges once."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tasks.serving.metrics import REPLICA_LABEL, ServingMetrics


def parsed(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_each_replica_s_counters_carry_its_id_and_gauges_are_the_answering_replica_s():
    a, b = ServingMetrics(), ServingMetrics()
    a.requests.labels("score", "200").inc(3)
    b.requests.labels("score", "200").inc(4)
    b.prediction_latency.labels("score", "champion", "2").observe(0.004)
    a.record_traffic(0.5, shadow=True)
    b.record_traffic(0.1, shadow=False)  # b's gauges are not in a's answer

    got = parsed(a.render_replicas({"ingress-a": a.samples(), "ingress-b": b.samples()}))

    req = "airloop_serving_requests_total"
    assert got[(req, (("code", "200"), ("endpoint", "score"), (REPLICA_LABEL, "ingress-a")))] == 3
    assert got[(req, (("code", "200"), ("endpoint", "score"), (REPLICA_LABEL, "ingress-b")))] == 4
    assert not any(name == req and REPLICA_LABEL not in dict(lbls) for name, lbls in got)
    count = "airloop_serving_prediction_latency_seconds_count"
    by_replica = {dict(lbls)[REPLICA_LABEL]: v for (name, lbls), v in got.items() if name == count}
    assert by_replica == {"ingress-b": 1}
    assert got[("airloop_serving_challenger_weight", ())] == 0.5
    assert got[("airloop_serving_shadow_enabled", ())] == 1
    assert not any(name.endswith("_created") for name, _ in got)
