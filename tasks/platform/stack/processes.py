"""The stack's processes: launching each in its own session, pid files, liveness, signals, reaping.

Every service runs as the leader of its own process group, so stopping it reaches the workers it
spawned (task processes, uvicorn workers) too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from config import Settings
from tasks.platform.stack.database import dropped_to
from tasks.platform.stack.environment import airflow_home
from tasks.platform.stack.memory import processes, tree
from tasks.platform.stack.services import Service, client_host, pid_file, service_log

_children: dict[int, subprocess.Popen[bytes]] = {}
"""Processes started by this interpreter: kept so they are reaped, not left as zombies."""


def alive(pid: int, match: str | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, given ``match``, is still our command."""
    if pid in _children and _children[pid].poll() is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                reap(pid)  # it exited after the poll above: collect it (a zombie still holds its pid)
                return False
            if match and match not in (proc / "cmdline").read_bytes().decode(errors="replace"):
                return False
        except (OSError, IndexError):
            return False
    return True


def recorded_pid(settings: Settings, service: Service) -> int | None:
    """The pid in the service's pid file (alive or not), or None."""
    try:
        return int(pid_file(settings, service).read_text().strip())
    except (OSError, ValueError):
        return None


def service_pid(settings: Settings, service: Service) -> int | None:
    """The pid of the running service, or None. A stale pid file stays until the service starts
    again or is stopped: it is how ``leftovers`` finds what a dead service left behind."""
    pid = recorded_pid(settings, service)
    return pid if pid is not None and alive(pid, service.match) else None


def leftovers(settings: Settings, service: Service) -> dict[int, str]:
    """Processes a dead service left in its session (a killed scheduler's LocalExecutor workers,
    a crashed serving process's HAProxy): pid -> name. Linux does not hand out a pid again while
    a session of that id has members, so these are ours; when a live process holds the pid
    again, the session is someone else's and nothing is returned."""
    pid = recorded_pid(settings, service)
    if pid is None or alive(pid, service.match):
        return {}
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return still_running(set(), pid)
    except PermissionError:
        return {}
    return {} if not _zombie(pid) else still_running(set(), pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def port_open(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port`` (another server holds the port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((client_host(host), port)) == 0


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log, for error messages and test failure reports."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def launch(settings: Settings, service: Service, env: dict[str, str]) -> int:
    """Start one service in its own session (process group) with output to its log file."""
    log = service_log(settings, service)
    with log.open("ab") as fh:
        fh.write(f"\n--- airloop start {datetime.now().isoformat()} ---\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            service.command(settings),
            env={**env, **service.env(settings)},
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(airflow_home(settings)),
            start_new_session=True,
            **dropped_to(service.user(settings)),
        )
    _children[proc.pid] = proc
    pid_file(settings, service).write_text(f"{proc.pid}\n")
    return proc.pid


def terminate(service: Service, pid: int) -> None:
    """The service's stop signal (SIGTERM, PostgreSQL's SIGINT) to its process group, or to its
    leader alone (``term_group=False``)."""
    if service.term_group:
        signal_group(pid, service.stop_signal)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, service.stop_signal)


def reap(pid: int) -> None:
    """Collect the exit status of a child this interpreter started (no zombie left behind)."""
    proc = _children.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def members(pid: int) -> set[int]:
    """The service's processes now: its tree and its session (taken before it is asked to stop,
    so children that outlive it are still known)."""
    return set(tree(pid))


def still_running(known: set[int], session: int) -> dict[int, str]:
    """Which of ``known`` still run, and anything else left in ``session``: pid -> name."""
    procs = processes()
    return {p: procs[p].name for p in procs if p in known or procs[p].session == session}


def kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
