"""Fault injection for the serving tests: the write-ahead log's own disk, the real processes to
kill, and a steady load that accounts for every request it sends.

- ``WalDisk``: the WAL directory on a small tmpfs of its own when the tests run as root (CI
  does), which a test fills (ENOSPC on every write, open segment included) or remounts read-only
  (EROFS; the kernel allows that only while no file on it is open for writing). Without root it is
  a plain folder and ``fill`` takes its write permission away instead (a new segment cannot be
  created; the open one is sealed first by the caller).
- ``replica_pids``: the processes of a Serve deployment's replicas (``ray::ServeReplica:<app>:<name>``).
- ``SteadyLoad``: open-loop ``/score`` requests at a fixed rate from a thread pool, each with its own
  transaction id, every outcome recorded with its time: sent, answered (request ids), failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests


class WalDisk:
    """The WAL's folder, on its own small tmpfs when possible."""

    def __init__(self, path: Path, size_mb: int = 64) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.mounted = False
        if os.geteuid() == 0 and shutil.which("mount"):
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            self.mounted = done.returncode == 0
        self._filler = path / ".filler"

    def fill(self) -> None:
        """Leave no byte free (tmpfs), or no write permission (a plain folder)."""
        if not self.mounted:
            for p in [self.path, *self.path.rglob("*")]:
                if p.is_dir():
                    p.chmod(0o555)
            return
        # unbuffered: no flush at close to fail outside the suppression
        with contextlib.suppress(OSError), open(self._filler, "wb", buffering=0) as fh:
            block = b"\0" * (1 << 20)
            while True:
                fh.write(block)
        with contextlib.suppress(OSError), open(self._filler, "ab", buffering=0) as fh:
            while True:  # the last partial page
                fh.write(b"\0" * 512)

    def free(self) -> None:
        if not self.mounted:
            for p in [self.path, *self.path.rglob("*")]:
                if p.is_dir():
                    p.chmod(0o755)
            return
        self._filler.unlink(missing_ok=True)

    def remount(self, *, read_only: bool) -> subprocess.CompletedProcess[str]:
        """``mount -o remount,ro|rw`` (tmpfs only; refused while a file is open for writing)."""
        flag = "ro" if read_only else "rw"
        return subprocess.run(
            ["mount", "-o", f"remount,{flag}", str(self.path)], capture_output=True, text=True, check=False
        )

    def release(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
            self.mounted = False


def replica_pids(app: str, deployment: str) -> list[int]:
    """Pids of the live replicas of ``deployment`` in Serve application ``app``."""
    prefix = f"ray::ServeReplica:{app}:{deployment}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv0 = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0]
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if argv0.strip() == prefix and state != "Z":
            pids.append(int(entry))
    return sorted(pids)


def kill9(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class SteadyLoad:
    """``rate`` requests per second to ``url``/score until stopped, open loop."""

    url: str
    bodies: list[dict]
    rate: float = 50.0
    workers: int = 16
    headers: dict[str, str] = field(default_factory=lambda: {"X-Airloop-Traffic": "synthetic"})
    answered: dict[str, float] = field(default_factory=dict)
    """request id -> when its 200 came back."""
    failures: list[tuple[float, str]] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    sent: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._thread = threading.Thread(target=self._play, daemon=True)

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            self._local.session.headers.update(self.headers)
        return self._local.session

    def _one(self, i: int) -> None:
        body = {**self.bodies[i % len(self.bodies)], "transaction_id": f"load-{id(self)}-{i}"}
        try:
            resp = self._session().post(f"{self.url}/score", json=body, timeout=30)
            outcome = str(resp.status_code)
            request_id = resp.json().get("request_id") if resp.status_code == 200 else None
            detail = "" if resp.status_code == 200 else resp.text[:1000]
        except (requests.RequestException, ValueError) as exc:
            outcome, request_id, detail = type(exc).__name__, None, str(exc)[:200]
        with self._lock:
            self.codes[outcome] += 1
            if request_id:
                self.answered[request_id] = time.monotonic()
            else:
                self.failures.append((time.monotonic(), f"{outcome}: {detail}"))

    def _play(self) -> None:
        started = time.monotonic()
        with ThreadPoolExecutor(self.workers) as pool:
            i = 0
            while not self._stop.is_set():
                due = started + i / self.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                pool.submit(self._one, i)
                i += 1
                self.sent = i

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def wait_answers(self, n: int, timeout: float = 60.0) -> None:
        """Until ``n`` more requests were answered."""
        target = len(self.answered) + n
        deadline = time.monotonic() + timeout
        while len(self.answered) < target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.answered) >= target, f"only {len(self.answered)} of {target} answers: {self.codes}"

    def recovery_seconds(self, since: float) -> float:
        """From ``since`` (the fault) to the last failure after it (0 if none failed)."""
        after = [t for t, _ in self.failures if t >= since]
        return max(after) - since if after else 0.0

    def summary(self) -> dict:
        return {
            "sent": self.sent,
            "answered": len(self.answered),
            "failed": len(self.failures),
            "codes": dict(self.codes),
        }
