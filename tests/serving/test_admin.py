"""The control API's ``APIRouter`` on its own, over HTTP in process (FastAPI's test client, no
Ray): its paths, status codes and bodies are ``ServingClient``'s contract. The slots are real
in-process slots holding real ``LoadedModel`` objects; loading from the registry is covered by
``test_control`` against the running application."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from tasks.serving.admin import admin_router
from tasks.serving.control import ServingControl
from tasks.serving.inference_log import InferenceLogWriter
from tasks.serving.lookup import FeatureLookup
from tasks.serving.metrics import ServingMetrics
from tasks.serving.pipeline import ScoringPipeline
from tasks.serving.recorder import PredictionRecorder
from tasks.serving.responses import validation_error
from tasks.serving.router import Router
from tasks.serving.schemas import Contract
from tasks.serving.shadow import ShadowMirror
from tasks.serving.slots import LocalSlot
from tests.serving.test_slots import model

TOKEN = "s3cret"


@dataclass
class Admin:
    http: TestClient
    slots: dict[str, LocalSlot]
    router: Router
    metrics: ServingMetrics


@pytest.fixture
def admin(settings, tmp_path):
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"admin_token": TOKEN})}
    )
    slots = {name: LocalSlot(settings, name) for name in ("champion", "challenger")}
    slots["champion"].swap(model(tmp_path, "1", 0.1))
    metrics, router, lookup = ServingMetrics(), Router(), FeatureLookup(settings)
    writer = InferenceLogWriter(settings, writer_id="admin-test")
    recorder = PredictionRecorder(0.5, metrics, writer)
    pipeline = ScoringPipeline(
        settings, lookup=lookup, router=router, slots=slots, recorder=recorder, mirror=ShadowMirror(2)
    )
    control = ServingControl(
        settings, router=router, slots=slots, lookup=lookup, writer=writer, metrics=metrics
    )
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(admin_router(control, pipeline, Contract(settings), TOKEN))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield Admin(http, slots, router, metrics)
    writer.close()


def _gauge(admin: Admin, name: str, **labels: str) -> float | None:
    return admin.metrics.registry.get_sample_value(name, labels)


def test_every_route_needs_the_token(admin):
    calls = [
        ("GET", "/admin/status", None),
        ("PUT", "/admin/traffic", {"shadow": False}),
        ("POST", "/admin/slots/challenger/load", {"version": "1"}),
        ("POST", "/admin/slots/challenger/unload", None),
        ("POST", "/admin/slots/challenger/score", {"rows": []}),
        ("POST", "/admin/flush", None),
    ]
    for method, path, body in calls:
        for header in ("", "Bearer wrong"):
            resp = admin.http.request(method, path, json=body, headers={"Authorization": header})
            assert resp.status_code == 401, (path, resp.text)
            assert "admin token required" in resp.json()["error"]
    assert admin.http.get("/admin/status").status_code == 200


def test_status_shows_both_slots_the_split_and_the_log(admin):
    status = admin.http.get("/admin/status").json()
    assert status["challenger_weight"] == 0.0 and status["shadow"] is False and status["threshold"] == 0.5
    assert status["slots"]["champion"]["loaded"] and status["slots"]["champion"]["version"] == "1"
    assert status["slots"]["challenger"] == {"slot": "challenger", "loaded": False, "last_error": None}
    assert status["inference_log"]["rows_written"] == 0 and status["features_ready"] is False
    assert _gauge(admin, "airloop_serving_slot_model_version", slot="champion") == 1.0


def test_traffic_to_an_empty_challenger_is_refused_then_allowed_once_it_holds_a_model(admin, tmp_path):
    for body in ({"challenger_weight": 0.2}, {"shadow": True}):
        resp = admin.http.put("/admin/traffic", json=body)
        assert resp.status_code == 409 and "challenger slot is empty" in resp.json()["error"]
    assert admin.router.challenger_weight == 0.0 and admin.router.shadow is False
    admin.slots["challenger"].swap(model(tmp_path, "2", 0.9))
    status = admin.http.put("/admin/traffic", json={"challenger_weight": 0.2, "shadow": True}).json()
    assert status["challenger_weight"] == 0.2 and status["shadow"] is True
    assert admin.router.challenger_weight == 0.2 and admin.router.shadow is True
    assert _gauge(admin, "airloop_serving_challenger_weight") == 0.2
    assert _gauge(admin, "airloop_serving_shadow_enabled") == 1.0
    status = admin.http.put("/admin/traffic", json={"shadow": False}).json()
    assert status["challenger_weight"] == 0.2 and status["shadow"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [({"challenger_weight": 1.5}, "challenger_weight"), ({"shadow": "yes"}, "shadow"), ({}, "body")],
)
def test_bad_traffic_bodies_are_422_naming_the_field(admin, body, field):
    resp = admin.http.put("/admin/traffic", json=body)
    assert resp.status_code == 422 and resp.json()["fields"] == [field], resp.text


def test_unknown_slot_and_bad_load_references_are_422(admin):
    assert admin.http.post("/admin/slots/canary/unload").status_code == 422
    for body in ({"version": "1", "alias": "champion"}, {"version": "seven"}, {}):
        resp = admin.http.post("/admin/slots/challenger/load", json=body)
        assert resp.status_code == 422, (body, resp.text)


def test_unloading_empties_the_challenger_and_turns_its_traffic_off_the_champion_stays(admin, tmp_path):
    admin.slots["challenger"].swap(model(tmp_path, "2", 0.9))
    admin.http.put("/admin/traffic", json={"challenger_weight": 0.5, "shadow": True})
    status = admin.http.post("/admin/slots/challenger/unload").json()
    assert status["challenger_weight"] == 0.0 and status["shadow"] is False
    assert status["slots"]["challenger"]["loaded"] is False and not admin.slots["challenger"].loaded
    resp = admin.http.post("/admin/slots/champion/unload")
    assert resp.status_code == 409 and "cannot be emptied" in resp.json()["error"]
    assert admin.slots["champion"].loaded


def test_smoke_needs_rows_and_the_feature_store(admin, settings):
    assert admin.http.post("/admin/slots/challenger/score", json={"rows": []}).status_code == 422
    row = {
        "customer_id": 1,
        "merchant_id": 2,
        "amount": 12.5,
        "merchant_category": settings.schema_.column("merchant_category").allowed[0],
        "channel": settings.schema_.column("channel").allowed[0],
        "region": settings.schema_.column("region").allowed[0],
    }
    resp = admin.http.post("/admin/slots/champion/score", json={"rows": [row]})  # nothing applied to Feast
    assert resp.status_code == 503 and resp.json()["kind"] == "features", resp.text


def test_flush_reports_the_log(admin):
    flushed = admin.http.post("/admin/flush").json()
    assert (
        flushed["rows_written"] == 0 and flushed["buffered"] == 0 and flushed["uri"].endswith("predictions")
    )
