"""Where the inference log lives and how its files are written: the layout every writer and
reader shares (a leaf: ``inference_log``, ``compaction`` and ``durable_log`` import it).

    <storage.data_uri>/<serving.inference_log.path>/
        predictions/date=2026-01-02/hour=13/part-<name>.parquet
        labels/date=2026-01-03/hour=08/labels-<name>.parquet
    <serving.inference_log.wal_dir>/<writer id>/<segment>.wal     (serving's write-ahead log)

A file is written whole: a temporary name then a rename locally (fsync'd first when it replaces
a write-ahead log segment), a single PUT on S3, so a reader never sees half a file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.common import storage

if TYPE_CHECKING:
    import pandas as pd

    from config import Settings

PREDICTIONS = "predictions"
LABELS = "labels"
TIME = "timestamp"
LABELED_AT = "labeled_at"
"""When a label was posted (UTC): the order of a key's label versions."""
TRAFFIC = "traffic"
"""A prediction's traffic: ``live``, or ``synthetic`` (``X-Airloop-Traffic: synthetic``: load
tests, benchmarks, smoke tests), which the monitor leaves out. Missing in older files: live."""
LIVE, SYNTHETIC = "live", "synthetic"
LABEL_COLUMNS = ("request_id", "transaction_id", "label", LABELED_AT, "label_id", "source", "client")
"""A landed label: its key (``request_id`` and/or ``transaction_id``), the 0/1 label, when it was
posted, its own id (one per posted label), who posted it (``source``: ``X-Airloop-Source`` or
the body's ``source``) and from where (``client``: the caller's address). A second label for a
key is a new row (a new version), never an overwrite; older files lack the last three."""


def root_uri(settings: Settings) -> str:
    return storage.join(settings.storage.data_uri, settings.serving.inference_log.path)


def predictions_uri(settings: Settings) -> str:
    return storage.join(root_uri(settings), PREDICTIONS)


def labels_uri(settings: Settings) -> str:
    return storage.join(root_uri(settings), LABELS)


def wal_root(settings: Settings) -> Path:
    """The local directory of serving's write-ahead logs: ``inference_log.wal_dir``, else ``wal``
    beside the log's files when they are local. ``ValueError`` when neither is possible."""
    cfg = settings.serving.inference_log
    if cfg.wal_dir:
        return Path(cfg.wal_dir)
    root = root_uri(settings)
    if not root.startswith("file://"):
        raise ValueError(
            f"the inference log is on {root}: set serving.inference_log.wal_dir to a local directory "
            "for the write-ahead log"
        )
    return Path(root.removeprefix("file://")) / "wal"


def partition(hour: pd.Timestamp) -> str:
    return f"date={hour:%Y-%m-%d}/hour={hour:%H}"


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="zstd")
    return sink.getvalue()


def write_durably(uri: str, data: bytes) -> None:
    """``storage.write_bytes``, and on local disk the file and its folder fsync'd before the
    rename is final: what replaces a write-ahead log segment must outlive a power cut too."""
    if not uri.startswith("file://"):
        storage.write_bytes(uri, data)
        return
    path = Path(uri.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    sync_dir(path.parent)


def sync_dir(folder: Path) -> None:
    """fsync a directory, so the files created or renamed in it stay after a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_hourly(
    base_uri: str, frame: pd.DataFrame, time_column: str, name: str, *, durable: bool = False
) -> list[str]:
    """One file per hour of ``time_column`` in ``frame``, named ``<name>`` in its partition.
    The same frame and name always give the same files (a rewrite replaces, never duplicates)."""
    uris = []
    hours = frame[time_column].dt.floor("h")
    for hour, part in frame.groupby(hours, sort=True):
        uri = storage.join(base_uri, partition(hour), name)
        data = parquet_bytes(part.reset_index(drop=True))
        if durable:
            write_durably(uri, data)
        else:
            storage.write_bytes(uri, data)
        uris.append(uri)
    return uris
