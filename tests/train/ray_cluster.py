"""A Ray cluster of two nodes on this machine, for the Ray job tests: ``ray start --head`` and a
second ``ray start --address`` node, each with one CPU, its own temporary directory and ports
outside the ephemeral range, Ray's token authentication, and the repository importable (the
nodes stand in for nodes running the train image). Stopped by killing exactly the processes it
started (never ``ray stop``: that stops every Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tasks.common.net import free_ports
from tests.services import wait_until

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ray-job-test-token-0123456789abcdef"
START_SECONDS = 180
NODE_PORTS = [
    "node-manager-port", "object-manager-port", "metrics-export-port",
    "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
]  # fmt: skip
HEAD_PORTS = ["port", "dashboard-port", "ray-client-server-port"]


@dataclass
class Cluster:
    """The running cluster: its dashboard (the Jobs API), token and processes."""

    dashboard_url: str
    token: str
    temp: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def alive_nodes(self) -> int:
        resp = requests.get(f"{self.dashboard_url}/nodes?view=summary", headers=self.headers(), timeout=10)
        nodes = resp.json()["data"]["summary"]
        return sum(1 for n in nodes if (n.get("raylet") or {}).get("state") == "ALIVE")

    def logs(self) -> str:
        files = sorted(self.temp.glob("*.log")) + sorted(self.temp.glob("*/session_latest/logs/*.err"))
        return "\n".join(f"--- {f} ---\n{f.read_text(errors='replace')[-2000:]}" for f in files)


def _ports(names: list[str]) -> list[str]:
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    workers = free_ports(11, contiguous=True)
    args = [f"--{name}={port}" for name, port in ports.items()]
    return [*args, f"--min-worker-port={workers[0]}", f"--max-worker-port={workers[-1]}"]


def _node_env(token: str, home: Path) -> dict[str, str]:
    """What a train-image node has: the project on the path, ``python`` the project's."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "HOME": str(home),
        "PATH": path,
        "PYTHONPATH": pythonpath,
        "OMP_WAIT_POLICY": "PASSIVE",
        # a multi-node cluster, whatever an earlier test set for its single-node Ray (the serving
        # tests set 0 in this process: Ray then refuses a second node)
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
    }


def _start(cluster: Cluster, name: str, args: list[str]) -> None:
    folder = cluster.temp / name
    folder.mkdir()
    ray = str(Path(sys.executable).with_name("ray"))
    common = ["--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", "--num-cpus=1"]
    with (cluster.temp / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            [ray, "start", *common, f"--temp-dir={folder}", *args],
            env=_node_env(cluster.token, folder), cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    cluster.procs.append(proc)


def _descendants(pid: int) -> set[int]:
    import psutil

    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _up(cluster: Cluster, nodes: int) -> bool:
    for proc in cluster.procs:
        cluster.pids.update(_descendants(proc.pid))
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}\n{cluster.logs()}")
    return cluster.alive_nodes() >= nodes


def _wait(cluster: Cluster, nodes: int, what: str) -> None:
    try:
        wait_until(lambda: _up(cluster, nodes), START_SECONDS, what)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{cluster.logs()}") from None


def stop(cluster: Cluster) -> None:
    """SIGTERM, then SIGKILL, exactly the processes this cluster started; wait until gone."""
    for proc in cluster.procs:
        cluster.pids.update(_descendants(proc.pid))
    pids = {p.pid for p in cluster.procs} | cluster.pids
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 5, "Ray to stop")
            break
        except TimeoutError:
            continue
    for proc in cluster.procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


@contextlib.contextmanager
def two_nodes(token: str = TOKEN) -> Iterator[Cluster]:
    """A head and a worker node of one CPU each, token-protected; stopped on the way out."""
    temp = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))  # Ray's socket paths must stay short
    head = _ports([*HEAD_PORTS, *NODE_PORTS])
    gcs, dashboard = head[0].split("=")[1], head[1].split("=")[1]
    cluster = Cluster(f"http://127.0.0.1:{dashboard}", token, temp)
    try:
        _start(cluster, "head", ["--head", "--include-dashboard=true", "--dashboard-host=127.0.0.1", *head])
        _wait(cluster, 1, "the Ray head")
        _start(cluster, "worker", [f"--address=127.0.0.1:{gcs}", *_ports(NODE_PORTS)])
        _wait(cluster, 2, "the second Ray node")
        yield cluster
    finally:
        stop(cluster)
        shutil.rmtree(temp, ignore_errors=True)
