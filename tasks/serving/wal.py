"""A write-ahead log: records appended to a local file and fsync'd, in small groups, before the
caller is told they are safe (``durable_log`` puts every prediction and label through one).

    <directory>/.lock          flock'd by the live writer for its whole life (the kernel lets go
                               when the process dies, however it dies: that is how a dead writer's
                               directory is told from a live one's)
    <directory>/0000000000.wal segments, append-only; every one but the open one is sealed

Records, segments and the lock are ``wal_format``.

Group commit: callers queue records (``write`` from the event loop, ``write_blocking`` from a
thread) and wait; one writer thread takes everything queued, writes it with one ``write`` and
one ``fdatasync``, and wakes every waiter of the group at once (one hop per event loop). What
arrives during an fsync goes into the next one; ``sync_wait_s`` (at most 50 ms) can hold a group
open a little longer. A failed write or fsync fails its whole group with ``WalUnavailable``; the
segment is cut back to its last good length and closed, and the next group tries a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.serving.logfiles import sync_dir
from tasks.serving.wal_format import SUFFIX, encode, lock_directory, segments

log = logging.getLogger("ray.serve")


class WalUnavailable(RuntimeError):
    """The log cannot be written now (read-only or full disk, closed): nothing was acknowledged."""


def _create_locked(directory: Path) -> int:
    """``directory`` created and locked (its lock fd): built as ``.<name>`` and renamed once
    locked, so an adopter never takes a directory whose writer is still starting."""
    if directory.exists():
        fd = lock_directory(directory)
        if fd is None:
            raise RuntimeError(f"WAL directory {directory} is in use by a live process")
        return fd
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}")
    staging.mkdir(exist_ok=True)
    fd = lock_directory(staging)
    if fd is None:
        raise RuntimeError(f"WAL directory {staging} is in use by a live process")
    os.replace(staging, directory)
    sync_dir(directory.parent)
    return fd


# --- the writer -------------------------------------------------------------------------------


@dataclass
class _Entry:
    kind: bytes
    payload: Mapping[str, Any]
    rows: int
    future: asyncio.Future[None] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    done: threading.Event | None = None
    error: BaseException | None = None


@dataclass
class WalStats:
    records: int = 0
    rows: int = 0
    bytes: int = 0
    syncs: int = 0
    failed_records: int = 0
    segments_sealed: int = 0
    error: str | None = None
    """Why the last group failed; None once a group was written again."""
    sync_seconds: list[float] = field(default_factory=list)


class WriteAheadLog:
    """One writer's log in ``directory`` (created, locked for this process' lifetime)."""

    def __init__(
        self,
        directory: Path,
        *,
        sync_wait_s: float = 0.0,
        rotate_rows: int = 5000,
        rotate_seconds: float = 30.0,
        on_sealed: Callable[[], None] | None = None,
    ) -> None:
        self.directory = directory
        self._lock_fd: int | None = _create_locked(directory)
        self.sync_wait_s = min(max(sync_wait_s, 0.0), 0.05)
        self.rotate_rows, self.rotate_seconds = rotate_rows, rotate_seconds
        self.on_sealed = on_sealed
        self.stats = WalStats()
        existing = segments(directory)
        self._seq = (int(existing[-1].stem) + 1) if existing else 0
        self._fd: int | None = None
        self._offset = self._segment_rows = 0
        self._opened = 0.0
        self._pending: list[_Entry] = []
        self._cond = threading.Condition()
        self._seal_requested = False
        self._sealed = threading.Event()
        self._closing = self._closed = False
        self._thread = threading.Thread(target=self._run, name="inference-wal", daemon=True)
        self._thread.start()

    # -- callers --

    def _submit(self, entry: _Entry) -> None:
        with self._cond:
            if self._closing:
                raise WalUnavailable("the inference log is closed (the replica is stopping)")
            self._pending.append(entry)
            self._cond.notify()

    def submit(self, kind: bytes, payload: Mapping[str, Any], rows: int) -> asyncio.Future[None]:
        """Queue a record from the running event loop; the future resolves once it is on disk."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._submit(_Entry(kind, payload, rows, future=future, loop=loop))
        return future

    async def write(self, kind: bytes, payload: Mapping[str, Any], rows: int) -> None:
        """Append a record and return once it is durable; ``WalUnavailable`` if it cannot be."""
        await self.submit(kind, payload, rows)

    def write_blocking(
        self, kind: bytes, payload: Mapping[str, Any], rows: int, timeout: float = 30.0
    ) -> None:
        """``write`` for a thread without an event loop."""
        entry = _Entry(kind, payload, rows, done=threading.Event())
        self._submit(entry)
        assert entry.done is not None
        if not entry.done.wait(timeout):
            raise WalUnavailable(f"the inference log did not sync within {timeout:.0f} s")
        if entry.error is not None:
            raise entry.error

    def seal(self, timeout: float = 10.0) -> None:
        """Close the open segment now (the next record starts a new one): it can be compacted."""
        with self._cond:
            if self._closed:
                return
            self._sealed.clear()
            self._seal_requested = True
            self._cond.notify()
        self._sealed.wait(timeout)

    def sealed(self) -> list[Path]:
        """Segments no longer written to, oldest first: every one before the current number
        (which only moves on once its segment is closed for good)."""
        with self._cond:
            current = self._seq
        return [p for p in segments(self.directory) if int(p.stem) < current]

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new records, write what is queued, seal, stop the thread, release the lock."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        with self._cond:
            self._closed = True
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the writer thread --

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._closing or self._seal_requested):
                    if not self._cond.wait(timeout=min(self.rotate_seconds, 1.0)):
                        break
                closing, group_open = self._closing, bool(self._pending)
            if group_open and self.sync_wait_s:
                time.sleep(self.sync_wait_s)
            with self._cond:
                group, self._pending = self._pending, []
            self._write_group(group, closing)
            if closing:
                with self._cond:
                    if not self._pending:
                        return

    def _write_group(self, group: list[_Entry], closing: bool) -> None:
        """Commit a group and rotate; whatever goes wrong fails this group's records, never the
        thread (a dead writer would leave every later request waiting for its answer)."""
        try:
            if group:
                self._settle(group, self._commit(group))
            self._maybe_rotate(force=closing)
        except Exception as exc:  # reported to the waiters and the status
            self.stats.error = f"{type(exc).__name__}: {exc}"
            log.exception("inference WAL: %d records not written", len(group))
            self._settle(group, WalUnavailable(f"the inference log failed: {self.stats.error}"))

    def _open(self) -> int:
        if self._fd is None:
            path = self.directory / f"{self._seq:010d}{SUFFIX}"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._offset = os.fstat(self._fd).st_size
            self._segment_rows, self._opened = 0, time.monotonic()
            sync_dir(self.directory)
        return self._fd

    def _commit(self, group: list[_Entry]) -> BaseException | None:
        """Write and fsync the group's records; the error that fails them all, if any."""
        blobs, rows = [], 0
        for entry in group:
            try:
                blobs.append(encode(entry.kind, entry.payload))
                rows += entry.rows
            except Exception as exc:  # noqa: BLE001 - a record that cannot be encoded fails alone
                entry.error = WalUnavailable(f"prediction not loggable: {exc}")
        data = b"".join(blobs)
        if not data:
            return None
        started = time.perf_counter()
        try:
            fd = self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fdatasync(fd)
        except OSError as exc:
            self._abandon()
            self.stats.failed_records += len(group)
            self.stats.error = f"{exc.strerror or exc} ({self.directory})"
            log.error("inference WAL: %d records not written: %s", len(group), self.stats.error)
            return WalUnavailable(f"the inference log cannot be written: {self.stats.error}")
        self._offset += len(data)
        self._segment_rows += rows
        s = self.stats
        s.records, s.rows, s.bytes = s.records + len(blobs), s.rows + rows, s.bytes + len(data)
        s.syncs, s.error = s.syncs + 1, None
        s.sync_seconds.append(time.perf_counter() - started)
        del s.sync_seconds[:-1000]
        return None

    def _abandon(self) -> None:
        """After a failed write: cut the segment back to its last acknowledged byte (so nothing
        unacknowledged is ever compacted, where the disk allows it) and close it."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # a read-only disk: a torn tail fails its CRC
            os.ftruncate(self._fd, self._offset)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None
        with self._cond:
            self._seq += 1

    def _settle(self, group: list[_Entry], error: BaseException | None) -> None:
        """Wake every waiter of the group: one call per event loop, not one per record."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Entry]] = {}
        for entry in group:
            entry.error = entry.error or error
            if entry.loop is not None:
                by_loop.setdefault(entry.loop, []).append(entry)
            elif entry.done is not None:
                entry.done.set()
        for loop, entries in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(_resolve, entries)

    def _maybe_rotate(self, force: bool = False) -> None:
        with self._cond:
            requested, self._seal_requested = self._seal_requested, False
        aged = self._fd is not None and time.monotonic() - self._opened >= self.rotate_seconds
        if self._fd is not None and (requested or force or aged or self._segment_rows >= self.rotate_rows):
            os.close(self._fd)
            self._fd = None
            with self._cond:
                self._seq += 1
            self.stats.segments_sealed += 1
            if self.on_sealed is not None:
                self.on_sealed()
        if requested:
            self._sealed.set()


def _resolve(entries: list[_Entry]) -> None:
    for entry in entries:
        future = entry.future
        if future is None or future.done():
            continue
        if entry.error is not None:
            future.set_exception(entry.error)
        else:
            future.set_result(None)
