"""Prometheus metrics of the serving application (``GET /metrics``).

One registry per ingress replica (no global state, so tests and several apps in one process do
not collide). Per prediction: a count and a latency by endpoint, route and model version, and the
score distribution by route and version (what a canary judge compares against the champion).
Per request: a latency by endpoint and errors by endpoint, kind and route. Stages, batch sizes,
traffic settings and the inference log's own counters complete the picture.

Values live in process memory. Feast sets ``PROMETHEUS_MULTIPROC_DIR`` when it is imported (for
its own pre-forked feature servers), and a process started after that (a Ray worker) or a
``prometheus_client`` imported after it would keep every value in a memory-mapped file shared
by pid (an increment ten times as costly, and a new process could read a dead one's counts).
This application exports its metrics from its own registry, never through a multiprocess
collector, so this module sets plain values for the process.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST

values.ValueClass = values.MutexValue  # see the module docstring

LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
SCORE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
PREFIX = "airloop_serving"


class ServingMetrics:
    """The ingress's metrics, in one registry of its own, declared by family."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._declare_predictions()
        self._declare_requests()
        self._declare_stages()
        self._declare_state()

    def _declare_predictions(self) -> None:
        r = self.registry
        self.predictions = Counter(
            f"{PREFIX}_predictions",
            "Predictions returned (or, for route=shadow, logged), by endpoint, route and model version.",
            ["endpoint", "route", "model_version"],
            registry=r,
        )
        self.prediction_latency = Histogram(
            f"{PREFIX}_prediction_latency_seconds",
            "Time from a request's arrival to its prediction, by endpoint, route and model version.",
            ["endpoint", "route", "model_version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.scores = Histogram(
            f"{PREFIX}_score",
            "Fraud probabilities by route and model version.",
            ["route", "model_version"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.unknown_entities = Counter(
            f"{PREFIX}_unknown_entities",
            "Scored rows whose entity had no online features.",
            ["entity"],
            registry=r,
        )

    def _declare_requests(self) -> None:
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "code"],
            registry=r,
        )
        self.request_latency = Histogram(
            f"{PREFIX}_request_latency_seconds",
            "HTTP request latency inside the ingress, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            f"{PREFIX}_errors",
            "Errors by endpoint, kind (validation, features, model, no_model, fallback, shadow, "
            "shadow_skipped, internal) and route.",
            ["endpoint", "kind", "route"],
            registry=r,
        )

    def _declare_stages(self) -> None:
        r = self.registry
        self.stage_latency = Histogram(
            f"{PREFIX}_stage_latency_seconds",
            "Time per batch in each stage: queue (the oldest request's wait for its batch), features "
            "(the online store call), model_<slot> (the slot call, round trip), compute_<slot> (the "
            "model itself, inside the slot).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_rows", "Rows per scoring batch.", buckets=BATCH_BUCKETS, registry=r
        )

    def _declare_state(self) -> None:
        r = self.registry
        self.challenger_weight = Gauge(
            f"{PREFIX}_challenger_weight", "Share of live traffic routed to the challenger.", registry=r
        )
        self.shadow = Gauge(
            f"{PREFIX}_shadow_enabled", "1 while requests are mirrored to the challenger.", registry=r
        )
        self.slot_version = Gauge(
            f"{PREFIX}_slot_model_version",
            "Model version loaded in each slot (0 when empty).",
            ["slot"],
            registry=r,
        )
        self.log_rows = Gauge(
            f"{PREFIX}_inference_log_rows",
            "Inference log rows by state (buffered, written, dropped).",
            ["state"],
            registry=r,
        )

    def record_traffic(self, challenger_weight: float, shadow: bool) -> None:
        self.challenger_weight.set(challenger_weight)
        self.shadow.set(1 if shadow else 0)

    def record_slot(self, slot: str, version: str | None) -> None:
        self.slot_version.labels(slot).set(float(version) if version else 0.0)

    def record_log(self, stats: dict[str, Any]) -> None:
        self.log_rows.labels("buffered").set(stats["buffered"])
        self.log_rows.labels("written").set(stats["rows_written"])
        self.log_rows.labels("dropped").set(stats["rows_dropped"])

    def render(self) -> bytes:
        return generate_latest(self.registry)
