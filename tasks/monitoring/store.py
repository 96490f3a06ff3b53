"""The monitor's memory: one metrics row per window and one decision row per window, over time.

Parquet under ``storage.data_uri/<monitor.store_dir>/`` (``file://`` or ``s3://``, no database to run)::

    windows/date=2026-01-02/20260102T1000Z-20260102T1200Z.parquet      metrics of one window
    decisions/date=2026-01-02/20260102T1000Z-20260102T1200Z.parquet    the decision on it

Partitioned by the date of the window's end, so ``history(settings, since=...)`` reads only the
days it asks for. One file per window, named by the window's id and written whole (temp file then
rename locally, one PUT on S3): re-running a window replaces its row instead of adding a second,
and no reader sees half a row.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.common import storage
from tasks.common.clock import utc_timestamp

if TYPE_CHECKING:
    from config import Settings

WINDOWS = "windows"
DECISIONS = "decisions"
_DATE = re.compile(r"date=(\d{4}-\d{2}-\d{2})/")


def root_uri(settings: Settings) -> str:
    return storage.join(settings.storage.data_uri, settings.monitor.store_dir)


def _uri(settings: Settings, table: str, end: Any, window_id: str) -> str:
    return storage.join(
        root_uri(settings), table, f"date={utc_timestamp(end):%Y-%m-%d}", f"{window_id}.parquet"
    )


def _write(uri: str, row: dict[str, Any]) -> str:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(pd.DataFrame([row]), preserve_index=False), sink)
    return storage.write_bytes(uri, sink.getvalue())


def record_window(settings: Settings, row: dict[str, Any]) -> str:
    """Store one window's metrics row (``WindowResult.row()``); returns its URI."""
    storage.configure(settings.storage.s3_endpoint_url)
    return _write(_uri(settings, WINDOWS, row["end"], row["window_id"]), row)


def record_decision(settings: Settings, row: dict[str, Any]) -> str:
    """Store one decision row (``Decision.row()``); returns its URI."""
    storage.configure(settings.storage.s3_endpoint_url)
    return _write(_uri(settings, DECISIONS, row["end"], row["window_id"]), row)


def _read(settings: Settings, table: str, since: Any, until: Any, time_column: str) -> pd.DataFrame:
    storage.configure(settings.storage.s3_endpoint_url)
    fs, base = storage.filesystem(storage.join(root_uri(settings), table))
    lo = utc_timestamp(since) if since is not None else None
    hi = utc_timestamp(until) if until is not None else None
    frames = []
    if fs.exists(base):
        for path in sorted(fs.glob(f"{base.rstrip('/')}/date=*/*.parquet")):
            m = _DATE.search(path)
            day = m.group(1) if m else None
            if day is None or (lo is not None and day < f"{lo:%Y-%m-%d}"):
                continue
            if hi is not None and day > f"{hi:%Y-%m-%d}":
                continue
            frames.append(pq.read_table(io.BytesIO(fs.cat_file(path))).to_pandas())
    if not frames:
        empty = {"window_id": pd.Series(dtype="object"), time_column: pd.Series(dtype="datetime64[ns, UTC]")}
        return pd.DataFrame(empty)
    frame = pd.concat(frames, ignore_index=True)
    if lo is not None:
        frame = frame[frame[time_column] >= lo]
    if hi is not None:
        frame = frame[frame[time_column] < hi]
    return frame.sort_values([time_column, "window_id"], kind="stable").reset_index(drop=True)


def history(settings: Settings, since: Any = None, until: Any = None) -> pd.DataFrame:
    """Metrics rows of the windows that ended in ``[since, until)`` (default: all), oldest first."""
    return _read(settings, WINDOWS, since, until, "end")


def decisions(settings: Settings, since: Any = None, until: Any = None) -> pd.DataFrame:
    """Decision rows of the windows that ended in ``[since, until)`` (default: all), oldest first."""
    return _read(settings, DECISIONS, since, until, "end")


def decision_for(settings: Settings, window_id: str, end: Any) -> dict[str, Any] | None:
    """The decision already recorded for a window, if any."""
    storage.configure(settings.storage.s3_endpoint_url)
    uri = _uri(settings, DECISIONS, end, window_id)
    if not storage.exists(uri):
        return None
    row: dict[str, Any] = pq.read_table(io.BytesIO(storage.read_bytes(uri))).to_pandas().iloc[0].to_dict()
    return row


def _dates(settings: Settings, table: str) -> list[str]:
    """The date partitions of a table, oldest first."""
    fs, base = storage.filesystem(storage.join(root_uri(settings), table))
    if not fs.exists(base):
        return []
    return sorted(m.group(1) for p in fs.ls(base, detail=False) if (m := _DATE.search(p.rstrip("/") + "/")))


def last_window_end(settings: Settings) -> pd.Timestamp | None:
    """Where the next window starts: the latest end of a recorded window (``None``: none yet).
    Reads only the latest date partition."""
    storage.configure(settings.storage.s3_endpoint_url)
    for day in reversed(_dates(settings, WINDOWS)):
        frame = history(settings, since=day)
        if not frame.empty:
            return utc_timestamp(frame["end"].max())
    return None


def last_retrain_decision(settings: Settings, since: Any = None) -> dict[str, Any] | None:
    """The monitor's latest decision to retrain, among decisions on windows that ended after
    ``since`` (default: all of them); ``None``: never."""
    frame = decisions(settings, since=since)
    if frame.empty or "retrain" not in frame:
        return None
    done = frame[frame["retrain"].astype(bool)]
    if done.empty:
        return None
    row: dict[str, Any] = done.sort_values("decided_at", kind="stable").iloc[-1].to_dict()
    return row


def last_retrain(settings: Settings, since: Any = None) -> pd.Timestamp | None:
    """When the monitor last decided to retrain (see ``last_retrain_decision``)."""
    row = last_retrain_decision(settings, since)
    return None if row is None else utc_timestamp(row["decided_at"])
