"""The serving application's desired control state, kept in one place every ingress replica reads.

With several ingress replicas behind HAProxy, a control call reaches one of them; what it
changes (the challenger's share, shadow mode, which version each slot holds, a flush) must hold
on all of them. So the change is written as a new *revision* of the desired state to a store
the replicas share (``ray_state.RayKVStore``: the Ray cluster's own key-value store, no extra
process), the replica that took the call applies it at once, and every other replica applies it
within ``serving.control_poll_seconds`` and reports back (``ReplicaReport``, which also carries
its counters for the merged ``/metrics``). The call answers once every live replica reports the
revision (``serving.control_wait_seconds`` at most). A replica that starts (or restarts) reads
the desired state first, so it comes back serving what the others serve.

Revisions are written compare-and-set (``StateStore.put`` fails when the revision number is
already taken: another replica's change won, and this one is re-applied on top of it).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

STALE_SECONDS = 5.0
"""A replica whose last report is older than this is gone (dead, or stopped): it no longer
counts for convergence nor in the merged metrics."""
FORGET_SECONDS = 120.0
"""Reports older than this are deleted."""


@dataclass(frozen=True)
class Desired:
    """What every ingress replica should be doing. ``slots``: slot -> version (None: empty);
    a slot missing from it serves what it loaded when it started (its alias)."""

    revision: int = 0
    challenger_weight: float = 0.0
    shadow: bool = False
    slots: dict[str, str | None] = field(default_factory=dict)
    flush: int = 0
    """Bumped by ``POST /admin/flush``: each replica compacts its log when it sees a new value."""
    updated_at: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Desired:
        raw = json.loads(data)
        return cls(
            revision=int(raw["revision"]),
            challenger_weight=float(raw["challenger_weight"]),
            shadow=bool(raw["shadow"]),
            slots={str(k): (None if v is None else str(v)) for k, v in raw.get("slots", {}).items()},
            flush=int(raw.get("flush", 0)),
            updated_at=float(raw.get("updated_at", 0.0)),
        )

    def next(self, **changes: Any) -> Desired:
        """The next revision with ``changes``."""
        return replace(self, revision=self.revision + 1, updated_at=time.time(), **changes)


@dataclass(frozen=True)
class ReplicaReport:
    """What a replica last said about itself: the revision it applies, its slots and split,
    the flushes it did, and its counters (``metrics.ServingMetrics.samples``)."""

    replica: str
    revision: int
    flushed: int
    challenger_weight: float
    shadow: bool
    slots: dict[str, str | None]
    at: float
    pid: int = 0
    error: str | None = None
    samples: list[list[Any]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ReplicaReport:
        return cls(**json.loads(data))

    def fresh(self, now: float | None = None) -> bool:
        return (now or time.time()) - self.at < STALE_SECONDS

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """The report as ``/admin/status`` shows it (no samples)."""
        out = {k: v for k, v in asdict(self).items() if k != "samples"}
        out["age_s"] = round((now or time.time()) - self.at, 3)
        return out


class StateStore(Protocol):
    """Where the desired state and the replicas' reports live."""

    def read(self) -> Desired | None:
        """The newest revision (None: nothing was ever changed)."""

    def put(self, state: Desired) -> bool:
        """Write ``state`` as its revision; False (nothing written) when that revision exists."""

    def report(self, report: ReplicaReport) -> None: ...

    def reports(self) -> dict[str, ReplicaReport]: ...

    def forget(self, replica: str) -> None: ...


class MemoryStore:
    """A ``StateStore`` in this process (tests; one replica without Ray)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revisions: dict[int, Desired] = {}
        self._reports: dict[str, ReplicaReport] = {}

    def read(self) -> Desired | None:
        with self._lock:
            return self._revisions[max(self._revisions)] if self._revisions else None

    def put(self, state: Desired) -> bool:
        with self._lock:
            if state.revision in self._revisions:
                return False
            self._revisions[state.revision] = state
            return True

    def report(self, report: ReplicaReport) -> None:
        with self._lock:
            self._reports[report.replica] = report

    def reports(self) -> dict[str, ReplicaReport]:
        with self._lock:
            return dict(self._reports)

    def forget(self, replica: str) -> None:
        with self._lock:
            self._reports.pop(replica, None)


def lagging(
    reports: dict[str, ReplicaReport], revision: int, flush: int, now: float | None = None
) -> list[str]:
    """Live replicas that have not applied ``revision`` (and done flush ``flush``) yet."""
    now = now or time.time()
    return sorted(
        r.replica for r in reports.values() if r.fresh(now) and (r.revision < revision or r.flushed < flush)
    )
