"""Route landed batches: validated rows go to the curated dataset, bad batches to quarantine.

Idempotent by construction: a batch is identified by its file name plus a content hash, its
curated files are named after that id (a rerun overwrites them), rows whose ``transaction_id`` is
already curated are dropped, and a manifest records what each batch added. Nothing is ever
deleted: the source file ends up in the archive (good) or in quarantine (bad), beside its
validation result (JSON and GE data-docs HTML).
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from tasks.common import storage
from tasks.ingest.validation import render_html, validate_batch

if TYPE_CHECKING:
    import pandas as pd

    from config import Settings

log = logging.getLogger(__name__)

Status = Literal["ingested", "quarantined", "duplicate", "already_processed"]
MANIFESTS = "_manifests"
SOURCES = "_sources"


@dataclass
class BatchResult:
    """What happened to one batch; the DAG logs it, publishes it and reports it."""

    batch_uri: str
    batch_id: str
    status: Status
    rows: int = 0
    rows_added: int = 0
    duplicates_dropped: int = 0
    partitions: list[str] = field(default_factory=list)
    reason: str = ""
    location: str = ""
    """Where the source file went: the archive copy or the quarantine folder."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_id_for(uri: str, data: bytes) -> str:
    stem = storage.basename(uri).rsplit(".", 1)[0]
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}"


def pending_batches(settings: Settings, requested: list[str] | None = None) -> list[str]:
    """Batches to ingest now: the ones named by asset events or conf, then the landing sweep."""
    swept = storage.list_files(settings.storage.landing_uri, settings.ingest.file_patterns)
    ordered = list(dict.fromkeys([*(requested or []), *swept]))
    return ordered


def _manifest_uri(settings: Settings, batch_id: str) -> str:
    return storage.join(settings.storage.curated_uri, MANIFESTS, f"{batch_id}.json")


def _source_pointer_uri(settings: Settings, name: str) -> str:
    return storage.join(settings.storage.curated_uri, SOURCES, f"{name}.json")


def _read_json(uri: str) -> dict[str, Any] | None:
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None


def _remember(settings: Settings, result: BatchResult) -> None:
    """Record where a source file went, so a rerun for a file that moved is answered, not lost."""
    name = storage.basename(result.batch_uri)
    storage.write_text(_source_pointer_uri(settings, name), json.dumps(result.as_dict()))


def ingest_batch(batch_uri: str, settings: Settings) -> BatchResult:
    """Validate one batch and route it. Safe to rerun any number of times."""
    name = storage.basename(batch_uri)
    if not storage.exists(batch_uri):
        previous = _read_json(_source_pointer_uri(settings, name))
        if previous is None:
            raise FileNotFoundError(f"batch {batch_uri} does not exist and was never ingested")
        log.info("batch %s was already processed (%s)", name, previous["status"])
        return BatchResult(**{**previous, "status": "already_processed", "rows_added": 0})

    data = storage.read_bytes(batch_uri)
    batch_id = batch_id_for(batch_uri, data)
    if (manifest := _read_json(_manifest_uri(settings, batch_id))) is not None:
        archived = _archive(settings, batch_uri, batch_id)
        log.info("batch %s is a repeat delivery of %s: nothing added", name, batch_id)
        result = BatchResult(batch_uri, batch_id, "duplicate", rows=manifest["rows"], location=archived)
        _remember(settings, result)
        return result

    report, frame = validate_batch(batch_uri, settings)
    if not report.success:
        for failure in report.failures:
            log.error("batch %s failed %s: %s", name, failure.expectation, failure.message)
        where = quarantine(settings, batch_uri, batch_id, report)
        result = BatchResult(
            batch_uri, batch_id, "quarantined", rows=report.rows, reason=report.reason, location=where
        )
        _remember(settings, result)
        return result

    assert frame is not None
    added, dropped, partitions = write_curated(settings, frame, batch_id)
    manifest = {
        "batch_id": batch_id,
        "source": batch_uri,
        "rows": len(frame),
        "rows_added": added,
        "duplicates_dropped": dropped,
        "partitions": partitions,
        "sha256": hashlib.sha256(data).hexdigest(),
        "ingested_at": datetime.now(UTC).isoformat(),
    }
    storage.write_text(_manifest_uri(settings, batch_id), json.dumps(manifest, indent=2))
    archived = _archive(settings, batch_uri, batch_id)
    result = BatchResult(
        batch_uri, batch_id, "ingested", len(frame), added, dropped, partitions, location=archived
    )
    _remember(settings, result)
    log.info("batch %s: %d rows added, %d already curated, partitions %s", name, added, dropped, partitions)
    return result


