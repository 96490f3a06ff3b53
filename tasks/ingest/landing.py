"""The landing zone: which batches a run takes, and where each landed file goes afterwards.

A landed file is never deleted: a good one moves to the archive, a bad one to quarantine beside
its validation result. Only files of the landing zone are ever moved (``tasks.ingest.confine``).
A note per file name (``_sources/<name>.json`` beside the curated data) is the journal of that
move: written with ``moved: false`` before it and ``moved: true`` after it, so that a retry after
a crash anywhere in between finishes the move and reports what the first attempt decided,
and a rerun for a file that already moved is answered instead of failing.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tasks.common import storage
from tasks.ingest.confine import confine, is_confined
from tasks.ingest.reading import suffix

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)

SOURCES = "_sources"
BATCH_URI = "batch_uri"
"""The key that names a batch in an asset event's extra and in a run's conf."""
MOVED = "moved"


def requested_batches(event_extras: Iterable[Mapping[str, Any]], conf: Mapping[str, Any] | None) -> list[str]:
    """The batches a run was asked for: each triggering asset event's ``extra.batch_uri`` (oldest
    first), then the run conf's ``batch_uri`` (a run triggered by hand). They are confined to the
    landing zone when ingested, not here: a refused one fails its own task, not the run."""
    requested = [str(extra[BATCH_URI]) for extra in event_extras if extra.get(BATCH_URI)]
    if conf and conf.get(BATCH_URI):
        requested.append(str(conf[BATCH_URI]))
    return requested


def _ignored(settings: Settings, uri: str) -> bool:
    name = storage.basename(uri)
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in settings.ingest.ignore_patterns)


def pending_batches(settings: Settings, requested: list[str] | None = None) -> list[str]:
    """Batches to ingest now: the requested ones, then everything else waiting in landing.

    The sweep also covers asset events that Airflow dropped while a run was being created
    (apache/airflow#56050) and files dropped by hand. It leaves alone files being written
    (``ingest.ignore_patterns``) and symlinks that lead out of the landing zone.
    """
    swept = storage.list_files(settings.storage.landing_uri, settings.ingest.file_patterns)
    swept = [uri for uri in swept if not _ignored(settings, uri)]
    outside = [uri for uri in swept if not is_confined(settings, uri)]
    if outside:
        log.warning("landing: %d files lead out of the landing zone and are left alone", len(outside))
    return list(dict.fromkeys([*(requested or []), *(u for u in swept if u not in outside)]))


def archive_destination(settings: Settings, batch_uri: str, batch_id: str) -> str:
    """Where a curated (or repeated) batch goes: ``archive/<batch_id><suffix>``."""
    return storage.join(settings.storage.archive_uri, f"{batch_id}{suffix(storage.basename(batch_uri))}")


def move_landed(settings: Settings, batch_uri: str, destination: str) -> str:
    """Move a file out of the landing zone (and only from there)."""
    return storage.move(confine(settings, batch_uri), destination)


def _note_uri(settings: Settings, batch_uri: str) -> str:
    return storage.join(settings.storage.curated_uri, SOURCES, f"{storage.basename(batch_uri)}.json")


def remember(settings: Settings, batch_uri: str, outcome: Mapping[str, Any], *, moved: bool) -> None:
    """Note what happened to the file of this name (``BatchResult.as_dict``) and whether it has
    left the landing zone yet."""
    storage.write_text(_note_uri(settings, batch_uri), json.dumps({**outcome, MOVED: moved}))


def recall(settings: Settings, batch_uri: str) -> dict[str, Any] | None:
    """What happened to the file of this name last time, or None when it was never processed."""
    uri = _note_uri(settings, batch_uri)
    if not storage.exists(uri):
        return None
    noted: dict[str, Any] = json.loads(storage.read_bytes(uri))
    noted.setdefault(MOVED, True)  # notes written before the journal had the flag
    return noted
