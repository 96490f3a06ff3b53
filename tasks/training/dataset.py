"""Training sets: every labelled curated event with its point-in-time features, as one Parquet file.

``build`` joins the curated transactions (all of them, or a time range) with their features
through the versioned feature service (``tasks.features.offline.training_set``), writes the result
under ``storage.data_uri/<train.training_sets_dir>/<hash>.parquet`` and records its data version
beside it (``<hash>.json``): the SHA-256 of the file's bytes, the curated partitions and batches it
came from, row and fraud counts, the feature service and its features. The file name is the
content hash, so building the same data twice writes nothing new.

The first ``train.warmup_hours`` of the curated history (the longest feature window by default)
give no training rows: their features are computed from a history that began inside their
windows, so long-window counts ramp up from zero there while the online store always serves
settled ones. Those events are still the features' context.

``read`` is what the training entrypoint calls on the URI it is given: it re-hashes the bytes
and refuses a file that no longer matches its recorded version.

    python -m tasks.training.dataset [--start ISO] [--end ISO]     # prints the data version (JSON)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from config import load_config
from tasks.common import storage
from tasks.common.clock import now_iso, utc_timestamp
from tasks.common.outcomes import Skip
from tasks.features.tables import MAX_WINDOW
from tasks.ingest.curated import curated_row_count, read_curated
from tasks.training import streamed

if TYPE_CHECKING:
    from config import Settings

PARTITION_COLUMN = "event_date"
BATCH_COLUMN = "batch_id"


class TrainingDataError(ValueError):
    """No usable training data, or a training set that does not match its recorded version."""


@dataclass
class DataVersion:
    """What a model was trained on; logged with every run and tagged on every model version."""

    uri: str
    sha256: str
    rows: int
    positives: int
    feature_service: str
    features: list[str]
    partitions: list[str]
    """Curated partitions (``event_date=YYYY-MM-DD``) the rows came from."""
    batches: list[str] = field(default_factory=list)
    start: str | None = None
    end: str | None = None
    created_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def partition_summary(self) -> str:
        """Short enough for an MLflow tag: ``event_date=a..event_date=b (n partitions)``."""
        if not self.partitions:
            return "none"
        if len(self.partitions) == 1:
            return self.partitions[0]
        return f"{self.partitions[0]}..{self.partitions[-1]} ({len(self.partitions)} partitions)"


def training_sets_uri(settings: Settings) -> str:
    return storage.join(settings.storage.data_uri, settings.train.training_sets_dir)


def columns(settings: Settings, features: list[str]) -> list[str]:
    """Columns of a training set: keys, time, request columns, label, lineage, then features."""
    schema, t = settings.schema_, settings.train
    head = [schema.key, schema.timestamp, *schema.entities, *t.raw_numeric, *t.raw_categorical]
    head = list(dict.fromkeys([*head, schema.label, PARTITION_COLUMN, BATCH_COLUMN]))
    return head + [f for f in features if f not in head]


def labelled_events(settings: Settings, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Curated events with a label, in ``[start, end)`` when given, ordered by time then key."""

    events = read_curated(settings)
    if events.empty:
        raise TrainingDataError(f"the curated dataset at {settings.storage.curated_uri} is empty")
    events = after_warmup(settings, labelled(settings, events))
    events = in_range(settings, events, start, end)
    if events.empty:
        raise TrainingDataError(
            f"no labelled curated events between {start or 'the start'} and {end or 'now'}"
        )
    return ordered(settings, events)


def labelled(settings: Settings, events: pd.DataFrame) -> pd.DataFrame:
    """The events that have a label, their time as UTC timestamps."""
    schema = settings.schema_
    events = events[events[schema.label].notna()].copy()
    events[schema.timestamp] = pd.to_datetime(events[schema.timestamp], utc=True)
    return events


