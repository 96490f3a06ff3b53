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

from tasks.common.net import free_ports
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


def _start_head(temp: Path) -> tuple[subprocess.Popen, str]:
    """``ray start --head`` on ports outside the ephemeral range, its output in ``temp``."""
    names = ["port", "dashboard-port", "node-manager-port", "object-manager-port", "ray-client-server-port"]
    names += ["dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port"]
    names += ["metrics-export-port"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    workers = free_ports(21, contiguous=True)
    args = [f"--{name}={port}" for name, port in ports.items()]
    args += [f"--min-worker-port={workers[0]}", f"--max-worker-port={workers[-1]}", "--num-cpus=1"]
    args += [
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "HOME": str(temp)}
    ray = str(Path(sys.executable).with_name("ray"))
    with (temp / "ray-start.log").open("ab") as log:
        proc = subprocess.Popen(
            [ray, "start", "--head", "--block", *args],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return proc, f"http://127.0.0.1:{ports['dashboard-port']}"


def _stop_head(proc: subprocess.Popen, children: set[int]) -> None:
    """Kill exactly the processes this test started (``ray stop`` would stop every Ray here)."""
    children.update(_descendants(proc.pid))
    _signal([proc.pid, *children], signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _signal([proc.pid, *children], signal.SIGKILL)
        proc.wait()
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 30, "Ray to stop")


def _logs(temp: Path) -> str:
    """What ``ray start`` and the dashboard said, for a head that did not come up."""
    files = [temp / "ray-start.log", *sorted(temp.glob("session_*/logs/dashboard.*"))]
    return "\n".join(f"--- {f} ---\n{f.read_text(errors='replace')[-3000:]}" for f in files if f.is_file())


def _wait_for_head(proc: subprocess.Popen, url: str, children: set[int], temp: Path) -> bool:
    """Whether the head came up (False: ``ray start`` exited); a timeout shows Ray's own logs."""

    def settled() -> bool:
        children.update(_descendants(proc.pid))
        if proc.poll() is not None:
            return True
        return requests.get(f"{url}/api/version", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).ok

    try:
        wait_until(settled, 180, "the Ray head's dashboard")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{_logs(temp)}") from None
    return proc.poll() is None


@pytest.fixture(scope="module")
def ray_head():
    """A token-protected Ray head; one whose ``ray start`` exits is retried on other ports."""
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # Ray's socket paths must stay short
    started = time.monotonic()
    children: set[int] = set()
    proc, url = _start_head(temp)
    try:
        for _ in range(2):
            if _wait_for_head(proc, url, children, temp):
                break
            _stop_head(proc, children)
            proc, url = _start_head(temp)
        else:
            assert _wait_for_head(proc, url, children, temp), f"ray start --head exited\n{_logs(temp)}"
        yield url, time.monotonic() - started
    finally:
        _stop_head(proc, children)
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
