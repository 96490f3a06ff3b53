"""Route one landed batch: validated rows to the curated dataset, a bad batch to quarantine.

Idempotent and crash-safe by construction. A batch is identified by its file name plus a content
hash. The steps are: confine the URI to the landing zone (``confine``: a refused one is never
read or moved); fetch within the size limit; then, for a new batch, validate and either curate
(curated files, then the manifest with ``archived: false``) or record it in quarantine; then
move the landed file, journalled by the note of its name (``landing.remember`` before and after).

A retry after a crash at any point finishes the work and reports what the first attempt decided:
- curated but not archived (``manifest.archived`` false): archived now, reported ``ingested``
  with the rows that attempt added, so the run still posts the curated asset event;
- moved but the move not noted: the note's outcome, as decided;
- curated files written but no manifest: curated again (rows already there are not added twice).
A repeat delivery of a finished batch adds nothing (``duplicate``); a rerun for a file that has
already moved is answered from its note (``already_processed``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal

from tasks.common import storage
from tasks.common.clock import now_iso
from tasks.ingest import curated, landing, quarantine, reading
from tasks.ingest.confine import confine
from tasks.ingest.validation import ValidationReport, validate_landed

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


def batch_id_for(uri: str, digest: str) -> str:
    """``<file name without its format suffix>-<first 12 hex digits of the content hash>``."""
    return f"{reading.stem(storage.basename(uri))}-{digest[:12]}"


def ingest_batch(batch_uri: str, settings: Settings) -> BatchResult:
    """Validate one batch and route it. Safe to rerun any number of times, and after a crash."""
    uri = confine(settings, batch_uri)
    if not storage.exists(uri):
        return _moved_before(settings, uri)
    landed = reading.fetch(uri, settings.ingest)
    batch_id = batch_id_for(uri, landed.digest)
    manifest = curated.read_manifest(settings, batch_id)
    if manifest is not None and not manifest.archived:
        log.warning("batch %s was curated but not archived by an earlier attempt: finishing it", batch_id)
        return _finish(settings, _from_manifest(uri, manifest), manifest)
    if manifest is not None:
        log.info("batch %s is a repeat delivery of %s: nothing added", storage.basename(uri), batch_id)
        repeat = BatchResult(uri, batch_id, "duplicate", rows=manifest.rows)
        return _finish(settings, repeat)
    report, frame = validate_landed(landed, settings)
    if frame is None or not report.success:
        return _finish(settings, _quarantined(settings, uri, batch_id, report))
    return _curate(settings, uri, landed, batch_id, frame)


def _moved_before(settings: Settings, batch_uri: str) -> BatchResult:
    """The file has left landing: a rerun (``already_processed``) or a retry after the move."""
    previous = landing.recall(settings, batch_uri)
    if previous is None:
        raise FileNotFoundError(f"batch {batch_uri} does not exist and was never ingested")
    result = BatchResult.from_dict(previous)
    if not previous[landing.MOVED]:
        log.warning(
            "batch %s was moved by an earlier attempt that stopped there: finishing it", result.batch_id
        )
        manifest = curated.read_manifest(settings, result.batch_id)
        _settle(settings, result, manifest if result.status == "ingested" else None)
        return result
    log.info("batch %s was already processed (%s)", storage.basename(batch_uri), result.status)
    return replace(result, status="already_processed", rows_added=0)


def _finish(settings: Settings, result: BatchResult, manifest: curated.Manifest | None = None) -> BatchResult:
    """Move the landed file to where ``result.location`` says, journalled by its note."""
    if result.status != "quarantined":
        result.location = landing.archive_destination(settings, result.batch_uri, result.batch_id)
    destination = result.location
    if result.status == "quarantined":
        destination = storage.join(result.location, storage.basename(result.batch_uri))
    landing.remember(settings, result.batch_uri, result.as_dict(), moved=False)
    landing.move_landed(settings, result.batch_uri, destination)
    _settle(settings, result, manifest)
    return result


def _settle(settings: Settings, result: BatchResult, manifest: curated.Manifest | None) -> None:
    """After the move: the note says so, and a curated batch's manifest is marked archived."""
    if manifest is not None and not manifest.archived:
        curated.write_manifest(settings, replace(manifest, archived=True))
    landing.remember(settings, result.batch_uri, result.as_dict(), moved=True)


def _from_manifest(batch_uri: str, manifest: curated.Manifest) -> BatchResult:
    return BatchResult(
        batch_uri,
        manifest.batch_id,
        "ingested",
        manifest.rows,
        manifest.rows_added,
        manifest.duplicates_dropped,
        list(manifest.partitions),
    )


def _quarantined(settings: Settings, batch_uri: str, batch_id: str, report: ValidationReport) -> BatchResult:
    for failure in report.failures:
        log.error("batch %s failed %s: %s", batch_id, failure.expectation, failure.message)
    where = quarantine.record(settings, batch_uri, batch_id, report)
    return BatchResult(
        batch_uri, batch_id, "quarantined", rows=report.rows, reason=report.reason, location=where
    )


def _curate(
    settings: Settings, batch_uri: str, landed: reading.Landed, batch_id: str, frame: pd.DataFrame
) -> BatchResult:
    added, dropped, partitions = curated.write_curated(settings, frame, batch_id)
    manifest = curated.Manifest(
        batch_id=batch_id,
        source=batch_uri,
        rows=len(frame),
        rows_added=added,
        duplicates_dropped=dropped,
        partitions=partitions,
        sha256=landed.digest,
        ingested_at=now_iso(),
        archived=False,
    )
    curated.write_manifest(settings, manifest)
    log.info(
        "batch %s: %d rows added, %d already curated, partitions %s", batch_id, added, dropped, partitions
    )
    return _finish(settings, _from_manifest(batch_uri, manifest), manifest)
