"""The ingest DAG's two triggers on a real stack: an asset event posted to the REST API, and cron.

The stack (``airflow_stack``) runs the ingest cron every minute. The asset-event test measures
how long Airflow takes from the POST to the run starting and writes it to
``<tmp>/airloop-e2e/ingest_latency.json`` (and the stack's home) for the write-up.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.platform import simulate
from tests.e2e.conftest import PAST

pytestmark = pytest.mark.e2e

DAG_ID = "ingest"
ROWS = 500
TERMINAL = ("success", "failed")


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _wait_for_quiet_window(client, timeout: float = 150.0) -> None:
    """Wait until the run for the latest cron tick is done, nothing is queued or running, and
    the next tick is at least 20 s away.

    Every cron run sweeps the landing zone: one that starts after the batch lands (including a
    tick's run created late because ``max_active_runs=1`` held it back) would ingest the batch
    first and leave nothing for the asset-triggered run under test.
    """
    deadline = time.monotonic() + timeout
    while True:
        now = datetime.now(UTC)
        tick = now.replace(second=0, microsecond=0)
        runs = client.dag_runs(DAG_ID, limit=20)
        busy = [r["dag_run_id"] for r in runs if r["state"] in ("queued", "running")]
        ticked = any(
            r["run_type"] == "scheduled" and _ts(r["run_after"]) >= tick and r["state"] in TERMINAL
            for r in runs
        )
        if ticked and not busy and now.second <= 40:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"ingest never idle between cron ticks; busy: {busy}")
        time.sleep(0.5)


def test_asset_event_triggers_ingest(airflow_stack, capsys):
    settings, client, _ = airflow_stack
    client.wait_for_dag(DAG_ID, timeout=180)
    landing = client.asset(settings.assets.landing)
    assert any(d["dag_id"] == DAG_ID for d in landing["scheduled_dags"])

    # not a batch the closed-loop story lands (same ids: nothing new), and in the past: batch 700
    # of the simulated history would be years ahead, and ingest refuses events from the future
    batch = simulate.generate_batch(settings, scenario="stable", index=700, rows=ROWS, at=PAST)
    _wait_for_quiet_window(client)
    batch_uri = simulate.write_batch(batch, settings.storage.landing_uri, "e2e-asset-event")
    posted_at = datetime.now(UTC)
    event = simulate.notify_airflow(batch_uri, settings)
    assert event["extra"]["batch_uri"] == batch_uri

    run = client.wait_for_run(
        DAG_ID,
        lambda r: r["run_type"] == "asset_triggered" and _ts(r["run_after"]) >= _ts(event["timestamp"]),
        timeout=60,
    )
    started = client.wait_for_run(
        DAG_ID, lambda r: r["dag_run_id"] == run["dag_run_id"] and r["start_date"], timeout=120
    )
    # Only once the run has started: Airflow 3.3 answers 500 for upstreamAssetEvents while a
    # run the event created is still queued (it cannot serialise its null start_date).
    triggering = client.upstream_asset_events(DAG_ID, run["dag_run_id"])
    assert event["id"] in [e["id"] for e in triggering]
    finished = client.wait_for_run_state(DAG_ID, run["dag_run_id"], timeout=600)
    tis = client.task_instances(DAG_ID, run["dag_run_id"])
    assert finished["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    assert {t["task_id"]: t["state"] for t in tis if t["task_id"] != "ingest_batch"} == {
        "discover": "success",
        "publish": "success",
        "report": "success",
    }
    # one mapped ingest per landed file: this test's, and any another test of the session left
    batches = [t["state"] for t in tis if t["task_id"] == "ingest_batch"]
    assert batches and set(batches) == {"success"}, batches

    curated = client.asset_events(
        settings.assets.curated, source_dag_id=DAG_ID, source_run_id=run["dag_run_id"]
    )
    assert len(curated) == 1, curated
    assert curated[0]["extra"]["rows_added"] == ROWS

    latency = {
        "dag_id": DAG_ID,
        "run_id": run["dag_run_id"],
        "posted_at": posted_at.isoformat(),
        "event_timestamp": event["timestamp"],
        "post_to_run_queued_s": round((_ts(finished["queued_at"]) - posted_at).total_seconds(), 3),
        "post_to_run_start_s": round((_ts(started["start_date"]) - posted_at).total_seconds(), 3),
        "post_to_run_end_s": round((_ts(finished["end_date"]) - posted_at).total_seconds(), 3),
        "rows": ROWS,
    }
    out = Path(tempfile.gettempdir()) / "airloop-e2e" / "ingest_latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in (out, Path(settings.airflow.home) / "ingest_latency.json"):
        path.write_text(json.dumps(latency, indent=2) + "\n")
    with capsys.disabled():
        print(
            f"\n[e2e] asset event -> ingest run: queued {latency['post_to_run_queued_s']}s, "
            f"started {latency['post_to_run_start_s']}s, finished {latency['post_to_run_end_s']}s "
            f"after the POST ({out})"
        )
    assert latency["post_to_run_start_s"] < 30


def test_cron_run_succeeds(airflow_stack):
    client = airflow_stack.client
    client.wait_for_dag(DAG_ID, timeout=180)
    scheduled = client.wait_for_run(DAG_ID, lambda r: r["run_type"] == "scheduled", timeout=90)
    assert _ts(scheduled["run_after"]).second == 0  # on the minute: the "* * * * *" cron
    finished = client.wait_for_run(DAG_ID, lambda r: r["run_type"] == "scheduled", timeout=600, finished=True)
    tis = client.task_instances(DAG_ID, finished["dag_run_id"])
    assert finished["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
