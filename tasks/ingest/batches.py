"""Route one landed batch: validated rows to the curated dataset, a bad batch to quarantine.

Idempotent by construction: a batch is identified by its file name plus a content hash, so a
repeat delivery is recognised by its manifest and adds nothing, and a rerun for a file that has
already moved is answered from the note landing keeps (see ``tasks.ingest.landing``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from tasks.common import storage
from tasks.common.clock import now_iso
from tasks.ingest import curated, landing
from tasks.ingest.validation import ValidationReport, validate_batch

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

    from config import Settings

log = logging.getLogger(__name__)

Status = Literal["ingested", "quarantined", "duplicate", "already_processed"]


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchResult:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def batch_id_for(uri: str, data: bytes) -> str:
    stem = storage.basename(uri).rsplit(".", 1)[0]
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}"


def ingest_batch(batch_uri: str, settings: Settings) -> BatchResult:
    """Validate one batch and route it. Safe to rerun any number of times."""
    if not storage.exists(batch_uri):
        return _already_processed(settings, batch_uri)
    data = storage.read_bytes(batch_uri)
    batch_id = batch_id_for(batch_uri, data)
    if (manifest := curated.read_manifest(settings, batch_id)) is not None:
        result = _repeat_delivery(settings, batch_uri, batch_id, manifest)
    else:
        report, frame = validate_batch(batch_uri, settings)
        if frame is None or not report.success:
            result = _quarantined(settings, batch_uri, batch_id, report)
        else:
            result = _curate(settings, batch_uri, data, batch_id, frame)
    landing.remember(settings, batch_uri, result.as_dict())
    return result


def _already_processed(settings: Settings, batch_uri: str) -> BatchResult:
    previous = landing.recall(settings, batch_uri)
    if previous is None:
        raise FileNotFoundError(f"batch {batch_uri} does not exist and was never ingested")
    log.info("batch %s was already processed (%s)", storage.basename(batch_uri), previous["status"])
    return BatchResult.from_dict({**previous, "status": "already_processed", "rows_added": 0})


def _repeat_delivery(
    settings: Settings, batch_uri: str, batch_id: str, manifest: curated.Manifest
) -> BatchResult:
    archived = landing.archive(settings, batch_uri, batch_id)
    log.info("batch %s is a repeat delivery of %s: nothing added", storage.basename(batch_uri), batch_id)
    return BatchResult(batch_uri, batch_id, "duplicate", rows=manifest.rows, location=archived)


def _quarantined(settings: Settings, batch_uri: str, batch_id: str, report: ValidationReport) -> BatchResult:
    for failure in report.failures:
        log.error("batch %s failed %s: %s", storage.basename(batch_uri), failure.expectation, failure.message)
    where = landing.quarantine(settings, batch_uri, batch_id, report)
    return BatchResult(
        batch_uri, batch_id, "quarantined", rows=report.rows, reason=report.reason, location=where
    )


def _curate(
    settings: Settings, batch_uri: str, data: bytes, batch_id: str, frame: pd.DataFrame
) -> BatchResult:
    added, dropped, partitions = curated.write_curated(settings, frame, batch_id)
    manifest = curated.Manifest(
        batch_id=batch_id,
        source=batch_uri,
        rows=len(frame),
        rows_added=added,
        duplicates_dropped=dropped,
        partitions=partitions,
        sha256=hashlib.sha256(data).hexdigest(),
        ingested_at=now_iso(),
    )
    curated.write_manifest(settings, manifest)
    archived = landing.archive(settings, batch_uri, batch_id)
    log.info(
        "batch %s: %d rows added, %d already curated, partitions %s",
        storage.basename(batch_uri),
        added,
        dropped,
        partitions,
    )
    return BatchResult(
        batch_uri, batch_id, "ingested", len(frame), added, dropped, partitions, location=archived
    )
