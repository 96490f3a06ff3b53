"""What an ingest run tells the rest of the loop: the curated asset event, and the run's verdict.

The DAG's ``publish`` and ``report`` tasks are one call each into here, so the rules (no new
rows: no event, features have nothing to do; a batch that failed or was quarantined: a red run
that names it) are tested without Airflow. Results arrive as the ``BatchResult.as_dict`` that
the mapped ``ingest_batch`` tasks returned, ``None`` where a task failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tasks.common import storage
from tasks.common.outcomes import Fail, Skip
from tasks.ingest.batches import BatchResult
from tasks.ingest.curated import curated_row_count

if TYPE_CHECKING:
    from config import Settings


@dataclass(frozen=True)
class RunSummary:
    """What one run added to the curated dataset and where the dataset stands (the event's extra)."""

    rows_added: int
    batches_ingested: list[str]
    batches_quarantined: list[str]
    partitions: list[str]
    total_rows: int
    curated_uri: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finished(results: Iterable[Mapping[str, Any] | None]) -> list[BatchResult]:
    return [BatchResult.from_dict(r) for r in results if r]


def summarize(settings: Settings, results: Iterable[BatchResult]) -> RunSummary:
    done = list(results)
    return RunSummary(
        rows_added=sum(r.rows_added for r in done),
        batches_ingested=[r.batch_id for r in done if r.status == "ingested"],
        batches_quarantined=[r.batch_id for r in done if r.status == "quarantined"],
        partitions=sorted({p for r in done for p in r.partitions}),
        total_rows=curated_row_count(settings),
        curated_uri=settings.storage.curated_uri,
    )


def curated_event_extra(settings: Settings, results: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """The curated asset event's extra for this run; ``Skip`` when the run added no rows, so that
    no event is posted and the features DAG is not started for nothing."""
    summary = summarize(settings, _finished(results))
    if summary.rows_added == 0:
        raise Skip("no new rows: the curated asset is left untouched")
    return summary.as_dict()


def quarantine_message(results: Sequence[BatchResult]) -> str | None:
    """The run's verdict when batches were quarantined (None when none were)."""
    bad = [r for r in results if r.status == "quarantined"]
    if not bad:
        return None
    lines = [f"{len(bad)} of {len(results)} batches quarantined:"]
    lines += [f"- {storage.basename(r.batch_uri)}: {r.reason} (see {r.location})" for r in bad]
    return "\n".join(lines)


def check_run(batches: Sequence[str], results: Iterable[Mapping[str, Any] | None]) -> None:
    """``Fail`` when a batch failed to ingest or was quarantined, naming each (a retry would not
    change a validation result); nothing when every batch was curated or already known."""
    finished = _finished(results)
    if len(finished) < len(batches):
        raise Fail(f"{len(batches) - len(finished)} batches failed to ingest")
    if message := quarantine_message(finished):
        raise Fail(message)
