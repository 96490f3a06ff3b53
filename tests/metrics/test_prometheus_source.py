"""The rollout judge's Prometheus source against a real Prometheus scraping two stand-in serving
replicas built with the real ``tasks.serving.metrics`` registry: the sums over replicas in the
shape of ``ServingClient.metrics()``, a judge delta equal to what both replicas gained, and a
replica that restarts read as a restart (``CounterReset``)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tasks.rollout import judge
from tasks.rollout.prometheus_source import PrometheusSource, step_metrics
from tasks.rollout.scrape import Key
from tests.metrics.prom import Replica, poll, prometheus

GROWING = ("_total", "_bucket", "_count", "_sum")


def served(replica: Replica) -> dict[Key, float]:
    """What ``ServingClient.metrics()`` reads from one replica alone (its counters and histograms)."""
    out = {}
    for family in text_string_to_metric_families(replica.metrics.render().decode()):
        for s in family.samples:
            if s.name.endswith(GROWING):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def summed(*replicas: Replica) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for replica in replicas:
        for key, value in served(replica).items():
            out[key] = out.get(key, 0.0) + value
    return out


def traffic(replica: Replica, n: int, version: str = "3") -> None:
    m = replica.metrics
    m.requests.labels("score", "200").inc(n)
    m.requests.labels("score", "503").inc(1)
    m.errors.labels("score", "features", "").inc(1)  # an empty label: Prometheus drops it
    for i in range(n):
        route = "challenger" if i % 4 == 0 else "champion"
        m.predictions.labels("score", route, version).inc()
        m.prediction_latency.labels("score", route, version).observe(0.004 + 0.001 * (i % 7))
        m.scores.labels(route, version).observe((i % 10) / 10)
        m.stage_latency.labels(f"model_{route}").observe(0.002)


def growing(samples: dict[Key, float]) -> dict[Key, float]:
    return {k: v for k, v in samples.items() if k[0].endswith(GROWING)}


def test_the_prometheus_source_sums_every_replica_like_the_serving_metrics(tmp_path, settings):
    r1, r2 = Replica("ingress-a"), Replica("ingress-b")
    try:
        traffic(r1, 40)
        traffic(r2, 24)
        for r in (r1, r2):
            r.metrics.record_traffic(0.1, shadow=False)
        with prometheus(tmp_path, [r1.target, r2.target]) as url:
            source = PrometheusSource(url)
            want = summed(r1, r2)
            before = poll("both replicas in Prometheus", lambda: _when(source, want))
            assert growing(before) == want  # same keys (the empty route label too), same values
            assert before[("airloop_serving_challenger_weight", ())] == 0.1, "a gauge is not summed"

            traffic(r1, 12)
            traffic(r2, 20)
            after = poll("the new counts in Prometheus", lambda: _when(source, summed(r1, r2)))
            gained = judge.delta(after, before)
            assert gained == {k: v - want.get(k, 0.0) for k, v in summed(r1, r2).items()}
            challenger = judge.total(gained, "airloop_serving_predictions_total", route="challenger")
            assert challenger == 3 + 5  # every 4th of 12 and of 20
            m = judge.measure(gained, route="challenger", version="3", champion_version="3")
            assert m.requests == 8 and m.champion.calls == 24

            rollout = settings.rollout.model_copy(
                update={"metrics_source": "prometheus", "prometheus_url": url}
            )
            via_settings = step_metrics(settings.model_copy(update={"rollout": rollout}), client=None)
            assert growing(via_settings) == growing(after)

            r2.close()  # replica b restarts: a new id, nothing counted yet
            r2 = Replica("ingress-c")
            _rescrape(tmp_path, url, r1, r2)
            restarted = poll("the restart in Prometheus", lambda: _when(source, summed(r1, r2)))
            with pytest.raises(judge.CounterReset, match="restarted"):
                judge.delta(restarted, after)
    finally:
        r1.close()
        r2.close()


def _when(source: PrometheusSource, want: dict[Key, float]) -> dict[Key, float] | None:
    got = source.metrics()
    return got if growing(got) == want else None


def _rescrape(tmp_path, url, *replicas: Replica) -> None:
    """Point the running Prometheus at ``replicas`` (a restarted replica listens elsewhere)."""
    import requests
    import yaml

    path = tmp_path / "prometheus.yml"
    config = yaml.safe_load(path.read_text())
    config["scrape_configs"][0]["static_configs"] = [{"targets": [r.target for r in replicas]}]
    path.write_text(yaml.safe_dump(config))
    assert requests.post(f"{url}/-/reload", timeout=10).status_code == 200
