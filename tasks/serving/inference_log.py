"""The inference log: every prediction serving made, append-only, readable by time window.

Layout under ``storage.data_uri/<serving.inference_log.path>/`` (``file://`` or ``s3://``, see
``logfiles``)::

    predictions/date=2026-01-02/hour=13/part-<writer>-<segment>.parquet
    labels/date=2026-01-03/hour=08/labels-<writer>-<segment>.parquet

A prediction row holds the request id, the prediction time (``timestamp``, UTC: the partition),
the endpoint and ``route`` (``champion``, ``challenger``, ``shadow``, ``smoke``), ``traffic``
(``live`` or ``synthetic``), the model version, score, decision and threshold, the end-to-end
latency, the transaction as it was sent (entity keys, amount, categories, event time) and every
feature the model saw, with ``customer_found`` / ``merchant_found``. A shadow prediction shares
the request id of the live one it mirrors.

Serving writes through a write-ahead log (``durable_log``: each prediction fsync'd before its
answer, compacted here exactly once). ``InferenceLogWriter`` is the in-memory writer for batch
writers (tests, benchmarks, simulations): it buffers rows and writes a file per hour touched when
``flush_rows`` rows are buffered or the oldest is ``flush_seconds`` old, from a background thread.
Files are written whole (temp file then rename locally, a single PUT on S3), so a reader never
sees half a file.

Labels arrive later (``POST /labels`` or ``write_labels``) keyed by ``request_id`` or
``transaction_id``; each post is a new version (``labeled_at``, ``label_id``, ``source``,
``client``), never an overwrite. ``read_predictions`` joins the latest label of each prediction
landed by its window's end plus ``label_lookahead_hours``.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tasks.common import storage
from tasks.common.clock import utc_timestamp
from tasks.serving import logfiles
from tasks.serving.logfiles import (
    LABEL_COLUMNS,
    LABELED_AT,
    LABELS,
    LIVE,
    PREDICTIONS,
    SYNTHETIC,
    TIME,
    TRAFFIC,
    labels_uri,
    predictions_uri,
    root_uri,
)

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)

COMPACT_SECONDS = 0.5
"""How often the writer thread folds newly appended rows into a frame (see ``_compact``)."""
_PARTITION = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")
_write_hourly = logfiles.write_hourly

# --- writing ----------------------------------------------------------------------------------


class InferenceLogWriter:
    """Buffers prediction rows and writes them as hourly Parquet files off the request path."""

    def __init__(self, settings: Settings, writer_id: str | None = None) -> None:
        storage.configure(settings.storage.s3_endpoint_url)
        self.cfg = settings.serving.inference_log
        self.base_uri = predictions_uri(settings)
        self.writer_id = re.sub(r"[^A-Za-z0-9_-]", "_", writer_id or f"{os.getpid()}-{uuid.uuid4().hex[:6]}")
        self._chunks: list[tuple[pd.DataFrame | Mapping[str, Any], dict[str, Any] | None]] = []
        self._compacted: list[pd.DataFrame] = []
        """Chunks already folded into frames by ``_compact``, oldest first."""
        self._rows = 0
        self._oldest: float | None = None
        self._buffer_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seq = itertools.count()
        self.rows_written = 0
        self.files_written = 0
        self.rows_dropped = 0
        self.flush_errors = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
        self._thread.start()

    def append(self, frame: pd.DataFrame | Mapping[str, Any], first: dict[str, Any] | None = None) -> bool:
        """Queue rows (a frame, or equal-length columns) for writing; never waits on storage.
        ``first``: columns (name -> one value or one per row) put before the rows' own when they
        are written, so the request path does not pay for joining them (nor for a DataFrame).
        False when the buffer is full and the rows were dropped (counted in ``rows_dropped``)."""
        rows = _row_count(frame)
        if not rows:
            return True
        with self._buffer_lock:
            if self._rows + rows > self.cfg.max_buffer_rows:
                self.rows_dropped += rows
                return False
            self._chunks.append((frame, first))
            self._rows += rows
            if self._oldest is None:
                self._oldest = time.monotonic()
            full = self._rows >= self.cfg.flush_rows
        if full:
            self._wake.set()
        return True

    @property
    def buffered(self) -> int:
        return self._rows

    def _due(self) -> bool:
        with self._buffer_lock:
            if not self._rows:
                return False
            return (
                self._rows >= self.cfg.flush_rows
                or time.monotonic() - (self._oldest or 0.0) >= self.cfg.flush_seconds
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=min(self.cfg.flush_seconds, COMPACT_SECONDS))
            self._wake.clear()
            if self._due():
                self.flush()
            else:
                self._compact()

    def _compact(self) -> None:
        """Fold the chunks appended since the last pass into one frame, a few hundred rows at a
        time, so that a flush only concatenates frames. Built all at once, a flush of 5000
        one-row chunks held the GIL long enough to stall the request path by a third of a second."""
        with self._flush_lock:
            with self._buffer_lock:
                chunks, self._chunks = self._chunks, []
            if not chunks:
                return
            try:
                frame = _combine(chunks)
            except Exception:  # noqa: BLE001 - left for flush, which reports it
                with self._buffer_lock:
                    self._chunks = chunks + self._chunks
                return
            self._compacted.append(frame)

    def flush(self) -> int:
        """Write everything buffered now; returns the rows written (0 on failure: kept for retry)."""
        with self._flush_lock:
            with self._buffer_lock:
                chunks, self._chunks = self._chunks, []
                # still counted as buffered until written: ``buffered`` never reads 0 mid-write
                rows, self._oldest = self._rows, None
            compacted, self._compacted = self._compacted, []
            if not chunks and not compacted:
                return 0
            try:
                frames = [*compacted, _combine(chunks)] if chunks else compacted
                frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
                name = f"part-{time.time_ns()}-{self.writer_id}-{next(self._seq):06d}.parquet"
                uris = _write_hourly(self.base_uri, frame, TIME, name)
            except Exception as exc:  # noqa: BLE001 - storage trouble must not lose rows or crash serving
                self.flush_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("inference log: flush of %d rows failed (kept for retry): %s", rows, exc)
                self._compacted = compacted + self._compacted
                with self._buffer_lock:
                    self._chunks = chunks + self._chunks
                    self._oldest = time.monotonic()
                return 0
            with self._buffer_lock:
                self._rows -= rows
                self.rows_written += rows
            self.files_written += len(uris)
            self.last_error = None
            return rows

    def close(self) -> None:
        """Stop the background thread and write what is left."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()

    def stats(self) -> dict[str, Any]:
        return {
            "uri": self.base_uri,
            "buffered": self._rows,
            "rows_written": self.rows_written,
            "files_written": self.files_written,
            "rows_dropped": self.rows_dropped,
            "flush_errors": self.flush_errors,
            "last_error": self.last_error,
        }


