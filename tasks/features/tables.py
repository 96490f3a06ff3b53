"""Behavioural features from curated transactions, point-in-time correct by construction.

Feast joins and serves features; it does not compute sliding windows over a file source, so this
module computes them into feature tables (one per entity) that Feast reads as offline sources.

A feature row stamped ``t`` holds an entity's state *after* every event at or before ``t``, from
events at or before ``t`` only. Training sets look rows up just before each label's own time (see
``tasks.features.offline``), so a label never sees its own transaction or any later one, exactly as
at serving time, where the transaction being scored is not in the store yet.

Windows are computed from cumulative sums and an as-of join (``count(t-w, t] = cum(t) - cum(<=t-w)``),
which is vectorised and exact for counts. Incremental: each run recomputes only the event dates
that new curated batches can change (their dates plus the longest window after them).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.dataset as ds

from tasks.common import storage
from tasks.common.clock import now_iso
from tasks.ingest.curated import (
    curated_dates,
    parquet_bytes,
    read_curated_dates,
    read_manifests,
    write_atomically,
)

if TYPE_CHECKING:
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
    # the times as they are (a tz-aware `to_numpy()` is an object array: sorts and joins ~10x slower)
    frame = pd.DataFrame({key: events[key].to_numpy(), TIMESTAMP: events[TIMESTAMP].array})
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
    return pd.to_datetime(series, utc=True).astype("datetime64[us, UTC]")


def unix_seconds(series: pd.Series | Sequence[Any]) -> pd.Series | npt.NDArray[np.float64]:
    """Seconds since the epoch at microsecond resolution (NaN for a missing time).

    The one conversion of every path (feature tables, training sets, online lookups), so they
    agree to the last bit; integer microseconds / 1e6, which is also cheap for one row. A plain
    sequence of datetimes (a serving batch) is converted without pandas, same arithmetic, and
    comes back as an array."""
    if not isinstance(series, pd.Series):
        if all(v is None or isinstance(v, datetime) for v in series):
            seconds = [math.nan if v is None or pd.isna(v) else _micros(v) / 1e6 for v in series]
            return np.array(seconds, dtype="float64")
        return np.asarray(unix_seconds(pd.Series(list(series))), dtype="float64")
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


@dataclass(frozen=True)
class FeatureChanges:
    """What a refresh rewrote: the features DAG hands it from ``compute`` to ``materialize``."""

    batches: list[str] = field(default_factory=list)
    """The curated batches this refresh took in."""
    dates: list[str] = field(default_factory=list)
    """The event dates whose feature partitions were rewritten."""
    rows: dict[str, int] = field(default_factory=dict)
    """Rows written, per feature table."""
    start: str | None = None
    """Event time (ISO 8601) of the earliest row that may differ: materialization starts here."""
    end: str | None = None
    """Event time (ISO 8601) of the latest row written."""

    @property
    def rewritten(self) -> bool:
        """Whether any feature row may have changed (else there is nothing to materialize)."""
        return self.start is not None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureChanges:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def table_uri(settings: Settings, table: str) -> str:
    return storage.join(settings.storage.features_uri, table)


def _state_uri(settings: Settings) -> str:
    return storage.join(settings.storage.features_uri, STATE_FILE)


def read_state(settings: Settings) -> dict[str, Any]:
    """The curated batches the tables already hold (``_state.json`` beside the tables)."""
    uri = _state_uri(settings)
    state: dict[str, Any] = json.loads(storage.read_bytes(uri)) if storage.exists(uri) else {"batches": []}
    return state


def _write_state(settings: Settings, batches: list[str]) -> None:
    state = {"batches": batches, "updated_at": now_iso()}
    storage.write_text(_state_uri(settings), json.dumps(state, indent=2))


def _day(text: str) -> date:
    return date.fromisoformat(text)


def refresh(settings: Settings, *, full: bool = False, advance: bool = True) -> FeatureChanges:
    """Bring the feature tables up to date with the curated dataset.

    Takes in the curated batches it has not seen (all of them with ``full``) and rewrites the
    event dates they can change; returns what changed, which is what materialization must cover.
    ``advance=False`` (the features DAG) leaves the state alone: ``advance_state`` records the
    batches once they are materialized, so a failed materialization is redone by the next run.
    """
    manifests = read_manifests(settings)
    done = set() if full else set(read_state(settings)["batches"])
    new = sorted(b for b in manifests if b not in done)
    new_dates = sorted({d for b in new for d in manifests[b].partitions})
    if new_dates:
        changes = _rewrite(settings, new, new_dates)
    else:
        log.info("features: %d new curated batches, no new rows", len(new))
        changes = FeatureChanges(batches=new)
    if advance:
        _write_state(settings, sorted(done | set(new)))
    return changes


def advance_state(settings: Settings, changes: FeatureChanges) -> None:
    """Record the batches of ``changes`` as taken in (after their rows are online)."""
    done = set(read_state(settings)["batches"])
    if not set(changes.batches) <= done:
        _write_state(settings, sorted(done | set(changes.batches)))


def _dates_to_rewrite(curated: list[str], new_dates: list[str]) -> tuple[list[str], list[str]]:
    """The dates whose rows new events can change (theirs, and the longest window after them),
    and the dates of the events those rows are computed from (the longest window before too)."""
    first, last = _day(new_dates[0]), _day(new_dates[-1]) + MAX_WINDOW
    targets = [d for d in curated if first <= _day(d) <= last]
    context_start = first - MAX_WINDOW - timedelta(days=1)
    context = [d for d in curated if context_start <= _day(d) <= _day(targets[-1])]
    return targets, context


def _rewrite(settings: Settings, new: list[str], new_dates: list[str]) -> FeatureChanges:
    targets, context = _dates_to_rewrite(curated_dates(settings), new_dates)
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
    written = {name: _write_dates(settings, name, t, targets) for name, t in compute(events).items()}
    ends = [frame[TIMESTAMP].max() for frame in written.values() if len(frame)]
    return FeatureChanges(
        batches=new,
        dates=targets,
        rows={name: len(frame) for name, frame in written.items()},
        start=_first_changed(events, new, written.values()),
        end=max(ends).isoformat() if ends else None,
    )


def _write_dates(settings: Settings, name: str, table: pd.DataFrame, dates: list[str]) -> pd.DataFrame:
    """Write the table's rows of these dates, one partition per date; returns the rows written."""
    days = table[TIMESTAMP].dt.strftime("%Y-%m-%d")
    keep = days.isin(dates)
    frame, days = table[keep], days[keep]
    for day, part in frame.groupby(days, sort=True):
        _write_partition(settings, name, str(day), part)
    return frame


def _first_changed(events: pd.DataFrame, new: list[str], written: Iterable[pd.DataFrame]) -> str | None:
    """Where materialization starts. A row at t depends only on events at or before t, so no row
    before the earliest new event changed, although whole dates were rewritten."""
    starts = [frame[TIMESTAMP].min() for frame in written if len(frame)]
    fresh = events[events["batch_id"].isin(new)] if "batch_id" in events else events
    if not starts or not len(fresh):
        return None
    first: pd.Timestamp = max(utc_us(fresh[TIMESTAMP]).min(), min(starts))
    return str(first.isoformat())


def _write_partition(settings: Settings, table: str, day: str, frame: pd.DataFrame) -> None:
    uri = storage.join(table_uri(settings, table), f"event_date={day}", "part.parquet")
    write_atomically(uri, parquet_bytes(frame))


def read_table(settings: Settings, table: str) -> pd.DataFrame:
    """A whole feature table (tests, tools, benchmarks)."""
    fs, path = storage.filesystem(table_uri(settings, table))
    if not fs.exists(path):
        return pd.DataFrame()
    frame = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive").to_table().to_pandas()
    return frame.drop(columns=["event_date"], errors="ignore")
