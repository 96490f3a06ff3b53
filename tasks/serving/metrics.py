"""Prometheus metrics of the serving application (``GET /metrics``).

One registry per ingress replica (no global state, so tests and several apps in one process do
not collide). Per prediction: a count and a latency by endpoint, route and model version, and the
score distribution by route and version (what a canary judge compares against the champion).
Per request: a latency by endpoint and errors by endpoint, kind and route. Stages, batch sizes,
traffic settings and the inference log's own counters complete the picture.

With several ingress replicas, ``/metrics`` on any of them answers for the whole application:
its own counters and histograms plus the others' latest (``samples``, shared through
``control_state`` every ``serving.control_poll_seconds``), summed (``render_merged``). A replica
that dies drops out of the sums, so the counters go down, as they did with one replica that
restarted (what the rollout judge reads as a restart). Gauges are this replica's own.

A Prometheus server scrapes ``/metrics?scope=replicas`` instead (``render_replicas``): every live
replica's counters and histograms as that replica last reported them to the others, each
labelled ``replica``, so a query sums them over replicas (``sum without (replica, instance)``)
and a scrape answered by whichever replica the proxy picked still gives every replica's series,
each one only growing. Ray Serve's proxy does not let a scraper reach one replica by address,
and ``PROMETHEUS_MULTIPROC_DIR`` is not used (below): the registry is per replica.

Values live in process memory. Feast sets ``PROMETHEUS_MULTIPROC_DIR`` when it is imported (for
its own pre-forked feature servers), and a process started after that (a Ray worker) or a
``prometheus_client`` imported after it would keep every value in a memory-mapped file shared
by pid (an increment ten times as costly, and a new process could read a dead one's counts).
This application exports its metrics from its own registry, never through a multiprocess
collector, so this module sets plain values for the process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

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
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class ServingMetrics:
    """The ingress's metrics, in one registry of its own, declared by family."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._declare_predictions()
        self._declare_requests()
        self._declare_traffic()
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
            "shadow_skipped, inference_log, internal) and route.",
            ["endpoint", "kind", "route"],
            registry=r,
        )

    def _declare_traffic(self) -> None:
        r = self.registry
        self.traffic = Counter(
            f"{PREFIX}_traffic_predictions",
            "Predictions returned by traffic (live; synthetic: X-Airloop-Traffic) and endpoint.",
            ["traffic", "endpoint"],
            registry=r,
        )
        self.log_failures = Counter(
            f"{PREFIX}_inference_log_failures",
            "Predictions and labels refused (a 503) because the inference log could not be written.",
            ["kind"],
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
            "Inference log rows by state (buffered: in the WAL, written: compacted to Parquet, "
            "replayed: of dead writers, dropped: never, with the WAL).",
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
        self.log_rows.labels("replayed").set(stats.get("rows_replayed", 0))

    def label_names(self) -> dict[str, tuple[str, ...]]:
        """Every family's name and its label names (``le`` not included)."""
        return {
            m._name: tuple(m._labelnames)  # prometheus_client keeps them there
            for m in vars(self).values()
            if isinstance(m, MetricWrapperBase)
        }

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def samples(self) -> list[list[Any]]:
        """This replica's counter and histogram samples, ``[name, labels, value]`` (what the
        other replicas add to theirs in ``render_merged``)."""
        return [
            [s.name, s.labels, s.value]
            for family in self.registry.collect()
            if family.type in SUMMED
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    def render_replicas(self, reports: Mapping[str, list[list[Any]]]) -> bytes:
        """Prometheus text with each replica's counters and histograms (``reports``: replica id
        -> its ``samples()``) labelled ``replica``, and this replica's gauges."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_PerReplica(self.registry, reports))
        return generate_latest(registry)

    def render_merged(self, others: Iterable[list[list[Any]]]) -> bytes:
        """Prometheus text of this replica's metrics with ``others``' counters and histograms added."""
        extra: dict[SampleKey, float] = {}
        for samples in others:
            for name, labels, value in samples:
                key = (name, tuple(sorted(labels.items())))
                extra[key] = extra.get(key, 0.0) + float(value)
        if not extra:
            return self.render()
        merged = CollectorRegistry(auto_describe=False)
        merged.register(_Merged(self.registry, extra))
        return generate_latest(merged)


SUMMED = ("counter", "histogram")
"""Metric types whose samples are summed over replicas."""
REPLICA_LABEL = "replica"
"""The label ``render_replicas`` gives each replica's samples."""


def _sample_names(family: str) -> set[str]:
    return {family, *(family + suffix for suffix in ("_total", "_bucket", "_count", "_sum"))}


class _PerReplica:
    """A collector: ``registry``'s gauges, and its counters and histograms with the samples every
    replica reported, each labelled with the replica's id."""

    def __init__(self, registry: CollectorRegistry, reports: Mapping[str, list[list[Any]]]):
        self.registry, self.reports = registry, reports

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if family.type not in SUMMED:
                yield family
                continue
            out = Metric(family.name, family.documentation, family.type, family.unit)
            names = _sample_names(family.name)
            for replica, samples in sorted(self.reports.items()):
                for name, labels, value in samples:
                    if name in names:
                        out.add_sample(name, {**labels, REPLICA_LABEL: replica}, float(value))
            yield out


class _Merged:
    """A collector: ``registry``'s families with ``extra`` added to their counter and histogram
    samples (a label set only another replica has is added as a new sample)."""

    def __init__(
        self, registry: CollectorRegistry, extra: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    ):
        self.registry, self.extra = registry, extra

    def collect(self) -> Iterator[Metric]:
        left = dict(self.extra)
        for family in self.registry.collect():
            if family.type not in SUMMED:
                yield family
                continue
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                key = (s.name, tuple(sorted(s.labels.items())))
                out.add_sample(s.name, s.labels, s.value + left.pop(key, 0.0))
            names = _sample_names(family.name)
            for key in [k for k in left if k[0] in names]:
                out.add_sample(key[0], dict(key[1]), left.pop(key))
            yield out
