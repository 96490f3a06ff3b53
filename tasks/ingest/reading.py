"""Read a landed file into a frame, within limits that are checked before anything is decoded.

Landing accepts ``.csv`` (UTF-8, comma-separated, a UTF-8 byte order mark is dropped),
``.csv.gz`` and ``.parquet``. Before a byte is decoded: the file's size against
``ingest.max_file_bytes`` (from the store's listing, so an oversized file is never read), a
Parquet file's row count and uncompressed size from its footer against ``ingest.max_rows`` and
``ingest.max_decoded_bytes``; a ``.csv.gz`` is decompressed only up to ``max_decoded_bytes``.
Whatever breaks one of these rules, or is not a table at all, raises ``BatchUnreadable`` naming
the rule, which validation turns into a quarantine with that message.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq

from tasks.common import storage

if TYPE_CHECKING:
    from config import Ingest

FORMATS = (".csv.gz", ".csv", ".parquet")
"""What landing accepts (longest suffix first: ``x.csv.gz`` is gzip, not plain CSV)."""
ACCEPTED = "CSV (.csv), gzip-compressed CSV (.csv.gz) or Parquet (.parquet)"
OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


class BatchUnreadable(ValueError):
    """The file is not a table landing can take: empty, corrupt, truncated, another format, or
    over a limit. ``rule`` names which (``file_format``, ``max_file_bytes``, ...)."""

    def __init__(self, message: str, rule: str = "readable_file", rows: int = 0) -> None:
        super().__init__(message)
        self.rule = rule
        self.rows = rows


@dataclass(frozen=True)
class Landed:
    """A landed file as fetched: its bytes (None when over the size limit: never read) and id."""

    uri: str
    size: int
    data: bytes | None
    digest: str
    """SHA-256 of the bytes; of the name, size and version stamp when the file was not read."""


def file_format(name: str) -> str | None:
    """The accepted format of a file name (``.csv``, ``.csv.gz``, ``.parquet``), or None."""
    lower = name.lower()
    return next((fmt for fmt in FORMATS if lower.endswith(fmt)), None)


def stem(name: str) -> str:
    """The name without its format suffix (``a.csv.gz`` → ``a``)."""
    fmt = file_format(name)
    if fmt:
        return name[: -len(fmt)]
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def suffix(name: str) -> str:
    """The format suffix a moved copy keeps (``.csv.gz``, or whatever an unknown file had)."""
    return name[len(stem(name)) :]


def fetch(uri: str, limits: Ingest) -> Landed:
    """The file's bytes when its size is within ``max_file_bytes``; else its size only."""
    fs, path = storage.filesystem(uri)
    info = fs.info(path)
    size = int(info.get("size") or 0)
    if size > limits.max_file_bytes:
        stamp = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
        digest = hashlib.sha256(f"{storage.basename(uri)}:{size}:{stamp}".encode()).hexdigest()
        return Landed(uri, size, None, digest)
    data = bytes(fs.cat_file(path))
    return Landed(uri, len(data), data, hashlib.sha256(data).hexdigest())


def decode(landed: Landed, limits: Ingest) -> pd.DataFrame:
    """The file as a frame of raw columns (CSV: text); ``BatchUnreadable`` naming the rule."""
    name = storage.basename(landed.uri)
    fmt = file_format(name)
    if fmt is None:
        raise BatchUnreadable(
            f"unsupported file format {name!r}: landing accepts {ACCEPTED}", rule="file_format"
        )
    if landed.data is None:
        raise BatchUnreadable(
            f"file too large: {landed.size:,} bytes, above ingest.max_file_bytes "
            f"{limits.max_file_bytes:,}; not read",
            rule="max_file_bytes",
        )
    if not landed.data:
        raise BatchUnreadable("empty file (0 bytes)", rule="empty_file")
    if fmt == ".parquet":
        return _parquet(landed.data, limits)
    text = gunzip_limited(landed.data, limits.max_decoded_bytes) if fmt == ".csv.gz" else landed.data
    return _csv(text)


def gunzip_limited(data: bytes, limit: int) -> bytes:
    """Decompress gzip up to ``limit`` bytes; past it, stop and raise (a gzip bomb is never
    inflated in memory)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            out = stream.read(limit + 1)
    except EOFError as exc:
        raise BatchUnreadable(f"truncated gzip file: {exc}", rule="gzip") from exc
    except (OSError, zlib.error) as exc:
        raise BatchUnreadable(f"not a readable gzip file: {exc}", rule="gzip") from exc
    if len(out) > limit:
        raise BatchUnreadable(
            f"decompresses to more than ingest.max_decoded_bytes {limit:,} bytes; decompression stopped",
            rule="max_decoded_bytes",
        )
    if not out:
        raise BatchUnreadable("empty file (0 bytes once decompressed)", rule="empty_file")
    return out


def _parquet(data: bytes, limits: Ingest) -> pd.DataFrame:
    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
    except Exception as exc:
        raise BatchUnreadable(
            f"not a readable Parquet file (truncated or corrupt?): {type(exc).__name__}: {exc}",
            rule="parquet",
        ) from exc
    rows = int(meta.num_rows)
    decoded = sum(int(meta.row_group(i).total_byte_size) for i in range(meta.num_row_groups))
    if rows > limits.max_rows:
        raise BatchUnreadable(
            f"Parquet metadata says {rows:,} rows, above ingest.max_rows {limits.max_rows:,}; not decoded",
            rule="max_rows",
            rows=rows,
        )
    if decoded > limits.max_decoded_bytes:
        raise BatchUnreadable(
            f"Parquet metadata says {decoded:,} bytes uncompressed, above ingest.max_decoded_bytes "
            f"{limits.max_decoded_bytes:,}; not decoded",
            rule="max_decoded_bytes",
            rows=rows,
        )
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:
        raise BatchUnreadable(
            f"unreadable Parquet data (truncated or corrupt?): {type(exc).__name__}: {exc}", rule="parquet"
        ) from exc


def _text(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BatchUnreadable(
            "UTF-16 byte order mark: landing reads UTF-8 text; save the file as UTF-8 CSV", rule="encoding"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchUnreadable(
            f"not UTF-8 text at byte {exc.start}: landing reads UTF-8 CSV", rule="encoding"
        ) from exc


def _csv(data: bytes) -> pd.DataFrame:
    text = _text(data)
    header = text.split("\n", 1)[0]
    if "," not in header:
        for sep, word in OTHER_DELIMITERS.items():
            if sep in header:
                raise BatchUnreadable(
                    f"delimited by {word} ({sep!r}), not commas: landing reads comma-separated CSV",
                    rule="delimiter",
                )
    _check_not_truncated(text)
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:
        raise BatchUnreadable(f"unreadable CSV: {type(exc).__name__}: {exc}", rule="csv") from exc


def _check_not_truncated(text: str) -> None:
    """A file cut short ends in a partial line: fewer fields than its header."""
    if not text or text.endswith("\n"):
        return
    lines = text.rsplit("\n", 2)
    if len(lines) < 2:
        return
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0])))
    last = next(csv.reader(io.StringIO(lines[-1])), [])
    if len(last) < len(header):
        number = text.count("\n") + 1
        raise BatchUnreadable(
            f"truncated file: its last line ({number}) has {len(last)} of the header's {len(header)} "
            "fields and no line end",
            rule="truncated",
        )