def _archive(settings: Settings, batch_uri: str, batch_id: str) -> str:
    ext = posixpath.splitext(batch_uri)[1]
    return storage.move(batch_uri, storage.join(settings.storage.archive_uri, f"{batch_id}{ext}"))


def quarantine(settings: Settings, batch_uri: str, batch_id: str, report: Any) -> str:
    """Move the batch to ``quarantine/<batch_id>/`` beside its validation JSON and HTML."""
    folder = storage.join(settings.storage.quarantine_uri, batch_id)
    summary = {**report.summary(), "batch_id": batch_id, "quarantined_at": datetime.now(UTC).isoformat()}
    storage.write_text(
        storage.join(folder, "validation.json"),
        json.dumps({"summary": summary, "great_expectations": report.result}, indent=2, default=str),
    )
    storage.write_text(storage.join(folder, "validation.html"), render_html(report))
    storage.move(batch_uri, storage.join(folder, storage.basename(batch_uri)))
    return folder


def _curated_keys(settings: Settings, dates: list[str], exclude_batch: str) -> set[str]:
    """Transaction ids already curated on the given event dates, excluding this batch's own files."""
    import pyarrow.parquet as pq

    key = settings.schema_.key
    seen: set[str] = set()
    for date in dates:
        part = storage.join(settings.storage.curated_uri, f"event_date={date}")
        for uri in storage.list_files(part, ["*.parquet"]):
            if storage.basename(uri) == f"{exclude_batch}.parquet":
                continue
            fs, path = storage.filesystem(uri)
            seen.update(pq.read_table(path, columns=[key], filesystem=fs).column(key).to_pylist())
    return seen


def write_curated(settings: Settings, frame: pd.DataFrame, batch_id: str) -> tuple[int, int, list[str]]:
    """Write the batch as one Parquet file per event date; returns (added, dropped, dates)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = settings.schema_
    frame = frame[schema.names].copy()
    dates = frame[schema.timestamp].dt.strftime("%Y-%m-%d")
    known = _curated_keys(settings, sorted(dates.unique()), exclude_batch=batch_id)
    fresh = ~frame[schema.key].isin(known)
    frame, dates = frame[fresh], dates[fresh]
    frame = frame.assign(batch_id=batch_id)
    written: list[str] = []
    for date, part in frame.groupby(dates, sort=True):
        uri = storage.join(settings.storage.curated_uri, f"event_date={date}", f"{batch_id}.parquet")
        fs, path = storage.filesystem(uri)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        pq.write_table(table, path, filesystem=fs)
        written.append(date)
    return len(frame), int((~fresh).sum()), written


def curated_row_count(settings: Settings) -> int:
    """Rows in the curated dataset, from Parquet footers (no data is read)."""
    import pyarrow.parquet as pq

    root = settings.storage.curated_uri
    fs, path = storage.filesystem(root)
    if not fs.exists(path):
        return 0
    files = [p for p in fs.glob(posixpath.join(path, "event_date=*", "*.parquet"))]
    return sum(pq.ParquetFile(p, filesystem=fs).metadata.num_rows for p in files)


def read_curated(settings: Settings) -> pd.DataFrame:
    """The whole curated dataset as one frame (for tests, small tools and the demo)."""
    import pandas as pd
    import pyarrow.dataset as ds

    fs, path = storage.filesystem(settings.storage.curated_uri)
    if not fs.exists(path):
        return pd.DataFrame(columns=settings.schema_.names)
    dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    return dataset.to_table().to_pandas()


def summarize(results: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """The curated asset event's extra: what this run added and where the dataset stands."""
    by_status: dict[str, list[str]] = {}
    for r in results:
        by_status.setdefault(r["status"], []).append(r["batch_id"])
    return {
        "rows_added": sum(r["rows_added"] for r in results),
        "batches_ingested": by_status.get("ingested", []),
        "batches_quarantined": by_status.get("quarantined", []),
        "partitions": sorted({p for r in results for p in r["partitions"]}),
        "total_rows": curated_row_count(settings),
        "curated_uri": settings.storage.curated_uri,
    }


def quarantine_message(results: list[dict[str, Any]]) -> str | None:
    """The run's verdict when batches were quarantined (None when none were)."""
    bad = [r for r in results if r["status"] == "quarantined"]
    if not bad:
        return None
    lines = [f"{len(bad)} of {len(results)} batches quarantined:"]
    lines += [f"- {storage.basename(r['batch_uri'])}: {r['reason']} (see {r['location']})" for r in bad]
    return "\n".join(lines)
