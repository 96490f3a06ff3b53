"""A triggered run is created once, even when the answer to its POST is lost and it is retried.

Airflow's REST API is played here by a small HTTP server with the two rules of the real one that
matter (read from ``airflow.api_fastapi``: ``TriggerDAGRunPostBody`` takes the caller's
``dag_run_id``; a unique-constraint error on it answers 409): the fault to inject, a run created
whose answer never arrives, cannot be made to happen on a real api-server on demand. The real
API is exercised by the end-to-end tests (the story triggers its first training through it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from tasks.platform.airflow_client import AirflowClient
from tests.services import JsonHandler


class FakeAirflow(ThreadingHTTPServer):
    def __init__(self, lose_answers: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.runs: dict[str, dict[str, object]] = {}
        self.posts = 0
        self.lose_answers = lose_answers


class Handler(JsonHandler):
    server: FakeAirflow

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path == "/auth/token":
            self._reply(201, {"access_token": "t"})
            return
        self.server.posts += 1
        run_id = str(body.get("dag_run_id") or f"manual__server_{len(self.server.runs)}")
        if run_id in self.server.runs:
            self._reply(409, {"detail": "Unique constraint violation"})
            return
        self.server.runs[run_id] = {"dag_run_id": run_id, "state": "queued", "conf": body.get("conf")}
        if self.server.lose_answers > 0:  # created, but the answer is lost on the way back
            self.server.lose_answers -= 1
            self._reply(503, {"detail": "upstream connect error"})
            return
        self._reply(200, self.server.runs[run_id])

    def do_GET(self) -> None:
        run_id = self.path.rsplit("/", 1)[-1]
        run = self.server.runs.get(run_id)
        self._reply(200 if run else 404, run or {"detail": "not found"})


@pytest.fixture
def fake_airflow() -> Iterator[FakeAirflow]:
    server = FakeAirflow(lose_answers=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_retried_trigger_returns_the_run_the_lost_answer_created(fake_airflow):
    client = AirflowClient(f"http://127.0.0.1:{fake_airflow.server_address[1]}", "admin", "pw", retry_s=30)
    run = client.trigger("train", {"reason": "demo: the first model"})
    assert fake_airflow.posts == 2  # the first POST's answer was lost: it was sent again
    assert list(fake_airflow.runs) == [run["dag_run_id"]]  # one run, and it is the one returned
    assert run["conf"] == {"reason": "demo: the first model"}
    assert run["dag_run_id"].startswith("manual__")
    again = client.trigger("train")
    assert again["dag_run_id"] != run["dag_run_id"] and len(fake_airflow.runs) == 2
