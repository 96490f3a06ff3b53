"""The prediction recorder on its own: the answers, the metrics and the inference-log rows of a
scored batch, with the real write-ahead log on local storage and a real metrics registry (no Ray)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tasks.serving import inference_log
from tasks.serving.durable_log import DurableInferenceLog
from tasks.serving.metrics import ServingMetrics
from tasks.serving.recorder import PredictionRecorder
from tasks.serving.shapes import Batch, Pending, Scored, SlotScores


@pytest.fixture
def recorder(settings):
    writer = DurableInferenceLog(settings, writer_id="test")
    yield PredictionRecorder(0.5, ServingMetrics(), writer)
    writer.close()


def _batch(n: int = 3) -> tuple[list[Pending], Batch]:
    now = time.perf_counter() - 0.004
    items = [Pending(f"r{i}", {}, now, "score_batch", f"t{i}") for i in range(n)]
    columns = {
        "customer_id": list(range(n)),
        "amount": [10.0 * (i + 1) for i in range(n)],
        "customer_txn_count_7d": np.arange(n, dtype=float),
    }
    return items, Batch(columns=columns, unknown=[[], ["customer"], []][:n], started=now)


def _value(recorder: PredictionRecorder, name: str, **labels: str) -> float:
    return recorder.metrics.registry.get_sample_value(name, labels) or 0.0


def test_answers_say_who_scored_what_and_are_counted(recorder):
    items, batch = _batch()
    routes = np.array(["champion", "challenger", "champion"], dtype=object)
    scored = Scored(np.array([0.2, 0.9, 0.5]), ["1", "2", "1"], routes, time.perf_counter())
    answers = recorder.answers(items, batch, scored)
    assert [a["decision"] for a in answers] == ["legit", "fraud", "fraud"]  # at the threshold: fraud
    assert [(a["route"], a["model_version"]) for a in answers] == [
        ("champion", "1"),
        ("challenger", "2"),
        ("champion", "1"),
    ]
    assert answers[1]["unknown_entities"] == ["customer"] and answers[0]["transaction_id"] == "t0"
    traffic = {"traffic": "live", "endpoint": "score_batch"}
    assert _value(recorder, "airloop_serving_traffic_predictions_total", **traffic) == 3
    assert all(a["latency_ms"] >= 4.0 for a in answers)
    labels = {"endpoint": "score_batch", "route": "champion", "model_version": "1"}
    assert _value(recorder, "airloop_serving_predictions_total", **labels) == 2
    assert _value(recorder, "airloop_serving_prediction_latency_seconds_count", **labels) == 2
    assert _value(recorder, "airloop_serving_unknown_entities_total", entity="customer") == 1


def test_live_and_shadow_rows_land_in_the_inference_log(recorder, settings):
    items, batch = _batch()
    items[1].traffic = "synthetic"
    routes = np.array(["champion"] * 3, dtype=object)

    async def log() -> None:
        scored = Scored(np.array([0.1, 0.2, 0.3]), ["1"] * 3, routes, time.perf_counter())
        await recorder.log(items, batch, scored)  # on disk when it returns
        recorder.shadow(
            items, batch, np.array([0, 2]), SlotScores("2", np.array([0.8, 0.9])), time.perf_counter()
        )
        await asyncio.sleep(0.2)

    asyncio.run(log())
    assert recorder.writer.stats()["wal_records"] == 2
    recorder.writer.flush()
    logged = inference_log.read_predictions(settings, "2000-01-01", "2100-01-01", labels=False)
    live, shadow = logged[logged["route"] == "champion"], logged[logged["route"] == "shadow"]
    assert list(live["request_id"]) == ["r0", "r1", "r2"] and list(live["score"]) == [0.1, 0.2, 0.3]
    assert list(shadow["request_id"]) == ["r0", "r2"] and set(shadow["model_version"]) == {"2"}
    assert list(shadow["amount"]) == [10.0, 30.0] and list(shadow["customer_txn_count_7d"]) == [0.0, 2.0]
    assert (logged["endpoint"] == "score_batch").all() and (logged["latency_ms"] > 0).all()
    assert list(live["traffic"]) == ["live", "synthetic", "live"], "the mark of each request"
    assert list(shadow["traffic"]) == ["live", "live"], "a mirrored row keeps its request's mark"
    shadow_count = {"endpoint": "score_batch", "route": "shadow", "model_version": "2"}
    assert _value(recorder, "airloop_serving_predictions_total", **shadow_count) == 2


def test_fallbacks_and_errors_are_counted_by_endpoint(recorder):
    items, _ = _batch()
    items[2].endpoint = "score"
    recorder.fallback(items, np.array([0, 1, 2]), "challenger")
    recorder.error(items, "shadow_skipped", "shadow", rows=2)
    fallback = {"kind": "fallback", "route": "challenger"}
    assert _value(recorder, "airloop_serving_errors_total", endpoint="score_batch", **fallback) == 2
    assert _value(recorder, "airloop_serving_errors_total", endpoint="score", **fallback) == 1
    skipped = {"endpoint": "score_batch", "kind": "shadow_skipped", "route": "shadow"}
    assert _value(recorder, "airloop_serving_errors_total", **skipped) == 2


def test_metric_values_stay_in_memory_whatever_feast_sets():
    """Feast points prometheus_client at a multiprocess directory when imported; the serving
    metrics keep plain in-memory values anyway."""
    import os

    import feast  # noqa: F401 - sets PROMETHEUS_MULTIPROC_DIR

    assert "PROMETHEUS_MULTIPROC_DIR" in os.environ
    metrics = ServingMetrics()
    child = metrics.requests.labels("score", "200")
    child.inc()
    assert type(child._value).__name__ == "MutexValue" and child._value.get() == 1.0
