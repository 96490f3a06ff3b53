"""The data stages: an upstream system lands batches and tells Airflow; ingest curates them (and
quarantines the bad one); features materializes what changed."""

from __future__ import annotations

import json
from datetime import datetime

from tasks.common import storage
from tasks.platform import simulate
from tasks.platform.story.context import Story
from tasks.platform.story.reads import Run, StoryError, finished, poll, touched_since, when
from tasks.platform.story.timeline import FAILED, OK


def quarantined(story: Story) -> set[str]:
    fs, path = storage.filesystem(story.settings.storage.quarantine_uri)
    if not fs.exists(path):
        return set()
    return {storage.to_uri(fs, p) for p in fs.ls(path, detail=False) if fs.isdir(p)}


def land(story: Story, scenario: str, batches: int, bad: str | None) -> list[str]:
    """Write batches into the landing zone and post an asset event for each (retried as an
    upstream system would); the URIs landed."""
    settings, rows = story.settings, story.options.rows or story.settings.simulate.batch_rows
    first = simulate.landed_batches(settings)  # reruns continue the history with new rows
    uris = []
    for index in range(first, first + batches):
        df = simulate.generate_batch(settings, scenario, index=index, rows=rows)
        uri = simulate.write_batch(df, settings.storage.landing_uri, simulate.batch_name(scenario, index))
        simulate.notify_airflow(uri, settings, rows=len(df))
        uris.append(uri)
    if bad:
        defect = simulate.make_bad_batch(settings, bad, index=first, rows=rows)
        uri = simulate.write_bad_batch(defect, settings.storage.landing_uri)
        simulate.notify_airflow(uri, settings)
        uris.append(uri)
    return uris


def _swept(story: Story, uris: list[str], since: datetime, key: str) -> list[Run] | None:
    runs = touched_since(story.client.dag_runs("ingest"), since)
    waiting = [u for u in uris if storage.exists(u)]
    busy = [r for r in runs if not finished(r)]
    story.timeline.note(
        key, f"{len(uris) - len(waiting)} of {len(uris)} files taken, {len(busy)} run(s) going"
    )
    return runs if runs and not waiting and not busy else None


def ingest(story: Story, uris: list[str], since: datetime, key: str = "ingest") -> list[Run]:
    """Wait until every landed file left the landing zone and no ingest run is in flight."""
    before = quarantined(story)
    story.timeline.begin(key, f"ingest: validate and curate {len(uris)} file(s)", at=since.isoformat())
    runs = poll(
        lambda: _swept(story, uris, since, key), timeout=story.options.timeout, what="ingest", every=2.0
    )
    new = sorted(quarantined(story) - before)
    reasons = []
    for folder in new:
        summary = json.loads(storage.read_bytes(storage.join(folder, "validation.json")))["summary"]
        reasons.append(f"{storage.basename(folder)}: {summary['reason']}")
    good = len(uris) - len(new)
    detail = f"{good} batch(es) curated" + (f", {len(new)} quarantined ({'; '.join(reasons)})" if new else "")
    ended = max((r["end_date"] for r in runs if r.get("end_date")), default=None)
    story.seen.setdefault("quarantine", []).extend(new)
    story.timeline.end(key, OK, detail, at=ended, run_id=_ids(runs))
    return runs


def features(story: Story, since: datetime, key: str = "features") -> list[Run]:
    """Wait for the features run(s) the curated asset triggered since ``since``."""
    story.timeline.begin(key, "features: refresh and materialize", at=since.isoformat())

    def done() -> list[Run] | None:
        runs = touched_since(story.client.dag_runs("features"), since)
        busy = [r for r in runs if not finished(r)]
        story.timeline.note(key, f"{len(runs)} run(s), {len(busy)} going")
        return runs if runs and not busy else None

    runs = poll(done, timeout=story.options.timeout, what="features", every=2.0)
    _started_with(story, key, runs)
    failed = [r for r in runs if r["state"] != "success"]
    ended = max((r["end_date"] for r in runs if r.get("end_date")), default=None)
    story.timeline.end(key, FAILED if failed else OK, f"{len(runs)} run(s)", at=ended, run_id=_ids(runs))
    if failed:
        raise StoryError(f"features failed: run {failed[0]['dag_run_id']} (see its task logs)")
    return runs


def _started_with(story: Story, key: str, runs: list[Run]) -> None:
    """The stage began when its first run did (not when the story started waiting for it)."""
    stage = story.timeline.stage(key)
    first = min((t for r in runs if (t := when(r.get("start_date")))), default=None)
    if stage and first and first > datetime.fromisoformat(stage.started):
        stage.started = first.isoformat()


def _ids(runs: list[Run]) -> str | None:
    ordered = sorted(runs, key=lambda r: str(r.get("queued_at")))
    if not ordered:
        return None
    more = f" (+{len(ordered) - 1} more)" if len(ordered) > 1 else ""
    return f"{ordered[-1]['dag_run_id']}{more}"


def land_and_curate(story: Story, scenario: str, batches: int, bad: str | None, label: str) -> None:
    """Land batches, then wait for ingest and the features runs that follow."""
    key = f"land {label}"
    since = story.now()
    story.timeline.begin(
        key, f"upstream lands {batches} {label} batch(es)" + (f" + 1 bad ({bad})" if bad else "")
    )
    uris = land(story, scenario, batches, bad)
    story.timeline.end(key, OK, ", ".join(storage.basename(u) for u in uris))
    ingest(story, uris, since, key=f"ingest {label}")
    features(story, since, key=f"features {label}")
