"""The story's timeline: each stage's start, duration, outcome, Airflow run id and what it showed,
shown live as it happens and kept as JSON for the summary, the benchmark and the e2e test.

The live display writes one line when a stage begins and one when it ends; on a terminal it
also keeps one status line under them up to date (elapsed time and the latest news: which window
the monitor judged, which canary step holds), rewritten in place.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

OK, FAILED, SKIPPED, RUNNING = "ok", "failed", "skipped", "running"
MARKS = {OK: "✓", FAILED: "✗", SKIPPED: "-", RUNNING: "▶"}


@dataclass
class Stage:
    key: str
    title: str
    started: str
    ended: str | None = None
    outcome: str = RUNNING
    run_id: str | None = None
    detail: str = ""

    @property
    def seconds(self) -> float | None:
        if self.ended is None:
            return None
        return (datetime.fromisoformat(self.ended) - datetime.fromisoformat(self.started)).total_seconds()


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Display:
    """Lines for stage boundaries; on a TTY, one status line rewritten in place meanwhile."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.live = bool(getattr(self.out, "isatty", lambda: False)())
        self._status = ""
        self._last_note = ""
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            if self.live and self._status:
                self.out.write("\r\033[2K")
            self.out.write(text + "\n")
            if self.live and self._status:
                self.out.write(self._status)
            self.out.flush()

    def status(self, text: str) -> None:
        """The live line (TTY); elsewhere a line only when its news changed."""
        with self._lock:
            if self.live:
                self._status = text[:160]
                self.out.write("\r\033[2K" + self._status)
                self.out.flush()
                return
        news = text.split("  ", 2)[-1]
        if news != self._last_note:
            self._last_note = news
            self.line(text)

    def clear(self) -> None:
        with self._lock:
            if self.live and self._status:
                self.out.write("\r\033[2K")
                self.out.flush()
            self._status = ""


@dataclass
class Timeline:
    """The stages as they happen; ``begin``/``end`` also tell the display."""

    display: Display = field(default_factory=Display)
    stages: list[Stage] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    started: str = field(default_factory=_now)
    facts: dict[str, Any] = field(default_factory=dict)
    """What the summary shows besides stages: versions and metrics, drift numbers, memory."""

    def stage(self, key: str) -> Stage | None:
        return next((s for s in reversed(self.stages) if s.key == key), None)

    def clock(self) -> str:
        elapsed = int(time.monotonic() - self.t0)
        return f"{elapsed // 60:02d}:{elapsed % 60:02d}"

    def begin(self, key: str, title: str, *, at: str | None = None, run_id: str | None = None) -> Stage:
        stage = Stage(key, title, at or _now(), run_id=run_id)
        self.stages.append(stage)
        self.display.line(f"[{self.clock()}] {MARKS[RUNNING]} {title}")
        return stage

    def end(
        self,
        key: str,
        outcome: str = OK,
        detail: str = "",
        *,
        at: str | None = None,
        run_id: str | None = None,
    ) -> Stage:
        stage = self.stage(key) or self.begin(key, key, at=at)
        stage.ended, stage.outcome = at or _now(), outcome
        stage.detail = detail or stage.detail
        stage.run_id = run_id or stage.run_id
        took = f"{stage.seconds:.0f} s" if stage.seconds is not None else ""
        run = f"  run {stage.run_id}" if stage.run_id else ""
        self.display.line(f"[{self.clock()}] {MARKS[outcome]} {stage.title} ({took}) {stage.detail}{run}")
        return stage

    def note(self, key: str, news: str) -> None:
        """News on the running stage (the live line)."""
        stage = self.stage(key)
        title = stage.title if stage else key
        self.display.status(f"[{self.clock()}] {MARKS[RUNNING]} {title}  {news}")

    def as_dict(self) -> dict[str, Any]:
        return {"started": self.started, "stages": [asdict(s) for s in self.stages], "facts": self.facts}

    def save(self, folder: Path) -> Path:
        """``<folder>/<start time>.json`` (and ``latest.json``): what the benchmark and tests read."""
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.as_dict(), indent=2, default=str) + "\n"
        path = folder / f"{self.started[:19].replace(':', '')}.json"
        for target in (path, folder / "latest.json"):
            target.write_text(text)
        return path

    def table(self) -> list[str]:
        """One row per stage: start (since the story began), duration, outcome, run id."""
        origin = datetime.fromisoformat(self.started)
        rows = [f"  {'stage':<34} {'start':>6} {'took':>7}  {'outcome':<8} airflow run"]
        for s in self.stages:
            since = (datetime.fromisoformat(s.started) - origin).total_seconds()
            took = f"{s.seconds:.0f} s" if s.seconds is not None else "-"
            start = f"{int(since) // 60:02d}:{int(since) % 60:02d}"
            rows.append(f"  {s.title[:34]:<34} {start:>6} {took:>7}  {s.outcome:<8} {s.run_id or '-'}")
        return rows
