"""The landing zone: which batches a run takes, and where each landed file goes afterwards.

A landed file is never deleted: a good one moves to the archive, a bad one to quarantine beside
its validation result, and a note per file name remembers where it went, so that a rerun for a
file that already moved is answered instead of failing.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tasks.common import storage
from tasks.common.clock import now_iso
from tasks.ingest.validation import ValidationReport, render_html

if TYPE_CHECKING:
    from config import Settings

SOURCES = "_sources"
BATCH_URI = "batch_uri"
"""The key that names a batch in an asset event's extra and in a run's conf."""


def requested_batches(event_extras: Iterable[Mapping[str, Any]], conf: Mapping[str, Any] | None) -> list[str]:
    """The batches a run was asked for: each triggering asset event's ``extra.batch_uri`` (oldest
    first), then the run conf's ``batch_uri`` (a run triggered by hand)."""
    requested = [str(extra[BATCH_URI]) for extra in event_extras if extra.get(BATCH_URI)]
    if conf and conf.get(BATCH_URI):
        requested.append(str(conf[BATCH_URI]))
    return requested


def pending_batches(settings: Settings, requested: list[str] | None = None) -> list[str]:
    """Batches to ingest now: the requested ones, then everything else waiting in landing.

    The sweep also covers asset events that Airflow dropped while a run was being created
    (apache/airflow#56050) and files dropped by hand.
    """
    swept = storage.list_files(settings.storage.landing_uri, settings.ingest.file_patterns)
    return list(dict.fromkeys([*(requested or []), *swept]))


def archive(settings: Settings, batch_uri: str, batch_id: str) -> str:
    """Move a curated (or repeated) batch to ``archive/<batch_id>.<ext>``; returns where it went."""
    ext = posixpath.splitext(batch_uri)[1]
    return storage.move(batch_uri, storage.join(settings.storage.archive_uri, f"{batch_id}{ext}"))


def quarantine(settings: Settings, batch_uri: str, batch_id: str, report: ValidationReport) -> str:
    """Move the batch to ``quarantine/<batch_id>/`` beside its validation JSON and HTML."""
    folder = storage.join(settings.storage.quarantine_uri, batch_id)
    summary = {**report.summary(), "batch_id": batch_id, "quarantined_at": now_iso()}
    storage.write_text(
        storage.join(folder, "validation.json"),
        json.dumps({"summary": summary, "great_expectations": report.result}, indent=2, default=str),
    )
    storage.write_text(storage.join(folder, "validation.html"), render_html(report))
    storage.move(batch_uri, storage.join(folder, storage.basename(batch_uri)))
    return folder


def _note_uri(settings: Settings, batch_uri: str) -> str:
    return storage.join(settings.storage.curated_uri, SOURCES, f"{storage.basename(batch_uri)}.json")


def remember(settings: Settings, batch_uri: str, outcome: Mapping[str, Any]) -> None:
    """Note what happened to the file of this name (``BatchResult.as_dict``)."""
    storage.write_text(_note_uri(settings, batch_uri), json.dumps(dict(outcome)))


def recall(settings: Settings, batch_uri: str) -> dict[str, Any] | None:
    """What happened to the file of this name last time, or None when it was never processed."""
    uri = _note_uri(settings, batch_uri)
    if not storage.exists(uri):
        return None
    noted: dict[str, Any] = json.loads(storage.read_bytes(uri))
    return noted
