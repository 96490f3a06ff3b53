"""Out-of-core training sets: the curated history read and joined a chunk of days at a time.

``train.build.chunk_rows`` sets how many events a chunk holds (whole event-date partitions, from
their Parquet footers; a day larger than that is a chunk of its own). Each chunk is filtered as
``dataset.labelled_events`` filters the whole history (label, warm-up from the first labelled
event of the history, ``[start, end)``), ordered, joined by ``StreamingJoin`` and appended to one
Parquet file as its own row group, so memory follows the chunk size and the entity count, not the
history's length. The rows are those of the in-memory build (tests hold the two equal); the bytes,
and so the content hash, differ because the file has a row group per chunk.

The file is written to a local temporary file, hashed while streamed back, then published under
its hash: renamed in place on a local filesystem, uploaded on S3; readers never see a partial file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tasks.common import storage
from tasks.ingest.curated import PARTITION

if TYPE_CHECKING:
    from config import Settings

Prepare = Callable[[pd.DataFrame, pd.Timestamp], pd.DataFrame]
"""A chunk of curated rows and the history's first labelled time -> the chunk's training events."""


def _curated(settings: Settings) -> ds.Dataset:
    fs, path = storage.filesystem(settings.storage.curated_uri)
    return ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")


def day_rows(settings: Settings) -> dict[str, int]:
    """Rows per curated event date, from the Parquet footers (no data read)."""
    counts: dict[str, int] = {}
    for fragment in _curated(settings).get_fragments():
        day = fragment.path.rsplit(f"{PARTITION}=", 1)[1].split("/", 1)[0]
        counts[day] = counts.get(day, 0) + int(fragment.metadata.num_rows)
    return {day: counts[day] for day in sorted(counts)}


def plan(rows: dict[str, int], max_rows: int) -> list[list[str]]:
    """Consecutive days grouped into chunks of at most ``max_rows`` rows (a bigger day alone)."""
    chunks: list[list[str]] = []
    size = 0
    for day, n in rows.items():
        if chunks and size + n <= max_rows:
            chunks[-1].append(day)
            size += n
        else:
            chunks.append([day])
            size = n
    return chunks


def read_days(settings: Settings, days: list[str], columns: list[str] | None = None) -> pd.DataFrame:
    """Curated rows of these event dates, typed as ``read_curated`` types the whole history."""
    table = _curated(settings).to_table(columns=columns, filter=ds.field(PARTITION).isin(days))
    return table.to_pandas()


def first_labelled(settings: Settings, days: list[str]) -> pd.Timestamp | None:
    """The time of the history's first labelled event, reading days in order until one has it."""
    schema = settings.schema_
    for day in days:
        rows = read_days(settings, [day], [schema.timestamp, schema.label])
        times = rows.loc[rows[schema.label].notna(), schema.timestamp]
        if not times.empty:
            return pd.Timestamp(pd.to_datetime(times, utc=True).min())
    return None


def event_chunks(settings: Settings, prepare: Prepare) -> Iterator[pd.DataFrame]:
    """The training events chunk by chunk, oldest first; empty chunks are skipped."""
    max_rows = settings.train.build.chunk_rows or 1
    rows = day_rows(settings)
    first = first_labelled(settings, list(rows))
    if first is None:
        return
    for days in plan(rows, max_rows):
        events = prepare(read_days(settings, days), first)
        if not events.empty:
            yield events


@dataclass
class Sink:
    """Frames appended to one local Parquet file, with the counts a data version records."""

    directory: str
    label: str
    timestamp: str
    rows: int = 0
    positives: int = 0
    partitions: set[str] = field(default_factory=set)
    batches: set[str] = field(default_factory=set)
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    path: str = ""
    _writer: pq.ParquetWriter | None = None

    def write(self, frame: pd.DataFrame, partition: str, batch: str) -> None:
        table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
        if self._writer is None:
            fd, self.path = tempfile.mkstemp(suffix=".parquet.tmp", dir=self.directory)
            os.close(fd)
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        table = table.cast(self._writer.schema)
        self._writer.write_table(table, row_group_size=max(1, len(frame)))
        self.rows += len(frame)
        self.positives += int(frame[self.label].sum())
        self.partitions.update(frame[partition].astype(str).unique())
        self.batches.update(frame[batch].dropna().astype(str).unique())
        ts = frame[self.timestamp]
        self.start = ts.min() if self.start is None else min(self.start, ts.min())
        self.end = ts.max() if self.end is None else max(self.end, ts.max())

    def close(self) -> str:
        """Finish the file; its SHA-256, read back in blocks."""
        if self._writer is None:
            return ""
        self._writer.close()
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)


def local_dir(uri: str) -> str:
    """Where the temporary file goes: beside the destination when it is local (one rename)."""
    fs, path = storage.filesystem(uri)
    if "file" in fs.protocol:
        fs.makedirs(path, exist_ok=True)
        return str(path)
    return tempfile.gettempdir()


def publish(local_path: str, uri: str) -> None:
    """Move the finished file to ``uri`` (nothing when that content is already there)."""
    fs, path = storage.filesystem(uri)
    if fs.exists(path):
        os.unlink(local_path)
    elif "file" in fs.protocol:
        os.replace(local_path, path)
    else:
        fs.put_file(local_path, path)
        os.unlink(local_path)
