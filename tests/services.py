"""Real backing services for production-profile tests: Postgres, Redis and an S3 endpoint.

Each is started from binaries on the machine (Postgres from its install, ``redis-server`` from
apt, S3 from moto's server) on a free port in a temporary folder, polled until it answers, and
stopped at the end of the session. Nothing is mocked: Feast talks to them over the network.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tasks.common.net import free_port

MLFLOW_LOGIN = {
    "AIRLOOP__MLFLOW__ADMIN_PASSWORD": os.environ.setdefault(
        "AIRLOOP__MLFLOW__ADMIN_PASSWORD", secrets.token_urlsafe(24)
    )
}
"""One admin password for every local MLflow server the tests start (each in its own home), so
that the test process's clients log in to any of them (tests/conftest.py sets their login)."""


def mlflow_login() -> tuple[str, str]:
    """The test process's MLflow login, for plain HTTP requests (a browser's basic auth)."""
    return os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]


_RELEASES: list[Callable[[], None]] = []


def release_early(stop: Callable[[], None]) -> Callable[[], None]:
    """Register ``stop`` (of a session-wide service) to run when ``release_shared_services`` is
    called, before the session ends; returns a stop that runs at most once, for the fixture's own
    teardown."""
    done: list[bool] = []

    def once() -> None:
        if not done:
            done.append(True)
            stop()

    _RELEASES.append(once)
    return once


def release_shared_services() -> None:
    """Stop what ``release_early`` registered: the end-to-end tests run last and start a whole
    stack of their own, which should not share two cores with an idle Ray cluster (the serving
    tests' application and MLflow server, about 0.4 of a core and 3 GB)."""
    while _RELEASES:
        _RELEASES.pop()()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


def _binary(name: str) -> str:
    path = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if not path:
        pytest.fail(f"{name} is not installed (CI installs it: see .ci/run)")
    return str(path)


@dataclass
class Postgres:
    host: str
    port: int
    user: str = "airloop"

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres", "postgresql"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_postgres_user() -> list[str]:
    """initdb and postgres refuse to run as root; CI runs as root, so drop to `postgres`."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    # Not under pytest's tmp dir: that one is private to root, and Postgres runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="airloop-postgres-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    sudo = _as_postgres_user()
    subprocess.run(
        [*sudo, _binary("initdb"), "-D", str(data), "-U", "airloop", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*sudo, _binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    server = Postgres("127.0.0.1", port)
    try:
        import psycopg

        wait_until(
            lambda: bool(psycopg.connect(server.url("postgres", "postgresql")).close() or True),
            30,
            "Postgres",
        )
        yield server
    finally:
        subprocess.run(
            [*sudo, _binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Redis:
    host: str
    port: int

    @property
    def connection_string(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[Redis]:
    import redis

    root = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        [
            _binary("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(root),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: redis.Redis(port=port).ping(), 20, "Redis")
        yield Redis("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class S3:
    endpoint_url: str

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint_url).create_bucket(Bucket=name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    """moto's S3-compatible server over HTTP, the same protocol MinIO speaks in production."""
    from moto.server import ThreadedMotoServer

    for name, value in {
        "AWS_ACCESS_KEY_ID": "airloop-test",
        "AWS_SECRET_ACCESS_KEY": "airloop-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


class JsonHandler(BaseHTTPRequestHandler):
    """A fake HTTP API's handler base: quiet, and ``_reply`` answers JSON with a status."""

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
