"""Rollout records: one JSON document per rollout, rewritten after every step.

The record is the rollout's state between the deploy DAG's tasks (each step reads it, acts, and
writes it back) and, once finished, its history: which version, against which champion, which
steps with which measurements and judgments, how long each took, and how it ended.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tasks.common import storage
from tasks.common.clock import now_iso

if TYPE_CHECKING:
    from config import Settings

RUNNING, PROMOTED, ROLLED_BACK, NOTHING_TO_DO = "running", "promoted", "rolled_back", "nothing_to_do"
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass
class StepRecord:
    name: str
    kind: str
    """``smoke``, ``shadow``, ``canary``, ``promote`` or ``rollback``."""
    status: str
    started_at: str
    ended_at: str | None = None
    seconds: float | None = None
    weight: float | None = None
    shadow: bool = False
    requests: int | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    def end(self, status: str, reason: str | None = None) -> None:
        """The step is over: ``passed``, ``failed`` or ``skipped``, and how long it took."""
        self.status, self.reason, self.ended_at = status, reason, now_iso()
        started, ended = datetime.fromisoformat(self.started_at), datetime.fromisoformat(self.ended_at)
        self.seconds = round((ended - started).total_seconds(), 3)


@dataclass
class RolloutRecord:
    id: str
    model: str
    version: str
    champion_version: str | None
    """What the champion slot served when the rollout began (what a rollback returns to)."""
    first: bool
    """No champion yet: after the smoke test the version goes straight to 100 %."""
    status: str
    started_at: str
    ended_at: str | None = None
    reason: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    """Where it came from: DAG id, run id, the asset event's extra."""
    steps: list[StepRecord] = field(default_factory=list)
    champion_reference: dict[str, Any] | None = None
    """The champion's numbers from the latest step where it served enough (``judge.reference``)."""
    base_rate: dict[str, Any] | None = None
    """The observed fraud rate the scores are held to (``scores.BaseRate``), measured at smoke."""
    report: str | None = None

    @property
    def finished(self) -> bool:
        return self.status != RUNNING

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.steps if s.name == name), None)

    def start(self, name: str, kind: str, **kw: Any) -> StepRecord:
        """A new running step ``name`` (replacing an earlier try of it)."""
        step = StepRecord(name=name, kind=kind, status=RUNNING, started_at=now_iso(), **kw)
        self.steps = [s for s in self.steps if s.name != name] + [step]
        return step

    def end(self, status: str, reason: str | None = None) -> None:
        """The rollout is over: ``promoted``, ``rolled_back`` or ``nothing_to_do``."""
        self.status, self.reason, self.ended_at = status, reason, now_iso()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutRecord:
        data = dict(data)
        data["steps"] = [StepRecord(**s) for s in data.get("steps", [])]
        return cls(**data)


@dataclass(frozen=True)
class StepResult:
    """What a rollout step's task returns (its XCom): which rollout, where it stands now."""

    rollout_id: str
    status: str
    """The rollout's status after the step (``running`` until it ends)."""
    version: str

    @classmethod
    def of(cls, record: RolloutRecord) -> StepResult:
        return cls(rollout_id=record.id, status=record.status, version=record.version)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepResult:
        return cls(
            rollout_id=str(data["rollout_id"]), status=str(data["status"]), version=str(data["version"])
        )


def new_id(version: str) -> str:
    """``v<version>-<UTC time>``: sortable, and safe as a file and report name."""
    return f"v{version}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"


def safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", text)


def _folder(settings: Settings) -> str:
    return storage.join(
        settings.storage.data_uri, settings.rollout.history_dir, safe(settings.mlflow.registered_model)
    )


def save(settings: Settings, record: RolloutRecord) -> str:
    uri = storage.join(_folder(settings), f"{record.id}.json")
    return storage.write_text(uri, json.dumps(record.as_dict(), indent=2, default=str))


def load(settings: Settings, rollout_id: str) -> RolloutRecord:
    uri = storage.join(_folder(settings), f"{safe(rollout_id)}.json")
    if not storage.exists(uri):
        raise KeyError(f"no rollout {rollout_id!r} at {uri}")
    return RolloutRecord.from_dict(json.loads(storage.read_bytes(uri)))


def history(settings: Settings, limit: int | None = None) -> list[RolloutRecord]:
    """The model's rollouts, newest first."""
    uris = sorted(storage.list_files(_folder(settings), ["*.json"]), key=storage.basename, reverse=True)
    out = [RolloutRecord.from_dict(json.loads(storage.read_bytes(uri))) for uri in uris[:limit]]
    return sorted(out, key=lambda r: r.started_at, reverse=True)
