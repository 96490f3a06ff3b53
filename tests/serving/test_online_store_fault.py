"""The online store (Redis, the production profile's) stopped and restarted under steady traffic.

A Redis server of the test's own (``redis-server`` from the machine, appendonly, so a restart keeps
what was materialized) holds the session's features, applied and materialized the way the
features DAG does it against a Feast registry of its own; an application of its own (``airloop-
redis`` beside the session's, same Ray) reads it. While Redis is down, scoring answers 503
``features`` (retryable: nothing scored, nothing logged) and ``/health`` says why; once it is back,
scoring recovers with no restart. Every 200 is in the inference log, none twice."""

from __future__ import annotations

import shutil
import subprocess
import time

import pandas as pd
import pytest

from tasks.common.net import free_port
from tests.serving.faults import SteadyLoad
from tests.serving.test_faults import RATE, account, record, wait_until

pytestmark = pytest.mark.slow


class RedisServer:
    """``redis-server`` on a free port, with its data in ``folder`` (it survives a restart)."""

    def __init__(self, folder) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (CI installs it: see .ci/run)")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: redis.Redis(port=self.port).ping(), 30, "Redis")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def redis_app(serving_app, tmp_path_factory):
    """The session's features in a Redis of this module's, and an application reading them."""
    from ray import serve as ray_serve

    from tasks.features import store
    from tasks.features.materialization import materialize
    from tasks.features.tables import FeatureChanges
    from tasks.serving import process as serve

    folder = tmp_path_factory.mktemp("redis-online")
    server = RedisServer(folder)
    server.start()
    base = serving_app.settings
    feast = base.feast.model_copy(
        update={
            "registry": str(folder / "registry.db"),
            "online_store": base.feast.online_store.model_copy(
                update={"type": "redis", "path": None, "connection_string": f"127.0.0.1:{server.port}"}
            ),
        }
    )
    serving = base.serving.model_copy(update={"app_name": "airloop-redis", "route_prefix": "/redis"})
    settings = base.model_copy(update={"feast": feast, "serving": serving})
    store.apply(settings)
    end = serving_app.events[base.schema_.timestamp].max()
    materialize(
        settings, FeatureChanges(start="2025-12-01T00:00:00+00:00", end=pd.Timestamp(end).isoformat())
    )
    url = serve.start(settings)
    try:
        yield settings, url, server
    finally:
        ray_serve.delete(settings.serving.app_name)
        server.stop()


def test_redis_stopped_and_restarted_under_load(redis_app, serving_app):
    _, url, server = redis_app
    client = serving_app.client(url, synthetic=True)
    assert client.health()["status"] == "ok"
    known = client.score(serving_app.transaction(5))
    assert known["unknown_entities"] == [], "the features come from Redis"
    since = pd.Timestamp.now(tz="UTC")
    bodies = [serving_app.transaction(i % 300) for i in range(300)]
    with SteadyLoad(url, bodies, rate=RATE) as load:
        load.wait_answers(100)
        stopped_at = time.monotonic()
        server.stop()
        wait_until(lambda: len([t for t, _ in load.failures if t > stopped_at]) >= 20, 60, "refusals")
        health = client.session.get(f"{url}/health", timeout=30)
        assert health.status_code in (200, 503)  # the store was warmed: /health checks what it knows
        down_for = time.monotonic() - stopped_at
        server.start()
        restarted_at = time.monotonic()
        back = wait_until(
            lambda: client.score(serving_app.transaction(7))["unknown_entities"] == [], 60, "scoring"
        )
        load.wait_answers(100)
    refusals = [why for t, why in load.failures if t >= stopped_at]
    assert refusals and all(why.startswith("503") and "features" in why for why in refusals), refusals[:3]
    assert all('"retryable":true' in why for why in refusals), refusals[:3]
    late = [t for t, _ in load.failures if t > restarted_at + back + 2.0]
    assert not late, f"{len(late)} failures after Redis was back"
    books = account(serving_app, client, load, since)
    figures = record("online store (Redis) stopped, restarted", load, stopped_at, books, down_for + back)
    assert figures["lost"] == 0 and figures["duplicated"] == 0
