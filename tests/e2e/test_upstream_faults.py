"""Faults around an upstream system's batches, on the real stack: an answer lost on the way back
(the client posts the batch's asset event again), and the scheduler killed with ``kill -9`` while
an ingest run is in flight, the upstream system posting another batch while it is down (``airloop
up`` starts it again). Either way every row lands once.
"""

from __future__ import annotations

import http.server
import os
import signal
import threading
import time
from datetime import UTC, datetime

import pandas as pd
import pytest
import requests

from tasks.common import storage
from tasks.common.net import free_port
from tasks.platform import simulate, stack
from tasks.platform.story.reads import finished, touched_since
from tests.e2e.conftest import PAST, airloop_environment
from tests.figures import keep

pytestmark = pytest.mark.e2e


class LosingProxy(http.server.ThreadingHTTPServer):
    """Forwards to Airflow; the first ``POST .../assets/events`` reaches Airflow but its answer
    never comes back (the connection closes), as when a network drops a reply."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.lost = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                resp = requests.request(
                    self.command, proxy.upstream + self.path, headers=headers, data=body, timeout=30
                )
                if self.command == "POST" and self.path.endswith("/assets/events") and proxy.lost == 0:
                    proxy.lost += 1
                    self.close_connection = True  # Airflow took it; the answer is lost
                    return
                self.send_response(resp.status_code)
                for key in ("Content-Type",):
                    if key in resp.headers:
                        self.send_header(key, resp.headers[key])
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PATCH = _forward

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def _curated_ids(settings, ids: set[str]) -> pd.Series:
    fs, path = storage.filesystem(settings.storage.curated_uri)
    files = [f for f in fs.find(path) if f.endswith(".parquet") and "/_" not in f]
    key = settings.schema_.key
    frames = [pd.read_parquet(storage.to_uri(fs, f), columns=[key]) for f in files]
    found = pd.concat(frames)[key] if frames else pd.Series(dtype=str)
    return found[found.isin(ids)]


def _wait_ingested(client, uris: list[str], since: datetime, timeout: float = 300.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        runs = touched_since(client.dag_runs("ingest"), since)
        if runs and not any(storage.exists(u) for u in uris) and all(finished(r) for r in runs):
            return runs
        assert time.monotonic() < deadline, f"{uris} not ingested in {timeout:.0f}s: {runs}"
        time.sleep(1)


def test_a_batch_posted_again_after_a_lost_answer_is_ingested_once(airflow_stack, caplog):
    settings, client, _ = airflow_stack
    client.wait_for_dag("ingest", timeout=180)
    proxy = LosingProxy(settings.airflow.url)
    try:
        batch = simulate.generate_batch(settings, "stable", index=801, rows=400, at=PAST)
        uri = simulate.write_batch(batch, settings.storage.landing_uri, "e2e-lost-answer")
        since = datetime.now(UTC)
        event = simulate.notify_airflow(uri, settings, rows=400, base_url=proxy.url)
    finally:
        proxy.shutdown()
    assert proxy.lost == 1 and event["extra"]["batch_uri"] == uri
    retried = [r.getMessage() for r in caplog.records if r.name == "airloop.retry"]
    assert len(retried) == 1 and "/assets/events failed (connection error" in retried[0], retried
    posted = [e for e in client.asset_events(settings.assets.landing) if e["extra"].get("batch_uri") == uri]
    assert len(posted) == 2  # Airflow got the event twice: the lost answer's and the retry's

    _wait_ingested(client, [uri], since)
    ids = set(batch[settings.schema_.key])
    curated = _curated_ids(settings, ids)
    assert len(curated) == len(ids) == 400 and curated.is_unique  # every row once


SCHEDULER = next(s for s in stack.SERVICES if s.name == "scheduler")


def _wait_for_a_running_ingest_task(client, since: datetime) -> None:
    deadline = time.monotonic() + 180
    while not any(
        t["state"] == "running"
        for r in touched_since(client.dag_runs("ingest"), since)
        for t in client.task_instances("ingest", r["dag_run_id"])
    ):
        assert time.monotonic() < deadline, "no ingest task started"
        time.sleep(0.2)


def test_the_scheduler_killed_mid_run_loses_no_batch_and_duplicates_no_row(airflow_stack, capsys):
    settings, client, env = airflow_stack
    client.wait_for_dag("ingest", timeout=180)
    batches = [simulate.generate_batch(settings, "stable", index=i, rows=400, at=PAST) for i in (802, 803)]
    landing = settings.storage.landing_uri
    uris = [simulate.write_batch(b, landing, f"e2e-scheduler-kill-{i}") for i, b in enumerate(batches)]
    since = datetime.now(UTC)
    simulate.notify_airflow(uris[0], settings, rows=400)
    _wait_for_a_running_ingest_task(client, since)

    pid = stack.service_pid(settings, SCHEDULER)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    while stack.service_pid(settings, SCHEDULER) is not None:
        time.sleep(0.1)
    # the upstream system goes on: the api-server takes its event while no scheduler runs
    simulate.notify_airflow(uris[1], settings, rows=400)
    with airloop_environment(env):
        stack.start(settings, quiet=True)  # what `airloop up` does: start what died
    back = time.monotonic() - killed

    runs = _wait_ingested(client, uris, since, timeout=400)
    recovered = time.monotonic() - killed
    ids = set().union(*(set(b[settings.schema_.key]) for b in batches))
    curated = _curated_ids(settings, ids)
    assert len(curated) == len(ids) == 800 and curated.is_unique  # nothing lost, nothing twice
    failed = [(r["dag_run_id"], r["state"]) for r in runs if r["state"] != "success"]
    keep("scheduler kill -9 mid-run", {
        "rows": len(ids), "runs": len(runs), "failed": failed, "lost": len(ids) - len(curated),
        "duplicated": len(curated) - curated.nunique(), "back_s": round(back, 1),
        "ingested_after_s": round(recovered, 1),
    })  # fmt: skip
    with capsys.disabled():
        print(
            f"\n[e2e] scheduler kill -9 mid-run: 2 batches (800 rows) posted, 1 while it was down; "
            f"{len(runs)} runs, failed {failed}; rows lost {len(ids) - len(curated)}, duplicated "
            f"{len(curated) - curated.nunique()}; back in {back:.1f}s, all ingested {recovered:.1f}s after"
        )
    assert not failed
