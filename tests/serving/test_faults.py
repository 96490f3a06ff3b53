"""Faults injected into the running application under steady traffic, with real processes: the
ingress replica killed (``kill -9``), a model slot's process killed (``deployments`` placement),
the inference log's disk filled and then made read-only, and, in ``test_online_store_fault``, Redis
stopped and restarted.

Each test counts what the client saw and what the inference log holds afterwards: requests sent,
requests failed, predictions answered-and-lost (every 200 must be in the log: goal 0), rows
logged twice (goal 0) and the time to recover; ``FIGURES`` collects them for the report
(printed at the end of the module with ``-s``).
"""

from __future__ import annotations

import time

import pandas as pd
import pytest
import requests

from tasks.serving import inference_log
from tests.figures import keep
from tests.serving.conftest import PLACEMENTS, ServingWorld
from tests.serving.faults import SteadyLoad, kill9, replica_pids

pytestmark = pytest.mark.slow

RATE = 50.0
FIGURES: list[dict] = []


def account(
    world: ServingWorld, client, load: SteadyLoad, since: pd.Timestamp, timeout: float = 90.0
) -> dict:
    """Lost (answered, not in the log) and duplicated (logged more than once) predictions, once the
    log has caught up (replayed WAL of dead replicas included)."""
    deadline = time.monotonic() + timeout
    answered = set(load.answered)
    while True:
        client.flush()
        logged = inference_log.read_predictions(
            world.settings, since, pd.Timestamp.now(tz="UTC") + pd.Timedelta("1min"), labels=False,
            routes=["champion", "challenger"],
        )  # fmt: skip
        mine = logged[logged["request_id"].isin(answered)]
        lost = answered - set(mine["request_id"])
        if not lost or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    duplicated = int(mine["request_id"].duplicated().sum())
    assert set(mine["traffic"]) == {"synthetic"}, "load-test rows are marked synthetic"
    return {"lost": len(lost), "duplicated": duplicated}


def record(fault: str, load: SteadyLoad, since: float, books: dict, recovered_s: float) -> dict:
    figures = {
        "fault": fault,
        **load.summary(),
        **books,
        "errors_for_s": round(load.recovery_seconds(since), 1),
        "recovered_s": round(recovered_s, 1),
    }
    FIGURES.append(figures)
    keep("serving fault", figures)
    print("\nFAULT", figures)
    return figures


def wait_until(check, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if check():
                return time.monotonic() - t0
        except Exception:  # noqa: BLE001 - not back yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout:.0f} s")


def test_kill_9_of_the_ingress_replica_loses_no_answered_prediction(client, serving_app):
    settings = serving_app.settings
    client.set_traffic(challenger_weight=0.2)
    (before,) = replica_pids(settings.serving.app_name, "ingress")
    since = pd.Timestamp.now(tz="UTC")
    bodies = [serving_app.transaction(i % 300) for i in range(300)]
    with SteadyLoad(client.url, bodies, rate=RATE) as load:
        load.wait_answers(100)
        killed_at = time.monotonic()
        kill9(before)
        back = wait_until(
            lambda: (
                replica_pids(settings.serving.app_name, "ingress") not in ([], [before])
                and client.health()["status"] == "ok"
            ),
            120,
            "a new ingress replica",
        )
        load.wait_answers(100)
    status = client.status()
    assert status["challenger_weight"] == 0.2, "the restarted replica came back with the current split"
    assert status["slots"]["challenger"]["version"] == serving_app.versions["challenger"]
    books = account(serving_app, client, load, since)
    figures = record("kill -9 ingress replica (1 replica)", load, killed_at, books, back)
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["failed"] <= RATE * (back + 5), "failures only while no replica was up"


@pytest.mark.parametrize("client", ["deployments"], indirect=True)
def test_kill_9_of_a_model_slot_process_loses_no_answered_prediction(client, serving_app):
    assert "deployments" in PLACEMENTS
    app = f"{serving_app.settings.serving.app_name}-deployments"
    (before,) = replica_pids(app, "champion")
    since = pd.Timestamp.now(tz="UTC")
    bodies = [serving_app.transaction(i % 300) for i in range(300)]
    with SteadyLoad(client.url, bodies, rate=RATE) as load:
        load.wait_answers(100)
        killed_at = time.monotonic()
        kill9(before)
        back = wait_until(
            lambda: (
                replica_pids(app, "champion") not in ([], [before])
                and client.status()["slots"]["champion"].get("version") == serving_app.versions["good"]
            ),
            120,
            "a new champion slot replica holding its version",
        )
        load.wait_answers(100)
    books = account(serving_app, client, load, since)
    figures = record("kill -9 champion slot process (placement: deployments)", load, killed_at, books, back)
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    failed = [why for _, why in load.failures]
    assert all(why.startswith(("503", "500")) for why in failed), failed[:5]
    assert load.codes.get("200", 0) >= 200


def _problems(url: str) -> list[str]:
    answer = requests.get(f"{url}/health", timeout=10)
    return answer.json().get("problems", []) if answer.status_code == 503 else []


def test_a_full_then_read_only_inference_log_disk_answers_nothing_it_cannot_log(client, serving_app):
    """The write-ahead log's own tmpfs filled under load, then remounted read-only (which the
    kernel allows once no segment is open, as a failed write leaves it), then given back: every
    request meanwhile is a 503 naming the log, never an answer that is not on disk."""
    disk = serving_app.wal
    if disk is None or not disk.mounted:
        pytest.skip("the inference log's own tmpfs needs root (CI runs as root)")
    since = pd.Timestamp.now(tz="UTC")
    bodies = [serving_app.transaction(i % 300) for i in range(300)]
    try:
        with SteadyLoad(client.url, bodies, rate=RATE) as load:
            load.wait_answers(100)
            broken_at = time.monotonic()
            disk.fill()
            wait_until(lambda: any("No space" in p for p in _problems(client.url)), 30, "/health: disk full")
            wait_until(lambda: disk.remount(read_only=True).returncode == 0, 30, "the disk read-only")
            wait_until(lambda: any("Read-only" in p for p in _problems(client.url)), 30, "/health: read-only")
            refused = len(load.failures)
            assert disk.remount(read_only=False).returncode == 0
            disk.free()
            back = wait_until(lambda: client.health()["status"] == "ok", 60, "/health ok again")
            load.wait_answers(100)
    finally:
        disk.remount(read_only=False)
        disk.free()
    books = account(serving_app, client, load, since)
    figures = record("inference-log disk full, then read-only", load, broken_at, books, back)
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    failed = [why for _, why in load.failures]
    assert refused > 0 and all(why.startswith("503") and "inference log" in why for why in failed), failed[:5]
