"""The control API's ``APIRouter`` on its own, over HTTP in process (FastAPI's test client, no
Ray): its paths, status codes and bodies are ``ServingClient``'s contract. The slots are real
in-process slots holding real ``LoadedModel`` objects; loading from the registry is covered by
``test_control`` against the running application. The parts are composed as a replica composes
them (``ingress.compose``), sharing an in-process control store."""

from __future__ import annotations

import pytest

from tests.serving.replicas import Admin
from tests.serving.test_slots import model


def _gauge(admin: Admin, name: str, **labels: str) -> float | None:
    return admin.metrics.registry.get_sample_value(name, labels)


def test_every_route_needs_the_token_401_without_403_wrong(admin):
    calls = [
        ("GET", "/admin/status", None),
        ("PUT", "/admin/traffic", {"shadow": False}),
        ("POST", "/admin/slots/challenger/load", {"version": "1"}),
        ("POST", "/admin/slots/challenger/unload", None),
        ("POST", "/admin/slots/challenger/score", {"rows": []}),
        ("POST", "/admin/flush", None),
        ("POST", "/labels", {"labels": [{"request_id": "r", "label": 1}]}),
    ]
    for method, path, body in calls:
        for header, status in (("", 401), ("Basic czNjcmV0", 401), ("Bearer", 401), ("Bearer wrong", 403)):
            resp = admin.http.request(method, path, json=body, headers={"Authorization": header})
            assert resp.status_code == status, (path, header, resp.text)
            assert resp.json()["fields"] == ["header.Authorization"]
    # credentials come before the body: without them a malformed body is a 401 too, never a 422
    # that would tell an unauthenticated caller what a valid one looks like (found by hand)
    for method, path in (("PUT", "/admin/traffic"), ("POST", "/admin/slots/challenger/load")):
        resp = admin.http.request(method, path, json={"nope": 1}, headers={"Authorization": ""})
        assert resp.status_code == 401, (path, resp.text)
    assert admin.http.get("/admin/status").status_code == 200
    assert admin.http.get("/health").status_code in (200, 503)  # open, as is /metrics
    assert admin.http.get("/metrics", headers={"Authorization": ""}).status_code == 200


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
