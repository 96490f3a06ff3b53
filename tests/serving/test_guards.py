"""What a request passes before its body is decoded (size limit, credentials, traffic mark), label
posts kept as versions, and the control state shared by two replicas: the composed parts of real
ingress replicas over HTTP in process (FastAPI's test client, no Ray), two replicas sharing one
in-process store the way replicas share the cluster's key-value store."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from tasks.serving import inference_log
from tasks.serving.control_state import MemoryStore
from tests.serving.replicas import TOKEN, replica, token_settings
from tests.serving.test_slots import model

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def small(settings, tmp_path):
    """One replica with a 4 KiB body limit and a scoring token."""
    parts = replica(
        token_settings(settings, max_request_bytes=4096, scoring_token="score-me"),
        tmp_path,
        MemoryStore(),
        "r1",
    )
    with TestClient(parts.app()) as http:
        yield http, parts
    parts.close()


def test_a_body_over_the_limit_is_413_naming_it_before_any_decoding(small):
    http, parts = small
    huge = b"{" + b" " * 5000 + b"}"
    for path in ("/score", "/score/batch", "/labels", "/admin/traffic"):
        resp = http.post(path, content=huge, headers={**AUTH, "Content-Type": "application/json"})
        assert resp.status_code == 413, (path, resp.text)
        body = resp.json()
        assert body["limit"] == 4096 and "serving.max_request_bytes" in body["error"]

    def chunked():  # no Content-Length: counted while reading
        for _ in range(10):
            yield b" " * 1000

    resp = http.post("/labels", content=chunked(), headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["limit_name"] == "serving.max_request_bytes"
    resp = http.post("/labels", content=b"[" + b" " * 4000 + b"]", headers=AUTH)  # under the limit: decoded
    assert resp.status_code == 422 and resp.json()["fields"] == ["body"]
    resp = http.post(
        "/score", content=b"{}", headers={"Content-Length": "ten", "Authorization": "Bearer score-me"}
    )
    assert resp.status_code == 400 and resp.json()["fields"] == ["header.Content-Length"]
    errors = parts.control.metrics.registry.get_sample_value(
        "airloop_serving_errors_total", {"endpoint": "labels", "kind": "validation", "route": ""}
    )
    assert errors == 1.0, "only the body under the limit reached the parser"


def test_scoring_takes_its_own_token_when_one_is_set(small):
    http, _ = small
    body = {"amount": 1.0}
    assert http.post("/score", json=body).status_code == 401
    assert http.post("/score", json=body, headers=AUTH).status_code == 403  # the admin token is not it
    resp = http.post("/score", json=body, headers={"Authorization": "Bearer score-me"})
    assert resp.status_code == 422, resp.text  # through the door, then the contract


def test_the_traffic_mark_is_live_or_synthetic_anything_else_is_422(admin):
    resp = admin.http.post("/score", json={"amount": 1.0}, headers={"X-Airloop-Traffic": "replayed"})
    assert resp.status_code == 422 and resp.json()["fields"] == ["header.X-Airloop-Traffic"]
    for mark in ("synthetic", "LIVE", ""):
        resp = admin.http.post("/score", json={"amount": 1.0}, headers={"X-Airloop-Traffic": mark})
        assert resp.status_code == 422 and resp.json()["fields"] != ["header.X-Airloop-Traffic"]


def test_label_posts_are_durable_versions_with_who_posted_them(admin):
    settings = admin.parts.settings
    first = admin.http.post(
        "/labels",
        json={"labels": [{"request_id": "r1", "label": 0}]},
        headers={"X-Airloop-Source": "chargebacks"},
    )
    assert first.status_code == 200 and first.json()["versioned"] is True
    second = admin.http.post(
        "/labels",
        json={
            "labels": [{"request_id": "r1", "label": 1}, {"transaction_id": "t9", "label": 0}],
            "source": "review",
        },
        headers={"X-Forwarded-For": "10.1.2.3"},
    )
    assert second.status_code == 200 and second.json()["accepted"] == 2
    assert admin.parts.writer.stats()["wal_records"] == 2  # on disk before the 200s
    admin.http.post("/admin/flush")
    landed = inference_log.read_labels(settings)
    r1 = landed[landed["request_id"] == "r1"]
    assert list(r1["label"]) == [0, 1], "the second label is a new version, the first is kept"
    assert list(r1["source"]) == ["chargebacks", "review"] and r1["labeled_at"].is_monotonic_increasing
    assert r1["label_id"].nunique() == 2 and list(r1["client"])[1] == "10.1.2.3"
    assert first.json()["post_id"] != second.json()["post_id"]


def test_two_replicas_converge_on_every_change_and_a_new_one_starts_with_it(settings, tmp_path):
    settings = token_settings(settings, control_wait_seconds=10.0)
    store = MemoryStore()
    r1, r2 = replica(settings, tmp_path, store, "r1"), replica(settings, tmp_path, store, "r2")
    for parts in (r1, r2):
        parts.control.slots["challenger"].swap(model(tmp_path / parts.sync.replica, "2", 0.9))  # type: ignore[attr-defined]

    async def scenario() -> None:
        r2.start()  # r2 polls the store; r1 takes the control calls
        r1.sync.poll_s = r2.sync.poll_s = 0.05
        await r1.sync.report()
        await r1.control.set_traffic(0.3, True)
        assert (r2.control.router.challenger_weight, r2.control.router.shadow) == (0.3, True), (
            "r1 waited for r2"
        )
        status = await r1.control.unload("challenger")
        assert not await r2.control.slots["challenger"].info() or not r2.control.slots["challenger"].loaded
        assert status["challenger_weight"] == 0.0 and {r["replica"] for r in status["replicas"]} == {
            "r1",
            "r2",
        }
        assert [r["revision"] for r in status["replicas"]] == [2, 2]
        await r1.control.flush()
        assert r2.sync.flushed == 1

    asyncio.run(scenario())
    r3 = replica(settings, tmp_path, store, "r3")  # a restarted replica: the desired state first
    assert r3.control.router.challenger_weight == 0.0 and r3.sync.revision == 3
    assert r3.control.slots["champion"].loaded
    for parts in (r1, r2, r3):
        parts.close()


def test_metrics_sum_the_live_replicas_counters(settings, tmp_path):
    settings = token_settings(settings)
    store = MemoryStore()
    r1, r2 = replica(settings, tmp_path, store, "r1"), replica(settings, tmp_path, store, "r2")
    r1.control.metrics.requests.labels("score", "200").inc(3)
    r2.control.metrics.requests.labels("score", "200").inc(4)
    r2.control.metrics.requests.labels("score", "503").inc(1)

    async def merged() -> dict:
        await r2.sync.report()
        text = (await r1.control.metrics_text()).decode()
        samples = {}
        for line in text.splitlines():
            if line.startswith("airloop_serving_requests_total"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    samples = asyncio.run(merged())
    assert samples['airloop_serving_requests_total{code="200",endpoint="score"}'] == 7.0
    assert samples['airloop_serving_requests_total{code="503",endpoint="score"}'] == 1.0
    r2.close()  # a replica that goes away leaves the sums (as a restart always did)
    samples = asyncio.run(merged_after_close(r1))
    assert samples == {'airloop_serving_requests_total{code="200",endpoint="score"}': 3.0}
    r1.close()


async def merged_after_close(r1) -> dict:
    text = (await r1.control.metrics_text()).decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("airloop_serving_requests_total")
    }


def test_openapi_documents_bodies_headers_and_the_bearer_scheme(admin):
    doc = admin.http.get("/openapi.json").json()
    score = doc["paths"]["/score"]["post"]
    assert score["requestBody"]["content"]["application/json"]["schema"]["properties"]["amount"]
    assert score["parameters"][0]["name"] == "X-Airloop-Traffic"
    assert doc["paths"]["/labels"]["post"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/admin/traffic"]["put"]["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert json.dumps(doc)  # serialisable as served