def in_range(settings: Settings, events: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    ts = settings.schema_.timestamp
    if start:
        events = events[events[ts] >= utc_timestamp(start)]
    if end:
        events = events[events[ts] < utc_timestamp(end)]
    return events


def ordered(settings: Settings, events: pd.DataFrame) -> pd.DataFrame:
    """Typed as a training set keeps them, ordered by time then key, indexed from 0."""
    schema = settings.schema_
    events[PARTITION_COLUMN] = events[PARTITION_COLUMN].astype(str)
    events[schema.label] = events[schema.label].astype("int64")
    return events.sort_values([schema.timestamp, schema.key], kind="stable").reset_index(drop=True)


def warmup(settings: Settings) -> pd.Timedelta:
    """How long after the history begins events are context only (``train.warmup_hours``)."""
    hours = settings.train.warmup_hours
    return pd.Timedelta(MAX_WINDOW) if hours is None else pd.Timedelta(hours=hours)


def after_warmup(settings: Settings, events: pd.DataFrame) -> pd.DataFrame:
    """The events whose every feature window lies inside the history (``warmup`` after its first
    event); ``TrainingDataError`` when the history is not longer than the warm-up."""
    ts = events[settings.schema_.timestamp]
    if ts.empty:
        return events
    first, span = ts.min(), warmup(settings)
    kept = events[ts >= first + span]
    if kept.empty:
        raise TrainingDataError(
            f"the curated history ({first} to {ts.max()}) is not longer than the features' warm-up "
            f"({span}, train.warmup_hours): land more history; until then every row's windows "
            f"reach before the data began"
        )
    return kept


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Deterministic bytes for a frame (same data and library versions, same hash)."""
    buffer = io.BytesIO()
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def build(settings: Settings, *, start: str | None = None, end: str | None = None) -> DataVersion:
    """Build (or find, when the same bytes exist) the training set; return its data version."""
    # Feast (seconds to import) only to build a set: reading one (the pod, monitoring) needs none
    from tasks.features import offline, store  # noqa: PLC0415 - see above

    if settings.train.build.chunk_rows:
        return build_streamed(settings, start=start, end=end)
    schema = settings.schema_
    events = labelled_events(settings, start, end)
    features = store.feature_names(settings)
    joined = offline.training_set(settings, events)
    frame = joined[columns(settings, features)].reset_index(drop=True)
    data = to_parquet_bytes(frame)
    digest = hashlib.sha256(data).hexdigest()
    uri = storage.join(training_sets_uri(settings), f"{digest[:16]}.parquet")
    version = DataVersion(
        uri=uri,
        sha256=digest,
        rows=len(frame),
        positives=int(frame[schema.label].sum()),
        feature_service=settings.feast.service,
        features=features,
        partitions=[f"{PARTITION_COLUMN}={d}" for d in sorted(frame[PARTITION_COLUMN].unique())],
        batches=sorted(frame[BATCH_COLUMN].dropna().astype(str).unique().tolist()),
        start=frame[schema.timestamp].min().isoformat(),
        end=frame[schema.timestamp].max().isoformat(),
        created_at=now_iso(),
    )
    if not storage.exists(uri):
        storage.write_bytes(uri, data)
    storage.write_text(_version_uri(uri), json.dumps(version.as_dict(), indent=2))
    return version


def build_streamed(settings: Settings, *, start: str | None = None, end: str | None = None) -> DataVersion:
    """``build`` out of core (``train.build.chunk_rows``): the same rows, a chunk of days at a time."""
    from tasks.features import store  # noqa: PLC0415 - Feast only to build a set (see build)
    from tasks.features.offline_stream import StreamingJoin  # noqa: PLC0415 - as above

    if curated_row_count(settings) == 0:  # before Feast: no data is nothing to train on (Skip)
        raise TrainingDataError(f"the curated dataset at {settings.storage.curated_uri} is empty")
    schema = settings.schema_
    features = store.feature_names(settings)
    keep, join, directory = columns(settings, features), StreamingJoin(settings), training_sets_uri(settings)

    def prepare(rows: pd.DataFrame, first: pd.Timestamp) -> pd.DataFrame:
        events = labelled(settings, rows)
        events = events[events[schema.timestamp] >= first + warmup(settings)]
        return ordered(settings, in_range(settings, events, start, end))

    sink = streamed.Sink(streamed.local_dir(directory), schema.label, schema.timestamp)
    try:
        for events in streamed.event_chunks(settings, prepare):
            sink.write(join.join(events)[keep], PARTITION_COLUMN, BATCH_COLUMN)
        digest = sink.close()
    except BaseException:
        sink.discard()
        raise
    if not sink.rows or sink.start is None or sink.end is None:
        raise TrainingDataError(
            f"no labelled curated events after the warm-up ({warmup(settings)}, train.warmup_hours) "
            f"between {start or 'the start'} and {end or 'now'} in {settings.storage.curated_uri}"
        )
    uri = storage.join(directory, f"{digest[:16]}.parquet")
    streamed.publish(sink.path, uri)
    version = DataVersion(
        uri=uri,
        sha256=digest,
        rows=sink.rows,
        positives=sink.positives,
        feature_service=settings.feast.service,
        features=features,
        partitions=[f"{PARTITION_COLUMN}={d}" for d in sorted(sink.partitions)],
        batches=sorted(sink.batches),
        start=sink.start.isoformat(),
        end=sink.end.isoformat(),
        created_at=now_iso(),
    )
    storage.write_text(_version_uri(uri), json.dumps(version.as_dict(), indent=2))
    return version


def _version_uri(uri: str) -> str:
    return uri.rsplit(".", 1)[0] + ".json"


def read(settings: Settings, uri: str) -> tuple[pd.DataFrame, DataVersion]:
    """The training set at ``uri`` and its data version, checked against the file's bytes.

    A file without a recorded version (one built elsewhere) gets one computed from its content;
    it must still have every column of a training set.
    """
    if not storage.exists(uri):
        raise TrainingDataError(f"no training set at {uri}")
    data = storage.read_bytes(uri)
    digest = hashlib.sha256(data).hexdigest()
    frame = pq.read_table(io.BytesIO(data)).to_pandas()
    schema = settings.schema_
    recorded = _version_uri(uri)
    if storage.exists(recorded):
        version = DataVersion(**json.loads(storage.read_bytes(recorded)))
        if version.sha256 != digest:
            raise TrainingDataError(
                f"training set {uri} has SHA-256 {digest}, but its recorded version says "
                f"{version.sha256}: the file changed after it was built"
            )
    else:
        features = [c for c in frame.columns if c not in columns(settings, [])]
        version = DataVersion(
            uri=uri,
            sha256=digest,
            rows=len(frame),
            positives=int(frame[schema.label].sum()) if schema.label in frame else 0,
            feature_service=settings.feast.service,
            features=features,
            partitions=sorted({f"{PARTITION_COLUMN}={d}" for d in frame.get(PARTITION_COLUMN, [])}),
        )
    needed = columns(settings, version.features)
    missing = [c for c in needed if c not in frame.columns and c != BATCH_COLUMN]
    if missing:
        raise TrainingDataError(f"training set {uri} lacks columns {missing}")
    frame[schema.timestamp] = pd.to_datetime(frame[schema.timestamp], utc=True)
    return frame, version


def time_range(settings: Settings, params: dict[str, Any]) -> dict[str, str | None]:
    """The events a train run trains on, from its params (``start``/``end`` as given; a retrain
    the monitor triggered on live performance from ``train.performance_window_hours`` before the
    window that triggered it, when set: older labels teach the concept that changed)."""
    start, end = params.get("start"), params.get("end")
    hours = settings.train.performance_window_hours
    window_end = (params.get("drift") or {}).get("window_end")
    if start is None and hours is not None and params.get("reason") == "performance" and window_end:
        start = (utc_timestamp(window_end) - pd.Timedelta(hours=hours)).isoformat()
    return {"start": start, "end": end}


def build_or_skip(settings: Settings, *, start: str | None = None, end: str | None = None) -> DataVersion:
    """``build`` for the train DAG: no usable data is nothing to train on (``Skip``), not a failure."""
    try:
        return build(settings, start=start, end=end)
    except TrainingDataError as exc:
        raise Skip(f"nothing to train on: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.training.dataset", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--start", help="first event time (ISO 8601, inclusive)")
    parser.add_argument("--end", help="last event time (ISO 8601, exclusive)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = load_config()
    storage.configure(settings.storage.s3_endpoint_url)
    try:
        version = build(settings, start=args.start, end=args.end)
    except TrainingDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(version.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
