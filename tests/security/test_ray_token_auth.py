"""Ray's token authentication as the production Ray head runs it (docker-compose.yaml ``ray-head``:
``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``), for real: a ``ray start --head`` here on free ports,
and the dashboard's REST API (version, Jobs, Serve applications) asked with no token, a wrong one
and the right one; the healthcheck's request works with the token. Stopped by killing exactly
the processes it started (never ``ray stop``: that stops every Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from tasks.common.net import free_port
from tests.services import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ray-test-token-0123456789abcdef"
PROTECTED = ["/api/version", "/api/jobs/", "/api/serve/applications/", "/nodes?view=summary"]


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@pytest.fixture(scope="module")
def ray_head():
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # Ray's socket paths must stay short
    names = ["port", "dashboard-port", "node-manager-port", "object-manager-port", "ray-client-server-port"]
    names += ["dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port"]
    ports = {name: free_port() for name in [*names, "metrics-export-port"]}
    low = free_port()
    args = [f"--{name}={port}" for name, port in ports.items()]
    args += [f"--min-worker-port={low}", f"--max-worker-port={low + 20}", "--num-cpus=1"]
    args += [
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "HOME": str(temp)}
    ray = str(Path(sys.executable).with_name("ray"))
    proc = subprocess.Popen(
        [ray, "start", "--head", "--block", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{ports['dashboard-port']}"
    started = time.monotonic()
    children: set[int] = set()

    def up() -> bool:
        children.update(_descendants(proc.pid))
        assert proc.poll() is None, "ray start exited"
        return requests.get(f"{url}/api/version", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).ok

    try:
        wait_until(up, 180, "the Ray head's dashboard")
        yield url, time.monotonic() - started
    finally:
        children.update(_descendants(proc.pid))
        _signal([proc.pid, *children], signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal([proc.pid, *children], signal.SIGKILL)
            proc.wait()
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 30, "Ray to stop")
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.parametrize("path", PROTECTED)
def test_the_rest_api_needs_the_token(ray_head, path):
    url, _ = ray_head
    assert requests.get(f"{url}{path}", timeout=10).status_code == 401
    wrong = requests.get(f"{url}{path}", headers={"Authorization": "Bearer not-the-token"}, timeout=10)
    assert wrong.status_code == 403
    right = requests.get(f"{url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert right.status_code == 200, right.text[:200]


def test_submitting_a_job_without_the_token_runs_nothing(ray_head, tmp_path):
    url, _ = ray_head
    marker = tmp_path / "ran"
    job = {"entrypoint": f"touch {marker}"}
    assert requests.post(f"{url}/api/jobs/", json=job, timeout=10).status_code == 401
    put = requests.put(f"{url}/api/serve/applications/", json={"applications": []}, timeout=10)
    assert put.status_code == 401
    assert not marker.exists()


def test_the_compose_healthcheck_passes_with_the_token(ray_head):
    """The ray-head healthcheck's own request (its Python, with the dashboard's address here)."""
    url, seconds = ray_head
    doc = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    script = doc["services"]["ray-head"]["healthcheck"]["test"][-1]
    script = script.replace("http://localhost:8265", url).replace(
        'u.urlopen("http://localhost:8000/-/healthz", timeout=5)', ""
    )
    env = {**os.environ, "RAY_AUTH_TOKEN": TOKEN}
    ok = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    env["RAY_AUTH_TOKEN"] = "not-the-token"
    bad = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "403" in bad.stderr
    print(f"ray head with token auth up in {seconds:.0f} s")