def _row_count(chunk: pd.DataFrame | Mapping[str, Any]) -> int:
    return len(chunk) if hasattr(chunk, "columns") else len(next(iter(chunk.values()), ()))


def _combine(chunks: list[tuple[pd.DataFrame | Mapping[str, Any], dict[str, Any] | None]]) -> pd.DataFrame:
    """One frame from the buffered chunks, column by column: thousands of one-row chunks become
    one DataFrame in tens of milliseconds, where a frame per chunk took seconds of a flush
    thread holding the GIL (and stalled the request path with it). A column a chunk lacks is
    missing (None) in its rows, as ``pd.concat`` would have it."""
    tables = []
    for chunk, first in chunks:
        own = {c: chunk[c].to_numpy() for c in chunk.columns} if isinstance(chunk, pd.DataFrame) else chunk
        tables.append((_row_count(chunk), {**(first or {}), **own}))
    names = list(dict.fromkeys(name for _, table in tables for name in table))
    parts: dict[str, list[Any]] = {name: [] for name in names}
    for n, table in tables:
        for name in names:
            values = table.get(name)
            if isinstance(values, (list, tuple, np.ndarray, pd.Series)):
                piece = np.asarray(values) if not isinstance(values, list) else values
            else:
                piece = [values] * n  # one value for every row (None: a column this chunk lacks)
            parts[name].append(piece)
    columns: dict[str, Any] = {}
    for name, pieces in parts.items():
        kinds = {p.dtype.kind if isinstance(p, np.ndarray) else "list" for p in pieces}
        if len(kinds) == 1 and kinds <= set("fiubmM"):  # one numeric or time kind: as arrays
            columns[name] = np.concatenate(pieces)
        else:
            columns[name] = [v for p in pieces for v in (p.tolist() if isinstance(p, np.ndarray) else p)]
    return pd.DataFrame(columns)


def write_labels(
    settings: Settings,
    labels: pd.DataFrame | Iterable[dict[str, Any]],
    now: Any = None,
    *,
    source: str = "write_labels",
) -> list[str]:
    """Land delayed labels (``request_id`` and/or ``transaction_id``, ``label``) now, straight to
    Parquet (batch writers; serving logs ``POST /labels`` through its WAL); returns the files
    written. Each needs a key and a 0/1 label (``ValueError`` otherwise, nothing written)."""
    storage.configure(settings.storage.s3_endpoint_url)
    frame = labels.copy() if isinstance(labels, pd.DataFrame) else pd.DataFrame(list(labels))
    if frame.empty:
        return []
    for col in ("request_id", "transaction_id"):
        frame[col] = frame[col].astype("object").where(frame[col].notna(), None) if col in frame else None
    if "label" not in frame:
        raise ValueError("labels need a 'label' column")
    keyless = frame["request_id"].isna() & frame["transaction_id"].isna()
    bad = ~frame["label"].isin([0, 1])
    if keyless.any() or bad.any():
        rows = sorted(set(frame.index[keyless | bad].tolist()))[:10]
        raise ValueError(f"labels need request_id or transaction_id and a 0/1 label; bad rows: {rows}")
    frame["label"] = frame["label"].astype("int8")
    frame[LABELED_AT] = utc_timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    post = uuid.uuid4().hex[:12]
    frame["label_id"] = [f"{post}-{i}" for i in range(len(frame))]
    frame["source"], frame["client"] = source, None
    frame = frame[list(LABEL_COLUMNS)]
    return _write_hourly(
        labels_uri(settings), frame, LABELED_AT, f"labels-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
    )


