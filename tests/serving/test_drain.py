"""``python -m tasks.serving run`` as the stack runs it (a process of its own, its own Ray), stopped
with SIGTERM under steady traffic: it stops accepting, answers what it took, writes its inference
log, shuts Serve and Ray down within ``serving.stop_timeout_seconds``, and leaves no process and
no listener behind (the HAProxy of the last round stayed on the scoring port). Every listener it
opened while up was on loopback (the local profile). A SIGTERM during startup stops it too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests

from config import PROJECT_ROOT, read_config
from tasks.common.net import free_port
from tasks.serving import haproxy, inference_log, process
from tests.serving.faults import SteadyLoad

pytestmark = pytest.mark.slow


def listeners(pids: set[int]) -> list[tuple[str, int]]:
    """``(address, port)`` of every listening TCP socket the processes hold (``/proc``)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] != "0A" or parts[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = parts[1].split(":")
            found.append((_address(address, width), int(port, 16)))
    return found


def _address(hexaddr: str, width: int) -> str:
    raw = bytes.fromhex(hexaddr)
    if width == 8:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def loopback(address: str) -> bool:
    return address in ("127.0.0.1", "::1", "::ffff:127.0.0.1") or address.startswith("127.")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        # SO_REUSEADDR: the load's closed connections linger in TIME_WAIT; only a listener refuses
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def tree(pid: int) -> set[int]:
    return {pid, *process.descendants(pid)}


def serving_process(world, tmp_path: Path) -> tuple[subprocess.Popen[bytes], dict[str, str], Path]:
    port = free_port()
    env = {
        **os.environ,
        **world.env,
        "AIRLOOP_PROFILE": "local",
        "PYTHONPATH": str(PROJECT_ROOT),
        "RAY_USAGE_STATS_ENABLED": "0",
        "AIRLOOP__SERVING__PORT": str(port),
        "AIRLOOP__SERVING__RAY_NUM_CPUS": "2",
        "AIRLOOP__SERVING__INFERENCE_LOG__WAL_DIR": str(tmp_path / "wal"),
    }
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasks.serving", "run"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, env, log


def test_sigterm_under_load_drains_writes_the_log_and_leaves_nothing_behind(serving_world, tmp_path):
    proc, env, log = serving_process(serving_world, tmp_path)
    settings = read_config("local", env)
    url = settings.serving.url
    try:
        deadline = time.monotonic() + 240
        while "ready at" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert requests.get(f"{url}/health", timeout=30).status_code == 200, log.read_text()[-2000:]
        up = tree(proc.pid)
        opened = listeners(up)
        # HAProxy and Serve's proxies listen on loopback only; Ray's own agents (metrics export,
        # runtime-env, dashboard agent) still open wildcard ports of their own, so they are not
        # checked here.
        scoring = [a for a, port in opened if port == settings.serving.port]
        assert scoring and all(loopback(a) for a in scoring), f"scoring port not on loopback: {opened}"
        since = pd.Timestamp.now(tz="UTC")
        bodies = [serving_world.transaction(i % 300) for i in range(300)]
        with SteadyLoad(url, bodies, rate=50) as load:
            load.wait_answers(100)
            stopped_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=settings.serving.stop_timeout_seconds + 10)
            took = time.monotonic() - stopped_at
        assert rc == 0, log.read_text()[-3000:]
        assert took <= settings.serving.stop_timeout_seconds, f"stopped in {took:.1f} s"
        left = [
            p for p in up if Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text()
        ]
        assert not left, f"still running: {left}"
        assert port_free(settings.serving.port), "nothing listens on the scoring port any more"
        assert not haproxy.processes_naming(haproxy.run_dir(settings)), "no HAProxy left"
        assert not list((tmp_path / "wal").rglob("*.wal")), "the WAL was compacted at shutdown"
        logged = inference_log.read_predictions(
            settings, since, pd.Timestamp.now(tz="UTC") + pd.Timedelta("1min"), labels=False
        )
        assert set(load.answered) <= set(logged["request_id"]), "every answered prediction is in the log"
        print(f"\nDRAIN stopped in {took:.1f} s under load; {load.summary()}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
