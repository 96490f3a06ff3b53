"""The ingress's inference log: every prediction and label durable on local disk before its
answer goes out, in the hourly Parquet files soon after.

    request ─▶ recorder ─▶ DurableInferenceLog.predictions() ─▶ wal.WriteAheadLog (fsync, group commit)
                                                  ▲ awaited before the answer is sent
    background thread: sealed segments ─▶ compaction (Parquet, exactly once) ─▶ segment deleted
                       dead writers' directories (``kill -9``) ─▶ adopted and compacted

A segment is sealed at ``inference_log.flush_rows`` rows or ``flush_seconds`` of age (and by
``flush``, the control API's ``POST /admin/flush``, and at shutdown). When the log cannot be
written, ``predictions`` raises ``WalUnavailable``: the request is a 503, never an answer whose
prediction is lost; ``problem`` says why for ``/health``, and the next group tries again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from tasks.serving import compaction, logfiles
from tasks.serving.compaction import LABEL, PREDICTION, Compacted
from tasks.serving.wal import WalUnavailable, WriteAheadLog

if TYPE_CHECKING:
    from collections.abc import Mapping

    from config import Settings

log = logging.getLogger("ray.serve")

ADOPT_SECONDS = 10.0
"""How often the background thread looks for dead writers' directories."""


class DurableInferenceLog:
    """One writer (an ingress replica) of the inference log, through its own write-ahead log."""

    def __init__(self, settings: Settings, writer_id: str | None = None) -> None:
        cfg = settings.serving.inference_log
        self.settings = settings
        self.writer_id = writer_id or f"w{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.root = logfiles.wal_root(settings)
        self.base_uri = logfiles.predictions_uri(settings)
        self.wal = WriteAheadLog(
            self.root / self.writer_id,
            sync_wait_s=cfg.sync_wait_ms / 1000.0,
            rotate_rows=cfg.flush_rows,
            rotate_seconds=cfg.flush_seconds,
            on_sealed=self._wake_up,
        )
        self.written = Compacted()
        self.adopted = Compacted()
        self.compaction_errors = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference-compaction", daemon=True)
        self._thread.start()

    # -- the request path --

    def predictions(self, columns: Mapping[str, Any], rows: int) -> asyncio.Future[None]:
        """Log ``rows`` predictions (columns: name -> one value per row, or one for all) from the
        event loop; the future resolves once they are on disk (``WalUnavailable`` if they cannot be)."""
        return self.wal.submit(PREDICTION, {"n": rows, "columns": columns}, rows)

    async def labels(self, rows: list[dict[str, Any]]) -> None:
        """Log posted labels (each with ``labeled_at``, ``label_id``, ``source``, ``client``) and
        return once they are on disk."""
        columns = {name: [row.get(name) for row in rows] for name in logfiles.LABEL_COLUMNS}
        await self.wal.write(LABEL, {"n": len(rows), "columns": columns}, len(rows))

    # -- health and control --

    @property
    def problem(self) -> str | None:
        """Why the log cannot be written now (the last group failed), else None."""
        error = self.wal.stats.error
        return f"inference log not writable: {error}" if error else None

    def probe(self) -> str | None:
        """``problem``, after checking the WAL directory is writable again when it was not (a
        probe file written, fsync'd and removed): ``/health`` recovers without traffic."""
        if self.wal.stats.error is None:
            return None
        probe = self.wal.directory / f".probe-{uuid.uuid4().hex[:8]}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, b"probe")
                os.fsync(fd)
            finally:
                os.close(fd)
            probe.unlink()
        except OSError as exc:
            return f"inference log not writable: {exc.strerror or exc} ({self.wal.directory})"
        self.wal.stats.error = None
        return None

    def flush(self) -> int:
        """Seal the open segment and compact everything sealed now (blocking); the predictions
        written. Raises what stops compaction (the segments stay for the next try)."""
        self.wal.seal()
        return self._compact_own(raise_errors=True).predictions

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking records, seal, compact what this writer left (best effort: whatever is
        not compacted stays on disk and is replayed by the next replica), release the lock."""
        self.wal.close(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._compact_own(raise_errors=False)

    def stats(self) -> dict[str, Any]:
        w = self.wal.stats
        syncs = sorted(w.sync_seconds)
        return {
            "uri": self.base_uri,
            "wal_dir": str(self.wal.directory),
            "buffered": max(w.rows - self.written.predictions - self.written.labels, 0),
            "rows_written": self.written.predictions,
            "labels_written": self.written.labels,
            "files_written": len(self.written.files) + len(self.adopted.files),
            "rows_replayed": self.adopted.predictions,
            "rows_dropped": 0,
            "wal_records": w.records,
            "wal_failed_records": w.failed_records,
            "wal_error": w.error,
            "wal_sync_p50_ms": round(syncs[len(syncs) // 2] * 1000, 3) if syncs else None,
            "compaction_errors": self.compaction_errors,
            "last_error": self.last_error,
        }

    # -- background --

    def _wake_up(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        next_adopt = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_adopt:
                self._adopt()
                next_adopt = time.monotonic() + ADOPT_SECONDS
            self._compact_own(raise_errors=False)
            self._wake.wait(timeout=min(ADOPT_SECONDS, self.settings.serving.inference_log.flush_seconds))
            self._wake.clear()

    def _adopt(self) -> None:
        try:
            done = compaction.adopt_dead(self.settings, self.root, skip=self.writer_id)
        except Exception as exc:  # noqa: BLE001 - retried next pass
            log.warning("inference WAL: replaying dead writers failed: %s", exc)
            return
        with self._lock:
            self.adopted.add(done)

    def _compact_own(self, *, raise_errors: bool) -> Compacted:
        with self._lock:
            try:
                done = compaction.compact_all(self.settings, self.wal.sealed(), self.writer_id)
            except Exception as exc:
                self.compaction_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("inference log: compaction failed (the WAL keeps the rows): %s", exc)
                if raise_errors:
                    raise
                return Compacted()
            self.written.add(done)
            if done.segments:
                self.last_error = None
            return done


__all__ = ["DurableInferenceLog", "WalUnavailable"]
