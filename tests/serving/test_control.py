"""The control API the deploy DAG drives: traffic split, shadow, loading versions, refusals."""

from __future__ import annotations

import pytest

from tasks.serving import inference_log
from tasks.serving.client import ServingError
from tests.serving.conftest import PLACEMENTS, artifact_dir, placement_settings

# the session's Ray Serve apps take a minute or more to start; each test runs on both placements
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("client", PLACEMENTS, indirect=True)]


def _rows(world, n: int) -> list[dict]:
    return [world.transaction(i % 200) for i in range(n)]


def test_status_shows_both_slots_and_the_split(client):
    status = client.status()
    assert status["challenger_weight"] == 0.0 and status["shadow"] is False
    champion, challenger = status["slots"]["champion"], status["slots"]["challenger"]
    assert champion["loaded"] and champion["version"] == "1"
    assert challenger["loaded"] and challenger["version"] == "2"
    assert len(champion["sha256"]) == 64 and champion["last_error"] is None


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_weights_route_traffic(client, serving_app, weight):
    client.set_traffic(challenger_weight=weight)
    preds = client.score_batch(_rows(serving_app, 1000))
    share = sum(p["route"] == "challenger" for p in preds) / len(preds)
    assert share == pytest.approx(weight, abs=0.06)
    for p in preds:  # the route says who answered, and the score proves it
        assert p["model_version"] == {"champion": "1", "challenger": "2"}[p["route"]]
        assert p["score"] == pytest.approx({"champion": 0.02, "challenger": 0.9}[p["route"]])


def test_shadow_logs_the_challenger_but_never_returns_it(client, serving_app):
    client.set_traffic(shadow=True)
    single = [client.score(serving_app.transaction(i)) for i in range(10)]
    batch = client.score_batch(_rows(serving_app, 100))
    client.set_traffic(shadow=False)
    for p in single + batch:
        assert p["route"] == "champion" and p["model_version"] == "1"
        assert p["score"] == pytest.approx(0.02)

    client.flush()
    logged = inference_log.read_predictions(serving_app.settings, "2000-01-01", "2100-01-01", labels=False)
    ids = {p["request_id"] for p in single + batch}
    mine = logged[logged["request_id"].isin(ids)]
    shadow = mine[mine["route"] == "shadow"]
    live = mine[mine["route"] == "champion"]
    assert set(live["request_id"]) == ids and set(shadow["request_id"]) == ids
    assert (shadow["model_version"] == "2").all() and shadow["score"].round(6).eq(0.9).all()
    assert (live["model_version"] == "1").all()


def test_traffic_to_an_empty_challenger_is_refused(client):
    client.unload("challenger")
    with pytest.raises(ServingError) as err:
        client.set_traffic(challenger_weight=0.1)
    assert err.value.status == 409
    assert client.status()["challenger_weight"] == 0.0


def test_load_a_version_into_a_slot(client, serving_app):
    info = client.load("challenger", version=serving_app.versions["spare"])
    assert info["version"] == "3" and info["source"] == "version 3"
    client.set_traffic(challenger_weight=1.0)
    assert client.score(serving_app.transaction(1))["score"] == pytest.approx(0.3)
    info = client.load("challenger", alias="champion")
    assert info["version"] == "1" and info["source"] == "alias champion"


def test_unknown_version_or_alias_is_404_and_the_slot_keeps_its_model(client):
    for ref in ({"version": "999"}, {"alias": "nonexistent"}):
        with pytest.raises(ServingError) as err:
            client.load("champion", **ref)
        assert err.value.status == 404 and err.value.kind == "not_found"
        assert err.value.body["kept_version"] == "1"
    assert client.status()["slots"]["champion"]["version"] == "1"


def test_tampered_artifact_is_refused_and_the_slot_keeps_its_model(client, serving_app):
    settings = serving_app.settings
    from tests.serving.conftest import register_model
    from tests.serving.scorers import ConstantScorer

    version = register_model(settings, ConstantScorer(0.5), serving_app.events)
    files = sorted(p for p in artifact_dir(settings, version).rglob("*.pkl"))
    assert files, "no pickled model file to tamper with"
    files[0].write_bytes(files[0].read_bytes() + b"\x00")  # one byte appended after registration

    with pytest.raises(ServingError) as err:
        client.load("champion", version=version)
    assert err.value.status == 409 and err.value.kind == "integrity"
    assert "model_sha256" in err.value.body["error"] and err.value.body["kept_version"] == "1"
    status = client.status()["slots"]["champion"]
    assert status["version"] == "1" and status["last_error"]["kind"] == "integrity"
    out = client.score(serving_app.transaction(2))
    assert out["model_version"] == "1" and out["score"] == pytest.approx(0.02)


def test_a_failing_challenger_falls_back_to_the_champion(client, serving_app):
    client.load("challenger", version=serving_app.versions["broken"])
    client.set_traffic(challenger_weight=0.5, shadow=True)
    preds = client.score_batch(_rows(serving_app, 200))
    assert {p["route"] for p in preds} == {"champion"} and {p["model_version"] for p in preds} == {"1"}
    metrics = client.metrics()
    fallbacks = metrics.get(
        (
            "airloop_serving_errors_total",
            (("endpoint", "score_batch"), ("kind", "fallback"), ("route", "challenger")),
        )
    )
    assert fallbacks and fallbacks > 0


def test_smoke_test_scores_on_one_slot(client, serving_app):
    preds = client.smoke("challenger", _rows(serving_app, 3))
    assert [p["route"] for p in preds] == ["smoke"] * 3
    assert {p["model_version"] for p in preds} == {"2"}
    client.load("challenger", version=serving_app.versions["broken"])
    with pytest.raises(ServingError) as err:
        client.smoke("challenger", _rows(serving_app, 1))
    assert err.value.status == 502 and err.value.kind == "model"


def test_the_champion_slot_cannot_be_emptied(client):
    with pytest.raises(ServingError) as err:
        client.unload("champion")
    assert err.value.status == 409


def test_the_placement_decides_where_the_models_run(client, serving_app, request):
    from ray import serve

    placement = request.node.callspec.params["client"]
    name = placement_settings(serving_app.settings, placement).serving.app_name
    deployments = set(serve.status().applications[name].deployments)
    assert deployments == ({"ingress"} if placement == "ingress" else {"ingress", "champion", "challenger"})
