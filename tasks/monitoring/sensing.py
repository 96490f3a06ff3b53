"""What the monitor's sensor asks: where the next window starts and ends, and how many live
predictions it holds so far.

The next window starts where the last recorded one ended (``store.last_window_end``), or
``monitor.first_window_hours`` before its end when none was recorded yet. The sensor's window
ends ``monitor.log_lag_seconds`` before its check, so predictions still buffered by serving's
inference-log writers land before their window is read. The count reads only the time, route
and traffic columns of the inference log's hour partitions in range; rows marked synthetic
(``traffic``, benchmarks and load tests) are not live traffic and are not counted.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.common import storage
from tasks.common.clock import utc, utc_timestamp
from tasks.monitoring import store
from tasks.monitoring.results import ROUTE, Window
from tasks.serving import inference_log
from tasks.serving.inference_log import SYNTHETIC, TRAFFIC

if TYPE_CHECKING:
    from config import Settings


@dataclass(frozen=True)
class SensedWindow:
    """A window the sensor let through (or is waiting on), and the live predictions in it."""

    count: int
    start: str
    """ISO 8601, UTC."""
    end: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensedWindow:
        return cls(count=int(data["count"]), start=str(data["start"]), end=str(data["end"]))

    @property
    def window(self) -> Window:
        return Window.of(self.start, self.end)


def window_end(settings: Settings, end: Any = None, now: datetime | None = None) -> datetime:
    """``end`` if given, else ``monitor.log_lag_seconds`` before ``now`` (default: the clock)."""
    if end:
        return utc(end)
    return (now or datetime.now(UTC)) - timedelta(seconds=settings.monitor.log_lag_seconds)


def window_start(settings: Settings, start: Any = None, end: datetime | None = None) -> datetime:
    """``start`` if given, else the end of the last monitored window, else
    ``monitor.first_window_hours`` before ``end`` (default: ``window_end``)."""
    if start:
        return utc(start)
    last = store.last_window_end(settings)
    if last is not None:
        return utc(last.to_pydatetime())
    return (end or window_end(settings)) - timedelta(hours=settings.monitor.first_window_hours)


def next_window(settings: Settings, end: Any = None) -> Window:
    """The window from the end of the last recorded one (or ``monitor.first_window_hours`` back)
    to ``end`` (default: now)."""
    hi = utc(end) if end is not None else datetime.now(UTC)
    return Window.of(window_start(settings, None, hi), hi)


def check(settings: Settings, start: Any = None, end: Any = None) -> SensedWindow:
    """Count the live predictions in the window a check now would monitor (blocking)."""
    hi = window_end(settings, end)
    lo = window_start(settings, start, hi)
    count = count_predictions(settings, lo, hi) if lo < hi else 0
    return SensedWindow(count=count, start=lo.isoformat(), end=hi.isoformat())


def _hour_dirs(settings: Settings, lo: datetime, hi: datetime) -> list[str]:
    """The inference log's hour partitions that overlap ``[lo, hi)``."""
    fs, base = storage.filesystem(inference_log.predictions_uri(settings))
    if not fs.exists(base) or lo >= hi:
        return []
    out = []
    for day in sorted(fs.ls(base, detail=False)):
        date = day.rstrip("/").rsplit("date=", 1)[-1]
        if not (f"{lo:%Y-%m-%d}" <= date <= f"{hi:%Y-%m-%d}"):
            continue
        for hour_dir in fs.ls(day, detail=False):
            hour = utc(f"{date}T{hour_dir.rstrip('/').rsplit('hour=', 1)[-1]}:00:00")
            if lo < hour + timedelta(hours=1) and hour < hi:
                out.append(hour_dir.rstrip("/"))
    return out


def _live(table: pa.Table, lo: datetime, hi: datetime, routes: pa.Array) -> int:
    """Rows of ``table`` in ``[lo, hi)`` on a live route and not marked synthetic."""
    ts = table.column(inference_log.TIME)
    keep = pc.and_(
        pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)),
        pc.is_in(table.column(ROUTE), value_set=routes),
    )
    if TRAFFIC in table.column_names:  # missing (older files) or null: live
        synthetic = pc.fill_null(pc.equal(table.column(TRAFFIC), SYNTHETIC), False)
        keep = pc.and_(keep, pc.invert(synthetic))
    return int(pc.sum(pc.cast(keep, "int64")).as_py() or 0)


def count_predictions(settings: Settings, start: Any, end: Any = None) -> int:
    """Live predictions (``monitor.routes``, not marked synthetic) logged in ``[start, end)``
    (``end`` default: now): what the monitor's sensor compares with ``monitor.min_new_predictions``."""
    storage.configure(settings.storage.s3_endpoint_url)
    lo = utc_timestamp(start).to_pydatetime()
    hi = utc_timestamp(end if end is not None else datetime.now(UTC)).to_pydatetime()
    fs, _ = storage.filesystem(inference_log.predictions_uri(settings))
    routes = pa.array(settings.monitor.routes, type=pa.string())
    total = 0
    for hour_dir in _hour_dirs(settings, lo, hi):
        for path in fs.glob(f"{hour_dir}/*.parquet"):
            source = pq.ParquetFile(io.BytesIO(fs.cat_file(path)))
            columns = [
                inference_log.TIME,
                ROUTE,
                *([TRAFFIC] if TRAFFIC in source.schema_arrow.names else []),
            ]
            total += _live(source.read(columns=columns), lo, hi, routes)
    return total
