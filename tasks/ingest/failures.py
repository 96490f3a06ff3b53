"""Failed expectations in words a data engineer can act on.

Every message names the column, the rule it broke, how many values broke it and real examples
from the batch (nulls: the rows they are on), e.g. ``column 'amount' has 3 null values (rule:
not null), e.g. at rows [4, 17, 30]``. Great Expectations reports a type failure as a dtype and
nulls without examples, so those are completed from the frame itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from tasks.ingest.normalize import unparseable

if TYPE_CHECKING:
    from config import DataSchema

EXAMPLES = 3
RULE_FUTURE = "future"
RULE_EARLIEST = "earliest"
RULE_FRESH = "freshness"

TYPE_LISTS: dict[str, list[str]] = {
    "string": ["object", "str", "string"],
    "int": ["int64", "int32", "Int64", "Int32"],
    "float": ["float64", "float32", "int64", "int32", "Float64", "Int64"],
    # GE cannot match tz-aware dtypes, so timestamps are validated as naive UTC.
    "timestamp": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"],
}
"""Pandas dtypes accepted for each contract type (after ``normalize.normalize_types``)."""
TYPE_CHECK = "expect_column_values_to_be_in_type_list"
SCHEMA_CHECK = "expect_table_columns_to_match_set"


@dataclass
class CheckFailure:
    """One failed expectation, in words a data engineer can act on."""

    expectation: str
    column: str | None
    message: str
    unexpected_count: int | None = None
    examples: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Failed:
    """One failed GE expectation result, unpacked."""

    kind: str
    column: str | None
    kwargs: dict[str, Any]
    result: dict[str, Any]
    rule: str | None

    @property
    def count(self) -> int | None:
        value = self.result.get("unexpected_count")
        return None if value is None else int(value)

    @property
    def examples(self) -> list[Any]:
        """A few distinct offending values, as the batch holds them."""
        values = [scalar_or_text(v) for v in (self.result.get("partial_unexpected_list") or [])]
        return list(dict.fromkeys(values))[:EXAMPLES]


def scalar_or_text(value: Any) -> Any:
    """An example as JSON and a page can show it: scalars as they are, anything else (a
    timestamp: ISO 8601 in UTC) as text."""
    if isinstance(value, pd.Timestamp):
        return (value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")).isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _bound(value: Any) -> str:
    return scalar_or_text(pd.Timestamp(value)) if hasattr(value, "isoformat") else str(value)


def _schema(f: Failed) -> str:
    details = f.result.get("details", {}).get("mismatched", {})
    parts = []
    if details.get("missing"):
        parts.append(f"missing columns {sorted(details['missing'])}")
    if details.get("unexpected"):
        parts.append(f"unexpected columns {sorted(details['unexpected'])}")
    expected = len(f.kwargs.get("column_set") or [])
    found = ", ".join(parts or [f"observed {f.result.get('observed_value')}"])
    return f"schema mismatch: {found} (rule: exactly the {expected} columns of the contract)"


def _row_count(f: Failed) -> str:
    return (
        f"row count {f.result.get('observed_value')} outside "
        f"[{f.kwargs.get('min_value')}, {f.kwargs.get('max_value')}] (rule: ingest.min_rows/max_rows)"
    )


def _type(f: Failed) -> str:
    expected = next(t for t, names in TYPE_LISTS.items() if names == f.kwargs["type_list"])
    return f"column {f.column!r} has type {f.result.get('observed_value')}, expected {expected}"


def _nulls(f: Failed) -> str:
    return f"column {f.column!r} has {f.count} null values (rule: not null)"


def _unique(f: Failed) -> str:
    return f"column {f.column!r} has {f.count} duplicated values (rule: unique), e.g. {f.examples}"


def _between(f: Failed) -> str:
    low, high = f.kwargs.get("min_value"), f.kwargs.get("max_value")
    if f.rule == RULE_FUTURE:
        rule = f"no later than {_bound(high)}: the ingest time plus ingest.max_future_minutes"
        return f"column {f.column!r} has {f.count} values in the future (rule: {rule}), e.g. {f.examples}"
    if f.rule == RULE_EARLIEST:
        rule = f"no earlier than ingest.earliest_event {_bound(low)}"
        return f"column {f.column!r} has {f.count} values too early (rule: {rule}), e.g. {f.examples}"
    return f"column {f.column!r} has {f.count} values outside [{low}, {high}], e.g. {f.examples}"


def _in_set(f: Failed) -> str:
    allowed = ", ".join(str(v) for v in f.kwargs.get("value_set") or [])
    return (
        f"column {f.column!r} has {f.count} values not in the allowed set (rule: one of {allowed}), "
        f"e.g. {f.examples}"
    )


def _fresh(f: Failed) -> str:
    oldest = _bound(f.kwargs.get("min_value"))
    newest = scalar_or_text(pd.Timestamp(f.result.get("observed_value")))
    return (
        f"stale batch: newest {f.column!r} is {newest}, older than allowed "
        f"(rule: ingest.max_age_hours, not before {oldest})"
    )


MESSAGES: dict[str, Callable[[Failed], str]] = {
    SCHEMA_CHECK: _schema,
    "expect_table_row_count_to_be_between": _row_count,
    TYPE_CHECK: _type,
    "expect_column_values_to_not_be_null": _nulls,
    "expect_column_values_to_be_unique": _unique,
    "expect_column_values_to_be_between": _between,
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_max_to_be_between": _fresh,
}


def describe(result: Any, missing: set[str]) -> CheckFailure | None:
    """One failed GE expectation result as a ``CheckFailure`` (None: a column already reported
    missing)."""
    cfg = result.expectation_config
    failed = Failed(
        cfg.type,
        cfg.kwargs.get("column"),
        dict(cfg.kwargs),
        result.result or {},
        (cfg.meta or {}).get("rule"),
    )
    if failed.column in missing:
        return None
    say = MESSAGES.get(failed.kind)
    message = say(failed) if say else f"{failed.kind} failed on {failed.column!r}"
    exception = (result.exception_info or {}).get("exception_message")
    if exception and "column" not in message:
        message += f" ({exception})"
    return CheckFailure(failed.kind, failed.column, message, failed.count, failed.examples)


def complete(failure: CheckFailure, df: pd.DataFrame, schema: DataSchema) -> None:
    """Fill in what GE leaves out: the values that break a type, the rows that hold nulls."""
    column = failure.column
    if column is None or column not in df.columns:
        return
    if failure.expectation == TYPE_CHECK:
        expected = schema.column(column).type
        bad = unparseable(df[column], expected)
        failure.examples = [scalar_or_text(v) for v in bad.head(EXAMPLES)]
        failure.unexpected_count = len(bad)
        failure.message = (
            f"column {column!r} has type {df[column].dtype}, expected {expected}: "
            f"{len(bad)} values do not parse, e.g. {failure.examples}"
        )
    elif failure.expectation == "expect_column_values_to_not_be_null":
        rows = [int(i) + 1 for i in df.index[df[column].isna()][:EXAMPLES]]
        failure.examples = rows
        failure.message += f", e.g. at rows {rows}"
