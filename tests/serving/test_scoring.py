"""Scoring over real HTTP: known and unknown entities, the batch endpoint, what gets logged."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest

from tasks.features.online import online_features
from tasks.features.store import feature_names
from tasks.serving import inference_log
from tests.serving.conftest import PLACEMENTS

pytestmark = pytest.mark.slow  # the session's Ray Serve app takes a minute or more to start

UNKNOWN_CUSTOMER, UNKNOWN_MERCHANT = 90_000_001, 90_000_002


def _logged(settings, request_ids: list[str]) -> pd.DataFrame:
    frame = inference_log.read_predictions(settings, "2000-01-01", "2100-01-01", labels=False)
    return frame[frame["request_id"].isin(request_ids)].set_index("request_id")


@pytest.mark.parametrize("client", PLACEMENTS, indirect=True)
def test_known_transaction_is_scored_by_the_champion(client, serving_app):
    body = serving_app.transaction(5)
    out = client.score(body)
    assert out["model_version"] == "1" and out["route"] == "champion"
    assert out["score"] == pytest.approx(0.02)
    assert out["decision"] == "legit" and out["threshold"] == 0.5
    assert out["transaction_id"] == body["transaction_id"]
    assert out["unknown_entities"] == []
    assert len(out["request_id"]) == 32 and out["latency_ms"] > 0


def test_event_time_defaults_to_now_and_transaction_id_is_optional(client, serving_app):
    body = serving_app.transaction(6)
    del body["event_timestamp"], body["transaction_id"]
    out = client.score(body)
    assert out["transaction_id"] is None and out["route"] == "champion"


@pytest.mark.parametrize(
    ("customer", "merchant", "unknown"),
    [
        (UNKNOWN_CUSTOMER, None, ["customer"]),
        (None, UNKNOWN_MERCHANT, ["merchant"]),
        (UNKNOWN_CUSTOMER, UNKNOWN_MERCHANT, ["customer", "merchant"]),
    ],
    ids=["customer", "merchant", "both"],
)
def test_unknown_entities_are_scored_and_flagged(client, serving_app, customer, merchant, unknown):
    body = serving_app.transaction(7)
    body["customer_id"] = customer if customer is not None else body["customer_id"]
    body["merchant_id"] = merchant if merchant is not None else body["merchant_id"]
    out = client.score(body)
    assert out["unknown_entities"] == unknown
    assert out["score"] == pytest.approx(0.02) and out["model_version"] == "1"


def test_unknown_entities_get_the_configured_defaults_in_the_log(client, serving_app):
    """No default configured: the features stay missing, as for a new entity in training sets."""
    known = client.score(serving_app.transaction(8))
    unknown = client.score(serving_app.transaction(8, customer_id=UNKNOWN_CUSTOMER))
    client.flush()
    logged = _logged(serving_app.settings, [known["request_id"], unknown["request_id"]])
    assert bool(logged.loc[known["request_id"], "customer_found"]) is True
    assert bool(logged.loc[unknown["request_id"], "customer_found"]) is False
    assert np.isnan(logged.loc[unknown["request_id"], "customer_txn_count_7d"])
    assert logged.loc[known["request_id"], "customer_txn_count_7d"] >= 1


@pytest.mark.parametrize("client", PLACEMENTS, indirect=True)
def test_batch_scores_every_row_in_order_and_logs_the_features_served(client, serving_app):
    settings = serving_app.settings
    rows = [serving_app.transaction(i) for i in range(40)]
    rows[13]["customer_id"] = UNKNOWN_CUSTOMER
    preds = client.score_batch(rows)
    assert [p["transaction_id"] for p in preds] == [r["transaction_id"] for r in rows]
    assert len({p["request_id"] for p in preds}) == 40
    assert preds[13]["unknown_entities"] == ["customer"]
    assert all(p["unknown_entities"] == [] for i, p in enumerate(preds) if i != 13)
    assert {p["model_version"] for p in preds} == {"1"}

    client.flush()
    logged = _logged(settings, [p["request_id"] for p in preds]).loc[[p["request_id"] for p in preds]]
    request = pd.DataFrame(rows)
    request["event_timestamp"] = pd.to_datetime(request["event_timestamp"], utc=True)
    expected = online_features(settings, request)
    names = feature_names(settings)
    np.testing.assert_allclose(logged[names].to_numpy(float), expected[names].to_numpy(float), equal_nan=True)
    assert list(logged["customer_id"]) == [r["customer_id"] for r in rows]
    assert (logged["route"] == "champion").all() and (logged["endpoint"] == "score_batch").all()
    assert (logged["latency_ms"] > 0).all()


@pytest.mark.parametrize("client", PLACEMENTS, indirect=True)
def test_decision_follows_the_threshold(client, serving_app):
    client.set_traffic(challenger_weight=1.0)
    out = client.score(serving_app.transaction(9))
    assert out["route"] == "challenger" and out["score"] == pytest.approx(0.9)
    assert out["decision"] == "fraud"


@pytest.mark.parametrize("client", PLACEMENTS, indirect=True)
def test_health(client):
    health = client.health()
    assert {k: health[k] for k in ("status", "problems", "champion", "challenger")} == {
        "status": "ok",
        "problems": [],
        "champion": "1",
        "challenger": "2",
    }
    assert health["replica"].startswith("ingress-")


def test_the_local_ray_runs_only_what_serving_uses(client, serving_app):
    """Ray's autoscaler monitor, log monitor and dashboard head (~220 MiB) are stopped once the
    local Ray is up; scoring does not depend on them."""
    import psutil

    commands = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            commands.append(" ".join(child.cmdline()))
    assert any("raylet" in c for c in commands), "the test's Ray is not a child of this process"
    for script in ("autoscaler/_private/monitor.py", "_private/log_monitor.py", "dashboard/dashboard.py"):
        assert not [c for c in commands if script in c], f"{script} still runs"
    assert client.score(serving_app.transaction(9))["route"] == "champion"
