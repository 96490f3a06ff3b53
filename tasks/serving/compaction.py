"""Write-ahead log segments into the inference log's hourly Parquet files, exactly once.

A sealed segment ``<wal root>/<writer>/<seq>.wal`` becomes ``part-<writer>-<seq>.parquet`` in each
hour partition its predictions touch (and ``labels-<writer>-<seq>.parquet`` for its labels),
written whole and fsync'd, and only then is the segment deleted. The names come from the segment,
so compacting it again (the process died between the Parquet write and the delete) rewrites the
same files with the same rows: never a duplicate.

A writer directory whose lock nobody holds belongs to a dead process: whoever takes the lock
(``adopt_dead``, run by every ingress replica when it starts and then periodically) compacts
what is left in it, its torn last record skipped (never acknowledged), and removes it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tasks.serving import logfiles
from tasks.serving.logfiles import LABELED_AT, TIME
from tasks.serving.wal_format import TS, lock_directory, read_segment, segments

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger("ray.serve")

PREDICTION = b"P"
LABEL = b"L"


@dataclass
class Compacted:
    """What compaction wrote."""

    segments: int = 0
    predictions: int = 0
    labels: int = 0
    files: list[str] = field(default_factory=list)

    def add(self, other: Compacted) -> None:
        self.segments += other.segments
        self.predictions += other.predictions
        self.labels += other.labels
        self.files += other.files


def frame_of(payloads: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One frame from logged records (``{"n": rows, "columns": {...}}``, see ``wal.encode_columns``):
    a column a record lacks is missing (None) in its rows; time columns are UTC timestamps."""
    records = [(int(p["n"]), p["columns"]) for p in payloads]
    names = list(dict.fromkeys(name for _, cols in records for name in cols))
    times = {name for _, cols in records for name, v in cols.items() if isinstance(v, dict) and TS in v}
    parts: dict[str, list[Any]] = {name: [] for name in names}
    for n, cols in records:
        for name in names:
            value = cols.get(name)
            if isinstance(value, dict):
                value = value.get(TS)
            parts[name].extend(value if isinstance(value, list) else [value] * n)
    columns: dict[str, Any] = {}
    for name, values in parts.items():
        if name in times:
            columns[name] = _ns_series(values)
        else:
            columns[name] = pd.Series(values)
    return pd.DataFrame(columns)


def _ns_series(values: list[Any]) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype="Int64"), unit="ns", utc=True)


def compact_segment(settings: Settings, path: Path, writer: str) -> Compacted:
    """Write one sealed segment's rows as Parquet files, then delete the segment."""
    segment = read_segment(path)
    name = f"{writer}-{segment.seq:010d}"
    predictions = [p for kind, p in segment.records if kind == PREDICTION]
    labels = [p for kind, p in segment.records if kind == LABEL]
    done = Compacted(segments=1)
    if predictions:
        frame = frame_of(predictions)
        done.files += logfiles.write_hourly(
            logfiles.predictions_uri(settings), frame, TIME, f"part-{name}.parquet", durable=True
        )
        done.predictions = len(frame)
    if labels:
        frame = frame_of(labels)
        done.files += logfiles.write_hourly(
            logfiles.labels_uri(settings), frame, LABELED_AT, f"labels-{name}.parquet", durable=True
        )
        done.labels = len(frame)
    path.unlink(missing_ok=True)
    return done


def compact_all(settings: Settings, paths: Iterable[Path], writer: str) -> Compacted:
    """``compact_segment`` for each of ``paths`` in order; stops at the first failure (raised),
    what was compacted before it stays done."""
    done = Compacted()
    for path in paths:
        done.add(compact_segment(settings, path, writer))
    return done


def adopt_dead(settings: Settings, root: Path, *, skip: str | None = None) -> Compacted:
    """Compact and remove every writer directory under ``root`` whose writer is dead (its lock
    is free), except ``skip`` (this writer's own). A directory another live process is adopting
    right now is left to it (its lock is taken)."""
    done = Compacted()
    if not root.exists():
        return done
    # a directory being created is named ".<writer>" until its lock is held (see wal)
    for directory in sorted(root.iterdir()):
        if not directory.is_dir() or directory.name == skip or directory.name.startswith("."):
            continue
        fd = lock_directory(directory)
        if fd is None:
            continue  # a live writer, or another replica adopting it now
        try:
            left = segments(directory)
            if left:
                log.info("inference WAL: replaying %d segment(s) of dead writer %s", len(left), directory)
            done.add(compact_all(settings, left, directory.name))
            shutil.rmtree(directory, ignore_errors=True)
        except Exception as exc:  # noqa: BLE001 - kept on disk: the next pass (or replica) retries
            log.warning("inference WAL: could not replay %s yet: %s", directory, exc)
        finally:
            os.close(fd)
    return done
