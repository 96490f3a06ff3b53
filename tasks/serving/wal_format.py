"""The on-disk format of serving's write-ahead log (``wal``): records, segments, the lock.

A record is ``b"AW" | kind (1 byte) | payload length (u32) | CRC-32 of the payload (u32) |
payload`` (JSON; columns encoded by ``encode_columns``, time columns tagged ``{"$ts": ...}`` as
nanoseconds since the epoch, UTC). A segment is records appended one after another; reading
stops at the first record that is short or fails its CRC: a write cut by ``kill -9`` or a full
disk was never acknowledged. A writer's directory holds a ``.lock`` file that its live writer
keeps flock'd: the kernel lets go when the process dies, however it dies.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("ray.serve")

MAGIC = b"AW"
HEADER = struct.Struct("<2scII")
SUFFIX = ".wal"
LOCK = ".lock"
TS = "$ts"
"""A time column in a payload: ``{"$ts": [ns since the epoch, UTC, or null]}`` (or one value)."""


def _ns(value: Any) -> int | None:
    if value is None or value is pd.NaT:
        return None
    return int(pd.Timestamp(value).value)


def _encode_value(values: Any) -> Any:
    """One column (a numpy array, a list, or one value for every row) as JSON-able data."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "M":
            return {TS: values.astype("datetime64[ns]").astype("int64").tolist()}
        return values.tolist()
    if isinstance(values, (list, tuple)):
        if any(isinstance(v, datetime) for v in values):
            return {TS: [_ns(v) for v in values]}
        return values
    if isinstance(values, datetime):
        return {TS: _ns(values)}
    if isinstance(values, np.generic):
        return values.item()
    return values


def encode_columns(columns: Mapping[str, Any]) -> dict[str, Any]:
    """Columns (name -> values per row, or one value for all) as JSON-able data, times tagged."""
    return {name: _encode_value(values) for name, values in columns.items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not loggable")


def encode(kind: bytes, payload: Mapping[str, Any]) -> bytes:
    """One record; a payload's ``columns`` are encoded here (``encode_columns``), in the
    writer's thread, not on the request path."""
    data = {k: encode_columns(v) if k == "columns" else v for k, v in payload.items()}
    body = json.dumps(data, separators=(",", ":"), default=_json_default).encode()
    return HEADER.pack(MAGIC, kind, len(body), zlib.crc32(body)) + body


@dataclass(frozen=True)
class Segment:
    """What a segment file holds: its records (kind, payload) and the bytes past the last good one."""

    path: Path
    records: list[tuple[bytes, dict[str, Any]]]
    torn_bytes: int

    @property
    def seq(self) -> int:
        return int(self.path.stem)


def read_segment(path: Path) -> Segment:
    """Every whole record of a segment, in order; reading stops at the first torn one."""
    data = path.read_bytes()
    records: list[tuple[bytes, dict[str, Any]]] = []
    at = 0
    while at + HEADER.size <= len(data):
        magic, kind, length, crc = HEADER.unpack_from(data, at)
        body = data[at + HEADER.size : at + HEADER.size + length]
        if magic != MAGIC or len(body) != length or zlib.crc32(body) != crc:
            break
        try:
            records.append((kind, json.loads(body)))
        except ValueError:
            break
        at += HEADER.size + length
    if at < len(data):
        log.warning(
            "WAL %s: %d bytes after the last whole record ignored (never acked)", path, len(data) - at
        )
    return Segment(path, records, len(data) - at)


def segments(directory: Path) -> list[Path]:
    """A writer directory's segment files, oldest first."""
    return sorted(directory.glob(f"*{SUFFIX}"))


def lock_directory(directory: Path) -> int | None:
    """An exclusive flock on ``directory``'s lock file (its fd), or None when a live process
    holds it. The lock lasts until the fd is closed or the process dies."""
    fd = os.open(directory / LOCK, os.O_RDONLY | os.O_CREAT, 0o644)  # no writer: remount-ro works
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
