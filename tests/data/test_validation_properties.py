"""Property-based tests (Hypothesis) of the validation suite on generated frames.

Frames are drawn from the contract in ``config`` (any column list the schema holds: keys, ids,
amounts, allowed categories, timestamps in any UTC offset between the earliest allowed time and
the ingest time): every such frame passes. Then one fault is injected into a valid frame (a null,
a value out of range or out of the allowed set, a duplicated key, a time in the future or before
the earliest date, a value that does not parse, an int64 overflow, a missing or an extra column):
validation fails with exactly one failure, which names the column and shows the bad value.

Each example runs the whole Great Expectations suite (about a second), so the example counts are
small and the draws derandomised: the same examples in every CI run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from config import read_config
from tasks.ingest.normalize import normalize_types
from tasks.ingest.validation import validate_frame

pytestmark = pytest.mark.slow

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CFG = read_config("local", {"AIRLOOP_HOME": "/nonexistent-airloop-home"})
SCHEMA = CFG.schema_
EARLIEST = CFG.ingest.earliest_event
LATEST = NOW + timedelta(minutes=CFG.ingest.max_future_minutes)
PROFILE = hsettings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as drawn, in seconds
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

offsets = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.datetimes(
    min_value=EARLIEST.replace(tzinfo=None), max_value=NOW.replace(tzinfo=None), timezones=st.just(UTC)
)


def _values(column, n: int) -> st.SearchStrategy:
    if column.name == SCHEMA.key:
        ids = st.text(alphabet="abcdefxyz0123456789-", min_size=1, max_size=12)
        return st.lists(ids, min_size=n, max_size=n, unique=True)
    if column.allowed:
        element = st.sampled_from(column.allowed)
    elif column.type == "int":
        element = st.integers(
            int(column.min if column.min is not None else -(2**63)), int(column.max or 2**63 - 1)
        )
    elif column.type == "float":
        element = st.floats(column.min, column.max, allow_nan=False, allow_infinity=False)
    elif column.type == "timestamp":
        element = st.tuples(instants, offsets).map(lambda t: t[0].astimezone(t[1]))
    else:
        element = st.text(min_size=1, max_size=10)
    return st.lists(element, min_size=n, max_size=n)


@st.composite
def valid_frames(draw, min_rows: int = 1) -> pd.DataFrame:
    n = draw(st.integers(min_rows, 12))
    data = {c.name: draw(_values(c, n)) for c in SCHEMA.columns}
    frame = pd.DataFrame(data)
    text = frame[SCHEMA.timestamp].map(lambda t: t.isoformat())  # as a CSV would hold them
    frame[SCHEMA.timestamp] = pd.to_datetime(text, utc=True, format="ISO8601")
    return frame


def _validate(frame: pd.DataFrame):
    return validate_frame(normalize_types(frame, SCHEMA), CFG, now=NOW)


@PROFILE
@given(valid_frames())
def test_every_frame_that_honours_the_contract_passes(frame):
    report = _validate(frame)
    assert report.success, report.reason


# --- one fault at a time -------------------------------------------------------------------

NON_NULL = [c.name for c in SCHEMA.columns if not c.nullable]
RANGED = [c for c in SCHEMA.columns if c.min is not None or c.max is not None]
CHOSEN = [c.name for c in SCHEMA.columns if c.allowed]
NUMERIC = [c.name for c in SCHEMA.columns if c.type in ("int", "float")]
INTS = [c.name for c in SCHEMA.columns if c.type == "int"]


def _as_text(frame: pd.DataFrame, column: str) -> None:
    frame[column] = frame[column].map(str).astype(object)


KINDS = [
    "null",
    "range",
    "allowed",
    "duplicate",
    "future",
    "early",
    "unparseable",
    "overflow",
    "missing",
    "extra",
]


@st.composite
def one_fault(draw, frame: pd.DataFrame, kind: str) -> tuple[str, object]:
    """Inject one fault of ``kind`` into ``frame`` (in place); returns (column, the bad value or None)."""
    row = draw(st.integers(0, len(frame) - 1))
    ts = SCHEMA.timestamp
    if kind == "null":
        column, value = draw(st.sampled_from(NON_NULL)), None
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = None
        return column, None
    if kind == "range":
        col = draw(st.sampled_from(RANGED))
        above = col.max is not None and (col.min is None or draw(st.booleans()))
        value = (col.max + draw(st.integers(1, 10**6))) if above else (col.min - draw(st.integers(1, 10**6)))
        frame[col.name] = frame[col.name].astype(object)
        frame.loc[row, col.name] = int(value) if SCHEMA.column(col.name).type == "int" else float(value)
        return col.name, frame.loc[row, col.name]
    if kind == "allowed":
        column = draw(st.sampled_from(CHOSEN))
        value = draw(st.text(alphabet="QZ_!<>&", min_size=1, max_size=8))
        frame.loc[row, column] = value
        return column, value
    if kind in ("future", "early"):
        gap = timedelta(minutes=draw(st.integers(1, 5 * 365 * 24 * 60)))
        value = (LATEST + gap) if kind == "future" else (EARLIEST - gap)
        frame.loc[row, ts] = pd.Timestamp(value)
        return ts, pd.Timestamp(value).isoformat()
    if kind in ("unparseable", "overflow"):
        column = draw(st.sampled_from(NUMERIC if kind == "unparseable" else INTS))
        value = (
            draw(st.sampled_from(["abc", "12,5x", "n/a", "1e", "--"]))
            if kind == "unparseable"
            else str(2**63 + draw(st.integers(0, 10**12)))
        )
        _as_text(frame, column)
        frame.loc[row, column] = value
        return column, value
    if kind == "missing":
        column = draw(st.sampled_from(SCHEMA.names))
        frame.drop(columns=[column], inplace=True)
        return column, None
    if kind == "extra":
        column = draw(st.sampled_from(["promo_code", "category", "Amount"]))
        frame[column] = "x"
        return column, None
    other = (row + 1) % len(frame)
    frame.loc[row, SCHEMA.key] = frame.loc[other, SCHEMA.key]
    return SCHEMA.key, frame.loc[other, SCHEMA.key]


@pytest.mark.parametrize("kind", KINDS)
@hsettings(PROFILE, max_examples=2)
@given(data=st.data())
def test_any_single_fault_is_caught_and_named(kind, data):
    frame = data.draw(valid_frames(min_rows=2 if kind == "duplicate" else 1))
    column, value = data.draw(one_fault(frame, kind))
    report = _validate(frame)
    assert not report.success, f"{kind} in {column} passed"
    assert len(report.failures) == 1, f"{kind} in {column}: {report.reason}"
    (failure,) = report.failures
    assert repr(column) in failure.message or f"'{column}'" in failure.message, failure.message
    if kind not in ("missing", "extra"):
        assert failure.column == column and (failure.unexpected_count or 0) >= 1, failure
    if kind in ("range", "allowed", "future", "early", "unparseable", "overflow", "duplicate"):
        assert value in failure.examples, f"{kind}: {value!r} not among {failure.examples}"
    if kind == "null":
        assert failure.examples and all(isinstance(r, int) for r in failure.examples)
