"""What the ingress says and keeps about every prediction: the answer each caller gets, the
Prometheus metrics (``metrics.ServingMetrics``) and the inference-log rows
(``durable_log.DurableInferenceLog``: ``log`` returns a future that resolves once the rows are
on disk; the pipeline answers only after it).

A logged row is the request as sent, every feature the model saw, the score, decision, model
version, route (``champion``, ``challenger``, ``shadow``, ``smoke``), ``traffic`` (``live`` or
``synthetic``), endpoint and latency. A shadow prediction shares the request id (and traffic) of
the live one it mirrors.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from tasks.serving.durable_log import DurableInferenceLog
from tasks.serving.logfiles import TIME, TRAFFIC
from tasks.serving.metrics import ServingMetrics
from tasks.serving.shapes import Batch, Pending, Scored, SlotScores, take

SHADOW = "shadow"


class PredictionRecorder:
    """Answers, metrics and log rows of scored batches."""

    def __init__(self, threshold: float, metrics: ServingMetrics, writer: DurableInferenceLog) -> None:
        self.threshold = threshold
        self.metrics = metrics
        self.writer = writer

    def answers(self, items: list[Pending], batch: Batch, scored: Scored) -> list[dict[str, Any]]:
        """The answer to each caller, counted in the metrics (predictions, latency, scores,
        unknown entities)."""
        m, threshold = self.metrics, self.threshold
        out = []
        counts: Counter[tuple[str, str, str]] = Counter()
        traffic: Counter[tuple[str, str]] = Counter()
        for i, it in enumerate(items):
            score, version, route = float(scored.scores[i]), scored.versions[i] or "", str(scored.routes[i])
            latency = scored.done - it.arrived
            m.prediction_latency.labels(it.endpoint, route, version).observe(latency)
            m.scores.labels(route, version).observe(score)
            counts[(it.endpoint, route, version)] += 1
            traffic[(it.traffic, it.endpoint)] += 1
            out.append(
                {
                    "request_id": it.request_id,
                    "transaction_id": it.transaction_id,
                    "score": score,
                    "decision": "fraud" if score >= threshold else "legit",
                    "threshold": threshold,
                    "model_version": version,
                    "route": route,
                    "unknown_entities": batch.unknown[i],
                    "latency_ms": round(latency * 1000.0, 3),
                }
            )
        for (endpoint, route, version), count in counts.items():
            m.predictions.labels(endpoint, route, version).inc(count)
        for (kind, endpoint), count in traffic.items():
            m.traffic.labels(kind, endpoint).inc(count)
        for entities in batch.unknown:
            for entity in entities:
                m.unknown_entities.labels(entity).inc()
        return out

    def log(
        self, items: list[Pending], batch: Batch, scored: Scored, rows: np.ndarray | None = None
    ) -> asyncio.Future[None]:
        """Append the batch's predictions (or those of its ``rows``) to the inference log; the
        future resolves once they are on disk (``wal.WalUnavailable`` if they cannot be: counted)."""
        columns = batch.columns if rows is None else take(batch.columns, rows)
        chosen = items if rows is None else [items[i] for i in rows]
        first = {
            "request_id": [it.request_id for it in chosen],
            TIME: pd.Timestamp.now(tz="UTC"),
            "endpoint": [it.endpoint for it in chosen],
            "route": list(scored.routes),
            "model_version": scored.versions,
            "score": scored.scores,
            "decision": np.where(scored.scores >= self.threshold, "fraud", "legit"),
            "threshold": self.threshold,
            "latency_ms": [(scored.done - it.arrived) * 1000.0 for it in chosen],
            TRAFFIC: [it.traffic for it in chosen],
        }
        future = self.writer.predictions({**first, **columns}, len(chosen))
        future.add_done_callback(self._logged)
        return future

    def _logged(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.metrics.log_failures.labels("predictions").inc()

    def shadow(
        self, items: list[Pending], batch: Batch, rows: np.ndarray, answer: SlotScores, done: float
    ) -> None:
        """A mirrored answer for the batch's ``rows``: counted and logged with route ``shadow``."""
        assert answer.scores is not None and answer.version is not None
        m, version, endpoint = self.metrics, answer.version, items[0].endpoint
        for j, i in enumerate(rows):
            m.prediction_latency.labels(items[i].endpoint, SHADOW, version).observe(done - items[i].arrived)
            m.scores.labels(SHADOW, version).observe(float(answer.scores[j]))
        m.predictions.labels(endpoint, SHADOW, version).inc(len(rows))
        routes = np.full(len(rows), SHADOW, dtype=object)
        self.log(items, batch, Scored(answer.scores, [version] * len(rows), routes, done), rows)

    def error(self, items: list[Pending], kind: str, route: str, rows: int | None = None) -> None:
        """Count ``rows`` errors (default: one per item) of ``kind`` on the first item's endpoint."""
        self.metrics.errors.labels(items[0].endpoint, kind, route).inc(len(items) if rows is None else rows)

    def fallback(self, items: list[Pending], rows: np.ndarray, route: str) -> None:
        """Rows drawn for ``route`` that the champion answered, counted per endpoint."""
        for endpoint, count in Counter(items[i].endpoint for i in rows).items():
            self.metrics.errors.labels(endpoint, "fallback", route).inc(count)

    def batch(self, rows: int, queued_s: float) -> None:
        self.metrics.batch_size.observe(rows)
        self.metrics.stage_latency.labels("queue").observe(queued_s)

    def stage(self, name: str, seconds: float) -> None:
        self.metrics.stage_latency.labels(name).observe(seconds)
