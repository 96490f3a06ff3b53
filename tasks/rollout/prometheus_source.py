"""Where a held rollout step reads its counters: the serving application's ``/metrics``, or
Prometheus (``rollout.metrics_source``).

Prometheus scrapes every serving replica (``deploy/prometheus/``: ``/metrics?scope=replicas``,
each replica's counters labelled ``replica``, from every Ray pod that runs a Serve proxy). This
source asks its query API for every ``airloop_serving_*`` sample summed over replicas, the
copies that several scrape targets hold of one replica's series taken once (their ``max``: the
freshest), and answers in the shape of ``ServingClient.metrics()``
(``{(sample name, sorted label pairs): value}``, a label the application left empty given back
as ``""``), so ``scrape.delta`` and the judge work on it unchanged.

A replica that restarts or goes away leaves the sum, so a counter goes down between two reads:
``scrape.CounterReset``, which the judge treats as a restart of the application (the step
fails and rolls back), as it does with ``/metrics``.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import requests

from tasks.common.retry import call_with_retries, transient_http
from tasks.rollout.scrape import PREFIX, Key
from tasks.serving.metrics import REPLICA_LABEL, ServingMetrics

if TYPE_CHECKING:
    from config import Settings
    from tasks.serving.client import ServingClient

SUFFIXES = ("_total", "_bucket", "_count", "_sum")


class PrometheusError(RuntimeError):
    """Prometheus did not answer the query (down, refused it, or answered an error)."""


@cache
def _families() -> dict[str, tuple[str, ...]]:
    return ServingMetrics().label_names()


def summed_query(families: dict[str, tuple[str, ...]] | None = None) -> str:
    """PromQL: every serving sample, per replica the freshest of its scraped copies, summed over
    replicas; grouped by every label the application sets (so ``instance``, ``job``, ``pod`` and
    ``replica`` go)."""
    labels = sorted({name for names in (families or _families()).values() for name in names} | {"le"})
    by = ", ".join(["__name__", *labels])
    selector = f'{{__name__=~"{PREFIX}_.+"}}'
    return f"sum by ({by}) (max by ({by}, {REPLICA_LABEL}) ({selector}))"


def _family(name: str, families: dict[str, tuple[str, ...]]) -> str | None:
    if name in families:
        return name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return None


def samples(result: list[dict[str, Any]], families: dict[str, tuple[str, ...]]) -> dict[Key, float]:
    """The query's vector as ``ServingClient.metrics()`` gives it (unknown names are left out)."""
    out: dict[Key, float] = {}
    for item in result:
        metric = dict(item["metric"])
        name = metric.pop("__name__", "")
        family = _family(name, families)
        if family is None:
            continue
        labels = {label: metric.get(label, "") for label in families[family]}
        if name.endswith("_bucket"):
            labels["le"] = metric["le"]
        out[(name, tuple(sorted(labels.items())))] = float(item["value"][1])
    return out


class PrometheusSource:
    """``metrics()`` from a Prometheus server's ``/api/v1/query``."""

    def __init__(self, url: str, *, timeout: float = 10.0, retry_seconds: float = 0.0) -> None:
        self.url = url.rstrip("/")
        self.timeout, self.retry_seconds = timeout, retry_seconds
        self.families = _families()
        self.query = summed_query(self.families)

    def _once(self) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query"
        resp = requests.get(url, params={"query": self.query}, timeout=self.timeout)
        if resp.status_code >= 500:
            resp.raise_for_status()
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code >= 400 or body.get("status") != "success":
            raise PrometheusError(f"{url}: HTTP {resp.status_code}: {body.get('error') or resp.text[:200]}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def metrics(self) -> dict[Key, float]:
        """Every serving sample summed over the replicas, as ``ServingClient.metrics()``."""
        if self.retry_seconds > 0:
            result = call_with_retries(
                self._once,
                what=f"GET {self.url}/api/v1/query",
                retry_on=transient_http,
                deadline_s=self.retry_seconds,
            )
        else:
            result = self._once()
        return samples(result, self.families)


def step_metrics(settings: Settings, client: ServingClient) -> dict[Key, float]:
    """What a held step reads: ``client.metrics()``, or Prometheus' sums when
    ``rollout.metrics_source`` is ``prometheus``."""
    cfg = settings.rollout
    if cfg.metrics_source == "prometheus" and cfg.prometheus_url:
        source = PrometheusSource(cfg.prometheus_url, retry_seconds=settings.serving.client_retry_seconds)
        return source.metrics()
    return client.metrics()