# --- reading ----------------------------------------------------------------------------------


def _files(base_uri: str, start: pd.Timestamp, end: pd.Timestamp) -> list[str]:
    """Parquet files of the hour partitions that overlap ``[start, end)``."""
    fs, base = storage.filesystem(base_uri)
    if not fs.exists(base):
        return []
    first, last = start.floor("h"), end
    days = {(first + timedelta(days=i)).strftime("%Y-%m-%d") for i in range((last - first).days + 2)}
    found = []
    for day_dir in fs.ls(base, detail=False):
        day = day_dir.rstrip("/").rsplit("date=", 1)[-1]
        if day not in days:
            continue
        for path in fs.glob(f"{day_dir.rstrip('/')}/hour=*/*.parquet"):
            m = _PARTITION.search(path)
            if not m:
                continue
            hour = utc_timestamp(f"{m.group(1)}T{m.group(2)}:00:00")
            if first <= hour < last:
                found.append(storage.to_uri(fs, path))
    return sorted(found)


def _read(uris: list[str]) -> pd.DataFrame:
    frames = [pq.read_table(io.BytesIO(storage.read_bytes(u))).to_pandas() for u in uris]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_labels(settings: Settings, start: Any = None, end: Any = None) -> pd.DataFrame:
    """Labels landed in ``[start, end)`` (default: all), one row per landing, oldest first."""
    storage.configure(settings.storage.s3_endpoint_url)
    lo = utc_timestamp(start) if start is not None else utc_timestamp("1970-01-01")
    hi = utc_timestamp(end) if end is not None else pd.Timestamp.now(tz="UTC") + timedelta(hours=1)
    frame = _read(_files(labels_uri(settings), lo, hi))
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in LABEL_COLUMNS})
    frame = frame[(frame[LABELED_AT] >= lo) & (frame[LABELED_AT] < hi)]
    return frame.sort_values(LABELED_AT, kind="stable").reset_index(drop=True)


def read_predictions(
    settings: Settings,
    start: Any,
    end: Any,
    *,
    labels: bool = True,
    routes: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Predictions made in ``[start, end)`` (UTC; naive times are taken as UTC), oldest first.

    ``routes``: keep only these (e.g. ``["champion", "challenger"]`` for live traffic, or
    ``["shadow"]``). With ``labels``, adds ``label`` (float: 1.0, 0.0 or NaN while unknown) and
    ``labeled_at``: the latest label landed by ``end + label_lookahead_hours`` for the prediction's
    ``request_id``, else for its ``transaction_id``.
    """
    storage.configure(settings.storage.s3_endpoint_url)
    lo, hi = utc_timestamp(start), utc_timestamp(end)
    frame = _read(_files(predictions_uri(settings), lo, hi))
    if frame.empty:
        frame = _no_predictions()
    frame = frame[(frame[TIME] >= lo) & (frame[TIME] < hi)]
    if routes is not None:
        frame = frame[frame["route"].isin(list(routes))]
    frame = frame.sort_values(TIME, kind="stable").reset_index(drop=True)
    if not labels:
        return frame
    lookahead = timedelta(hours=settings.serving.inference_log.label_lookahead_hours)
    return _join_labels(frame, read_labels(settings, lo, hi + lookahead))


def _no_predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": pd.Series(dtype="object"),
            TIME: pd.Series(dtype="datetime64[ns, UTC]"),
            "route": pd.Series(dtype="object"),
            "model_version": pd.Series(dtype="object"),
            "score": pd.Series(dtype="float64"),
        }
    )


def _join_labels(frame: pd.DataFrame, landed: pd.DataFrame) -> pd.DataFrame:
    """``label`` and ``labeled_at`` of each prediction: the latest landed for its ``request_id``,
    else for its ``transaction_id``."""
    frame["label"] = np.nan
    frame[LABELED_AT] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    if landed.empty or frame.empty:
        return frame
    for key in ("request_id", "transaction_id"):
        if key not in frame:
            continue
        latest = landed.dropna(subset=[key]).drop_duplicates(key, keep="last").set_index(key)
        todo = frame["label"].isna() & frame[key].notna()
        keys = frame.loc[todo, key]
        frame.loc[todo, "label"] = keys.map(latest["label"]).astype("float64")
        frame.loc[todo, LABELED_AT] = keys.map(latest[LABELED_AT])
    return frame


__all__ = [
    "LABELED_AT",
    "LABELS",
    "LABEL_COLUMNS",
    "LIVE",
    "PREDICTIONS",
    "SYNTHETIC",
    "TIME",
    "TRAFFIC",
    "InferenceLogWriter",
    "labels_uri",
    "predictions_uri",
    "read_labels",
    "read_predictions",
    "root_uri",
    "write_labels",
]
