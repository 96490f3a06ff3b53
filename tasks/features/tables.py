"""Behavioural features from curated transactions, point-in-time correct by construction.

Feast joins and serves features; it does not compute sliding windows over a file source, so this
module computes them into feature tables (one per entity) that Feast reads as offline sources.

A feature row stamped ``t`` holds an entity's state *after* every event at or before ``t``, from
events at or before ``t`` only. Training sets look rows up just before each label's own time (see
``tasks.features.store``), so a label never sees its own transaction or any later one, exactly as
at serving time, where the transaction being scored is not in the store yet.

Windows are computed from cumulative sums and an as-of join (``count(t-w, t] = cum(t) - cum(<=t-w)``),
which is vectorised and exact for counts. Incremental: each run recomputes only the event dates
that new curated batches can change (their dates plus the longest window after them).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.common import storage

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from config import Settings

log = logging.getLogger(__name__)

TIMESTAMP = "event_timestamp"
STATE_FILE = "_state.json"


@dataclass(frozen=True)
class FeatureTable:
    """One feature view's table: its entity, its features (name -> Feast dtype) and windows."""

    name: str
    entity: str
    join_key: str
    features: dict[str, str]
    description: str


CUSTOMER_WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
MERCHANT_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
MAX_WINDOW = max([*CUSTOMER_WINDOWS.values(), *MERCHANT_WINDOWS.values()])

CUSTOMER_ACTIVITY = FeatureTable(
    name="customer_activity",
    entity="customer",
    join_key="customer_id",
    features={
        **{f"customer_txn_count_{w}": "Int64" for w in CUSTOMER_WINDOWS},
        **{f"customer_amount_sum_{w}": "Float64" for w in CUSTOMER_WINDOWS},
        "customer_amount_mean_7d": "Float64",
        "customer_last_txn_unix_s": "Float64",
    },
    description="Spending velocity of a card holder, as of their latest transaction.",
)
MERCHANT_RISK = FeatureTable(
    name="merchant_risk",
    entity="merchant",
    join_key="merchant_id",
    features={
        **{f"merchant_txn_count_{w}": "Int64" for w in MERCHANT_WINDOWS},
        "merchant_fraud_count_7d": "Int64",
        "merchant_fraud_rate_7d": "Float64",
    },
    description="Traffic and confirmed-fraud rate of a merchant, as of its latest transaction.",
)
TABLES = (CUSTOMER_ACTIVITY, MERCHANT_RISK)


def _window_sums(
    events: pd.DataFrame, key: str, values: dict[str, pd.Series], windows: dict[str, timedelta]
) -> pd.DataFrame:
    """Per (key, distinct timestamp): sums of ``values`` over each trailing window ``(t-w, t]``."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({key: events[key].to_numpy(), TIMESTAMP: events[TIMESTAMP].to_numpy()})
    for name, series in values.items():
        frame[name] = series.to_numpy()
    frame = frame.sort_values([key, TIMESTAMP], kind="stable")
    cums = frame.groupby(key, sort=False)[list(values)].cumsum()
    state = pd.concat([frame[[key, TIMESTAMP]], cums], axis=1)
    # The state after *all* events at t: the last cumulative row of each (key, t).
    state = state.drop_duplicates([key, TIMESTAMP], keep="last").reset_index(drop=True)
    by_time = state.sort_values(TIMESTAMP, kind="stable")
    out = state[[key, TIMESTAMP]].copy()
    for label, width in windows.items():
        probe = pd.DataFrame({key: state[key], "_at": state[TIMESTAMP] - width, "_row": state.index})
        probe = probe.sort_values("_at", kind="stable")
        before = pd.merge_asof(
            probe,
            by_time.rename(columns={TIMESTAMP: "_at"}),
            on="_at",
            by=key,
            direction="backward",
            allow_exact_matches=True,
        ).set_index("_row")
        before = before.reindex(state.index)
        for name in values:
            out[f"{name}_{label}"] = state[name].to_numpy() - np.nan_to_num(before[name].to_numpy())
    return out


def customer_activity(events: pd.DataFrame) -> pd.DataFrame:
    amount = events["amount"].astype("float64")
    sums = _window_sums(events, "customer_id", {"n": amount * 0 + 1, "amount": amount}, CUSTOMER_WINDOWS)
    out = sums[["customer_id", TIMESTAMP]].copy()
    for w in CUSTOMER_WINDOWS:
        out[f"customer_txn_count_{w}"] = sums[f"n_{w}"].round().astype("int64")
        out[f"customer_amount_sum_{w}"] = sums[f"amount_{w}"].round(6)
    out["customer_amount_mean_7d"] = (sums["amount_7d"] / sums["n_7d"]).round(6)
    out["customer_last_txn_unix_s"] = unix_seconds(out[TIMESTAMP])
    return out


def merchant_risk(events: pd.DataFrame) -> pd.DataFrame:
    fraud = events["is_fraud"].astype("float64")
    sums = _window_sums(events, "merchant_id", {"n": fraud * 0 + 1, "fraud": fraud}, MERCHANT_WINDOWS)
    out = sums[["merchant_id", TIMESTAMP]].copy()
    for w in MERCHANT_WINDOWS:
        out[f"merchant_txn_count_{w}"] = sums[f"n_{w}"].round().astype("int64")
    out["merchant_fraud_count_7d"] = sums["fraud_7d"].round().astype("int64")
    out["merchant_fraud_rate_7d"] = (sums["fraud_7d"] / sums["n_7d"]).round(6)
    return out


COMPUTE = {CUSTOMER_ACTIVITY.name: customer_activity, MERCHANT_RISK.name: merchant_risk}


def compute(events: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every feature table for a frame of transactions (timestamps as UTC, microseconds)."""
    events = events.assign(**{TIMESTAMP: utc_us(events[TIMESTAMP])})
    tables = {name: fn(events) for name, fn in COMPUTE.items()}
    return {name: t.assign(**{TIMESTAMP: utc_us(t[TIMESTAMP])}) for name, t in tables.items()}


