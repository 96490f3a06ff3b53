"""The curated dataset: validated transactions as Parquet, one file per batch and event date.

A batch's files are named after its id (a rerun overwrites them, never adds to them) and rows
whose key is already curated are dropped, so a re-sent batch adds nothing. A manifest per batch
records what it added: the features stage reads the manifests to find the batches it has not
taken in yet, and reads only the event dates they touched.

Files appear whole or not at all (``write_atomically``): locally each is written under a hidden
temporary name in its folder, flushed to disk and renamed over its final name; on an object store
a single PUT is atomic. Readers look only at ``*.parquet`` files and pyarrow skips names that
start with ``.``, so a crash mid-write leaves nothing where they look.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import uuid
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tasks.common import storage

if TYPE_CHECKING:
    from collections.abc import Mapping

    from config import Settings

MANIFESTS = "_manifests"
PARTITION = "event_date"


@dataclass(frozen=True)
class Manifest:
    """What one batch added to the curated dataset (``_manifests/<batch_id>.json``)."""

    batch_id: str
    source: str
    rows: int
    rows_added: int
    duplicates_dropped: int
    partitions: list[str]
    sha256: str
    ingested_at: str
    archived: bool = True
    """False from the moment the batch is curated until its landed file is archived: a retry
    that finds it false finishes the archive and reports the batch as ingested (its curated
    asset event was never posted)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _manifest_uri(settings: Settings, batch_id: str) -> str:
    return storage.join(settings.storage.curated_uri, MANIFESTS, f"{batch_id}.json")


def read_manifest(settings: Settings, batch_id: str) -> Manifest | None:
    """The batch's manifest, or None when the batch was never curated."""
    uri = _manifest_uri(settings, batch_id)
    return Manifest.from_dict(json.loads(storage.read_bytes(uri))) if storage.exists(uri) else None


def write_manifest(settings: Settings, manifest: Manifest) -> None:
    """Written last, once the batch's files are in place: a batch without one is not curated yet."""
    write_atomically(
        _manifest_uri(settings, manifest.batch_id), json.dumps(manifest.as_dict(), indent=2).encode()
    )


def read_manifests(settings: Settings) -> dict[str, Manifest]:
    """Every curated batch's manifest, by batch id."""
    uris = storage.list_files(storage.join(settings.storage.curated_uri, MANIFESTS), ["*.json"])
    manifests = [Manifest.from_dict(json.loads(storage.read_bytes(uri))) for uri in uris]
    return {m.batch_id: m for m in manifests}


def write_atomically(uri: str, data: bytes) -> str:
    """Write a file that readers see whole or not at all (see the module's docstring)."""
    fs, path = storage.filesystem(uri)
    folder = posixpath.dirname(path)
    fs.makedirs(folder, exist_ok=True)
    if "file" not in fs.protocol:
        fs.pipe_file(path, data)
        return uri
    partial = posixpath.join(folder, f".{posixpath.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return uri


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False), buffer)
    return buffer.getvalue()


def _partition_uri(settings: Settings, day: str) -> str:
    return storage.join(settings.storage.curated_uri, f"{PARTITION}={day}")


def _curated_keys(settings: Settings, dates: list[str], exclude_batch: str) -> set[str]:
    """Transaction ids already curated on the given event dates, excluding this batch's own files."""
    key = settings.schema_.key
    seen: set[str] = set()
    for day in dates:
        for uri in storage.list_files(_partition_uri(settings, day), ["*.parquet"]):
            if storage.basename(uri) == f"{exclude_batch}.parquet":
                continue
            fs, path = storage.filesystem(uri)
            seen.update(pq.read_table(path, columns=[key], filesystem=fs).column(key).to_pylist())
    return seen


def write_curated(settings: Settings, frame: pd.DataFrame, batch_id: str) -> tuple[int, int, list[str]]:
    """Write the batch as one Parquet file per event date; returns (added, dropped, dates)."""
    schema = settings.schema_
    frame = frame[schema.names].copy()
    dates = frame[schema.timestamp].dt.strftime("%Y-%m-%d")
    known = _curated_keys(settings, sorted(dates.unique()), exclude_batch=batch_id)
    fresh = ~frame[schema.key].isin(known)
    frame, dates = frame[fresh], dates[fresh]
    frame = frame.assign(batch_id=batch_id)
    written: list[str] = []
    for day, part in frame.groupby(dates, sort=True):
        write_atomically(
            storage.join(_partition_uri(settings, str(day)), f"{batch_id}.parquet"), parquet_bytes(part)
        )
        written.append(str(day))
    return len(frame), int((~fresh).sum()), written


def curated_dates(settings: Settings) -> list[str]:
    """The event dates the curated dataset holds, in order."""
    fs, path = storage.filesystem(settings.storage.curated_uri)
    if not fs.exists(path):
        return []
    dirs = fs.glob(f"{path.rstrip('/')}/{PARTITION}=*")
    return sorted(d.rsplit(f"{PARTITION}=", 1)[1] for d in dirs)


def read_curated_dates(settings: Settings, dates: list[str]) -> pd.DataFrame:
    """Curated transactions of the given event dates (only their partitions are read)."""
    frames = []
    for day in dates:
        for uri in storage.list_files(_partition_uri(settings, day), ["*.parquet"]):
            fs, path = storage.filesystem(uri)
            frames.append(pq.read_table(path, filesystem=fs).to_pandas())
    if not frames:
        return pd.DataFrame(columns=settings.schema_.names)
    return pd.concat(frames, ignore_index=True)


def curated_row_count(settings: Settings) -> int:
    """Rows in the curated dataset, from Parquet footers (no data is read)."""
    fs, path = storage.filesystem(settings.storage.curated_uri)
    if not fs.exists(path):
        return 0
    files = fs.glob(posixpath.join(path, f"{PARTITION}=*", "*.parquet"))
    return sum(int(pq.ParquetFile(p, filesystem=fs).metadata.num_rows) for p in files)


def read_curated(settings: Settings) -> pd.DataFrame:
    """The whole curated dataset as one frame (for tests, small tools and the demo)."""
    fs, path = storage.filesystem(settings.storage.curated_uri)
    if not fs.exists(path):
        return pd.DataFrame(columns=settings.schema_.names)
    dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    return dataset.to_table().to_pandas()
