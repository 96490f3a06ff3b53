"""Memory of the stack's services: each one's process tree, resident (RSS) and proportional (PSS).

A service's tree is its process and every descendant (Airflow's LocalExecutor workers and task
processes, uvicorn workers, PostgreSQL's backends, Ray's raylet, GCS, workers and Serve replicas),
plus anything left in its session after a parent died. RSS counts a page shared by forked
workers once per process, so a sum of RSS overstates what the machine gives; PSS splits each
shared page between its sharers, so PSS sums to the real total. Both come from ``/proc``.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PAGE = 4096
PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    session: int
    name: str


@dataclass
class Usage:
    """One service's tree: bytes resident and proportional, and its processes by name."""

    rss: int = 0
    pss: int = 0
    processes: int = 0
    by_name: dict[str, int] = field(default_factory=dict)
    """RSS per process name (``airflow worker``, ``raylet``, ``postgres`` ...)."""

    def add(self, other: Usage) -> None:
        self.rss += other.rss
        self.pss += other.pss
        self.processes += other.processes
        for name, value in other.by_name.items():
            self.by_name[name] = self.by_name.get(name, 0) + value


def processes() -> dict[int, Proc]:
    """Every live (not zombie) process: pid, parent, session, name."""
    out = {}
    for stat in PROC.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            pid = int(stat.parent.name)
            out[pid] = Proc(pid, int(fields[1]), int(fields[3]), name)
    return out


def tree(root: int, procs: dict[int, Proc] | None = None) -> list[int]:
    """``root``, its descendants, and what else is left in its session (orphans reparented)."""
    procs = processes() if procs is None else procs
    if root not in procs:
        return []
    children: dict[int, list[int]] = defaultdict(list)
    for proc in procs.values():
        children[proc.ppid].append(proc.pid)
    seen, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen.add(pid)
            stack.extend(children.get(pid, []))
    session = procs[root].session
    seen.update(p.pid for p in procs.values() if session == root and p.session == session)
    return sorted(seen)


def _read_kb(path: Path, key: str) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in path.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _label(proc: Proc) -> str:
    """A readable name: Airflow retitles its processes (``airflow worker -- LocalExecutor``)."""
    with contextlib.suppress(OSError):
        argv = (PROC / str(proc.pid) / "cmdline").read_bytes().split(b"\0")
        first = argv[0].decode(errors="replace")
        if first.startswith(("airflow", "ray::", "postgres:")):
            return " ".join(first.split()[:2])
    return proc.name


def _measure(pids: list[int], procs: dict[int, Proc]) -> Usage:
    out = Usage()
    for pid in pids:
        rss = _read_kb(PROC / str(pid) / "status", "VmRSS:")
        pss = _read_kb(PROC / str(pid) / "smaps_rollup", "Pss:") or rss
        out.rss += rss
        out.pss += pss
        out.processes += 1
        label = _label(procs[pid])
        out.by_name[label] = out.by_name.get(label, 0) + rss
    return out


def usage(root: int) -> Usage:
    """Memory of ``root``'s tree (zero when it does not run)."""
    procs = processes()
    return _measure(tree(root, procs), procs)


def by_service(pids: dict[str, int]) -> dict[str, Usage]:
    """Each service's tree from one snapshot of ``/proc``; a process is counted once, for the
    first service whose tree holds it."""
    procs = processes()
    counted: set[int] = set()
    out = {}
    for name, pid in pids.items():
        members = [p for p in tree(pid, procs) if p not in counted]
        counted.update(members)
        out[name] = _measure(members, procs)
    return out


def sum_usage(parts: list[Usage]) -> Usage:
    total = Usage()
    for part in parts:
        total.add(part)
    return total


def mib(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB"


class Sampler:
    """Samples the stack's memory every ``every`` seconds in a thread: the peak of the total
    (RSS and PSS) and each service's own peak, for the demo's summary and the benchmark."""

    def __init__(self, pids: Callable[[], dict[str, int]], every: float = 3.0) -> None:
        self.pids = pids
        self.every = every
        self.peak_rss = 0
        self.peak_pss = 0
        self.by_service: dict[str, int] = {}
        self.at_peak_pss: dict[str, int] = {}
        """Each service's PSS in the sample with the highest total PSS: where the peak comes from."""
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def sample(self) -> Usage:
        usage = by_service(self.pids())
        total = sum_usage(list(usage.values()))
        self.samples += 1
        self.peak_rss = max(self.peak_rss, total.rss)
        if total.pss > self.peak_pss:
            self.peak_pss = total.pss
            self.at_peak_pss = {name: used.pss for name, used in usage.items()}
        for name, used in usage.items():
            self.by_service[name] = max(self.by_service.get(name, 0), used.rss)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(OSError):
                self.sample()

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, object]:
        self._stop.set()
        self._thread.join(timeout=10)
        return {
            "peak_rss": self.peak_rss,
            "peak_pss": self.peak_pss,
            "peak_rss_by_service": dict(self.by_service),
            "pss_by_service_at_peak": dict(self.at_peak_pss),
            "samples": self.samples,
        }