def utc_us(series: pd.Series) -> pd.Series:
    """Timestamps as tz-aware UTC with microsecond precision, the one resolution Feast keeps."""
    import pandas as pd

    return pd.to_datetime(series, utc=True).astype("datetime64[us, UTC]")


def unix_seconds(series: pd.Series | Sequence[Any]) -> pd.Series | np.ndarray:
    """Seconds since the epoch at microsecond resolution (NaN for a missing time).

    The one conversion of every path (feature tables, training sets, online lookups), so they
    agree to the last bit; integer microseconds / 1e6, which is also cheap for one row. A plain
    sequence of datetimes (a serving batch) is converted without pandas, same arithmetic, and
    comes back as an array."""
    import numpy as np
    import pandas as pd

    if not isinstance(series, pd.Series):
        if all(v is None or isinstance(v, datetime) for v in series):
            seconds = [math.nan if v is None or pd.isna(v) else _micros(v) / 1e6 for v in series]
            return np.array(seconds, dtype="float64")
        return unix_seconds(pd.Series(list(series))).to_numpy()
    if not isinstance(series.dtype, pd.DatetimeTZDtype):
        series = pd.to_datetime(series, utc=True)
    micros = series.to_numpy(dtype="datetime64[us]")
    seconds = micros.astype("int64") / 1e6
    seconds[np.isnat(micros)] = np.nan
    return pd.Series(seconds, index=series.index, name=series.name)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(value: datetime) -> int:
    """Integer microseconds since the epoch; a naive time is UTC (as ``pd.to_datetime(utc=True)``)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MICROSECOND


# --- incremental refresh of the tables ------------------------------------------------------


def table_uri(settings: Settings, table: str) -> str:
    return storage.join(settings.storage.features_uri, table)


def _state_uri(settings: Settings) -> str:
    return storage.join(settings.storage.features_uri, STATE_FILE)


def read_state(settings: Settings) -> dict[str, Any]:
    uri = _state_uri(settings)
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else {"batches": []}


def _curated_manifests(settings: Settings) -> dict[str, dict[str, Any]]:
    from tasks.ingest.batches import MANIFESTS

    uris = storage.list_files(storage.join(settings.storage.curated_uri, MANIFESTS), ["*.json"])
    manifests = [json.loads(storage.read_bytes(u)) for u in uris]
    return {m["batch_id"]: m for m in manifests}


def _curated_dates(settings: Settings) -> list[str]:
    fs, path = storage.filesystem(settings.storage.curated_uri)
    if not fs.exists(path):
        return []
    dirs = fs.glob(f"{path.rstrip('/')}/event_date=*")
    return sorted(d.rsplit("event_date=", 1)[1] for d in dirs)


def read_curated_dates(settings: Settings, dates: list[str]) -> pd.DataFrame:
    """Curated transactions of the given event dates (only their partitions are read)."""
    import pandas as pd
    import pyarrow.parquet as pq

    frames = []
    for day in dates:
        for uri in storage.list_files(
            storage.join(settings.storage.curated_uri, f"event_date={day}"), ["*.parquet"]
        ):
            fs, path = storage.filesystem(uri)
            frames.append(pq.read_table(path, filesystem=fs).to_pandas())
    if not frames:
        return pd.DataFrame(columns=settings.schema_.names)
    return pd.concat(frames, ignore_index=True)


def _day(text: str) -> date:
    return date.fromisoformat(text)


def refresh(settings: Settings, *, full: bool = False) -> dict[str, Any]:
    """Bring the feature tables up to date with the curated dataset.

    Returns what changed: the batches taken in, the dates rewritten, the rows written and the
    event-time range ``[start, end]`` of the rewritten rows (what materialization must cover).
    """
    manifests = _curated_manifests(settings)
    state = read_state(settings)
    done = set() if full else set(state["batches"])
    new = sorted(b for b in manifests if b not in done)
    summary: dict[str, Any] = {"batches": new, "dates": [], "rows": {}, "start": None, "end": None}
    new_dates = sorted({d for b in new for d in manifests[b]["partitions"]})
    if not new_dates:
        _write_state(settings, sorted(done | set(new)))
        log.info("features: %d new curated batches, no new rows", len(new))
        return summary

    all_dates = _curated_dates(settings)
    first, last = _day(new_dates[0]), _day(new_dates[-1]) + MAX_WINDOW
    targets = [d for d in all_dates if first <= _day(d) <= last]
    context_start = first - MAX_WINDOW - timedelta(days=1)
    context = [d for d in all_dates if context_start <= _day(d) <= _day(targets[-1])]
    events = read_curated_dates(settings, context)
    log.info(
        "features: %d new batches -> rewriting %d dates (%s..%s) from %d events of %d dates",
        len(new),
        len(targets),
        targets[0],
        targets[-1],
        len(events),
        len(context),
    )
    tables = compute(events)
    starts, ends = [], []
    for name, table in tables.items():
        days = table[TIMESTAMP].dt.strftime("%Y-%m-%d")
        keep = days.isin(targets)
        frame, days = table[keep], days[keep]
        for day, part in frame.groupby(days, sort=True):
            _write_partition(settings, name, str(day), part)
        summary["rows"][name] = len(frame)
        if len(frame):
            starts.append(frame[TIMESTAMP].min())
            ends.append(frame[TIMESTAMP].max())
    summary["dates"] = targets
    # A row at t depends only on events at or before t, so nothing before the earliest new
    # event changed, although whole dates were rewritten: materialization starts there.
    fresh = events[events["batch_id"].isin(new)] if "batch_id" in events else events
    first_new = utc_us(fresh[TIMESTAMP]).min() if len(fresh) else None
    summary["start"] = max(first_new, min(starts)).isoformat() if starts and first_new is not None else None
    summary["end"] = max(ends).isoformat() if ends else None
    _write_state(settings, sorted(done | set(new)))
    return summary


def _write_partition(settings: Settings, table: str, day: str, frame: pd.DataFrame) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False), buffer)
    storage.write_bytes(
        storage.join(table_uri(settings, table), f"event_date={day}", "part.parquet"), buffer.getvalue()
    )


def _write_state(settings: Settings, batches: list[str]) -> None:
    state = {"batches": batches, "updated_at": datetime.now(UTC).isoformat()}
    storage.write_text(_state_uri(settings), json.dumps(state, indent=2))


def read_table(settings: Settings, table: str) -> pd.DataFrame:
    """A whole feature table (tests, tools, benchmarks)."""
    import pandas as pd
    import pyarrow.dataset as ds

    fs, path = storage.filesystem(table_uri(settings, table))
    if not fs.exists(path):
        return pd.DataFrame()
    frame = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive").to_table().to_pandas()
    return frame.drop(columns=["event_date"], errors="ignore")
