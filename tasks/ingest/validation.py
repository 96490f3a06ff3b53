"""Validate a landed batch against the transaction contract with Great Expectations.

The suite is built from ``config`` (schema, types, nulls, ranges, allowed values, uniqueness,
row count, time sanity, optional freshness), so changing the contract never means editing code.
Time sanity: no event more than ``ingest.max_future_minutes`` after the ingest time, none before
``ingest.earliest_event`` (one row stamped years ahead would move Feast's materialization
watermark and stall the loop). A file that cannot be read, or breaks a limit before it is
decoded (``tasks.ingest.reading``), fails as one file-level check. Failures come back in words
(``tasks.ingest.failures``) plus GE's own result JSON for the quarantine folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from tasks.ingest import reading
from tasks.ingest.failures import (
    RULE_EARLIEST,
    RULE_FRESH,
    RULE_FUTURE,
    SCHEMA_CHECK,
    TYPE_CHECK,
    TYPE_LISTS,
    CheckFailure,
    complete,
    describe,
)
from tasks.ingest.normalize import normalize_types
from tasks.ingest.reading import BatchUnreadable, Landed

if TYPE_CHECKING:
    from config import DataSchema, Settings

log = logging.getLogger(__name__)

__all__ = ["BatchUnreadable", "CheckFailure", "ValidationReport", "read_batch", "validate_batch"]


@dataclass
class ValidationReport:
    batch_uri: str
    success: bool
    rows: int
    failures: list[CheckFailure]
    result: dict[str, Any] | None = None
    """GE's validation result as JSON (None when the file could not be read at all)."""
    checked_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    """The ingest time the time rules were measured against."""

    @property
    def reason(self) -> str:
        """One line naming every failed check: what the task log and the quarantine note say."""
        if self.success:
            return "passed"
        return "; ".join(f.message for f in self.failures)

    def summary(self) -> dict[str, Any]:
        return {
            "batch_uri": self.batch_uri,
            "success": self.success,
            "rows": self.rows,
            "reason": self.reason,
            "checked_at": self.checked_at,
            "failures": [asdict(f) for f in self.failures],
        }


def read_batch(uri: str, settings: Settings) -> pd.DataFrame:
    """Read a landed batch within the limits and normalise its types where that is lossless."""
    landed = reading.fetch(uri, settings.ingest)
    return normalize_types(reading.decode(landed, settings.ingest), settings.schema_)


def _naive_utc(moment: datetime) -> datetime:
    """Bounds as naive UTC, like the timestamps GE sees (see ``_for_ge``)."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def _time_expectations(settings: Settings, now: datetime, gxe: Any) -> list[Any]:
    ingest, column = settings.ingest, settings.schema_.timestamp
    latest = _naive_utc(now + timedelta(minutes=ingest.max_future_minutes))
    exps = [
        gxe.ExpectColumnValuesToBeBetween(column=column, max_value=latest, meta={"rule": RULE_FUTURE}),
        gxe.ExpectColumnValuesToBeBetween(
            column=column, min_value=_naive_utc(ingest.earliest_event), meta={"rule": RULE_EARLIEST}
        ),
    ]
    if ingest.max_age_hours is not None:
        oldest_ok = _naive_utc(now - timedelta(hours=ingest.max_age_hours))
        exps.append(
            gxe.ExpectColumnMaxToBeBetween(column=column, min_value=oldest_ok, meta={"rule": RULE_FRESH})
        )
    return exps


def expectations(settings: Settings, now: datetime) -> list[Any]:
    """The suite's expectations, from the contract in ``config`` (``now``: the ingest time)."""
    _quiet_great_expectations()
    import great_expectations.expectations as gxe  # noqa: PLC0415 - see _quiet_great_expectations

    schema, ingest = settings.schema_, settings.ingest
    exps: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=schema.names, exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=ingest.min_rows, max_value=ingest.max_rows),
        gxe.ExpectColumnValuesToBeUnique(column=schema.key),
    ]
    for col in schema.columns:
        exps.append(gxe.ExpectColumnValuesToBeInTypeList(column=col.name, type_list=TYPE_LISTS[col.type]))
        if not col.nullable:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col.name))
        if col.min is not None or col.max is not None:
            exps.append(
                gxe.ExpectColumnValuesToBeBetween(column=col.name, min_value=col.min, max_value=col.max)
            )
        if col.allowed:
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=col.name, value_set=col.allowed))
    return exps + _time_expectations(settings, now, gxe)


def _quiet_great_expectations() -> None:
    """Before Great Expectations is first imported: no analytics, no INFO flood in task logs.

    It is imported inside the functions that run a suite (~7 s), so that importing this module
    (the ingest routing, ``airloop validate --help``) stays light.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    for name in ("great_expectations", "great_expectations._docs_decorators"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run_suite(df: pd.DataFrame, settings: Settings, now: datetime) -> Any:
    _quiet_great_expectations()
    import great_expectations as gx  # noqa: PLC0415 - see _quiet_great_expectations
    from great_expectations.data_context.types.base import (  # noqa: PLC0415 - as above
        ProgressBarsConfig,
    )

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (
        context.data_sources.add_pandas("landing")
        .add_dataframe_asset("batch")
        .add_batch_definition_whole_dataframe("whole_batch")
    )
    suite = gx.ExpectationSuite(name=f"{settings.project}_transactions")
    for exp in expectations(settings, now):
        suite.add_expectation(exp)
    suite = context.suites.add(suite)
    batch = batch_def.get_batch(batch_parameters={"dataframe": _for_ge(df)})
    return batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5})


def _for_ge(df: pd.DataFrame) -> pd.DataFrame:
    """Tz-aware timestamp columns as naive UTC, the only datetime form GE's type check knows."""
    tz_cols = [c for c in df.columns if isinstance(df[c].dtype, pd.DatetimeTZDtype)]
    if not tz_cols:
        return df
    return df.assign(**{c: df[c].dt.tz_convert("UTC").dt.tz_localize(None) for c in tz_cols})


def _nullable_int(df: pd.DataFrame, column: str | None) -> bool:
    return column is not None and column in df.columns and str(df[column].dtype) in ("Int64", "Int32")


def _failures(result: Any, df: pd.DataFrame, schema: DataSchema) -> list[CheckFailure]:
    missing = set(schema.names) - set(df.columns)
    failures = [f for r in result.results if not r.success if (f := describe(r, missing))]
    for f in failures:
        complete(f, df, schema)
    # GE fails its type check on pandas' nullable ints (an int column with nulls); every value of
    # such a column did convert (normalize_types), and the null check names the nulls.
    failures = [f for f in failures if not (f.expectation == TYPE_CHECK and _nullable_int(df, f.column))]
    # A column of the wrong type makes its range/set checks meaningless: report the type only.
    mistyped = {f.column for f in failures if f.expectation == TYPE_CHECK}
    failures = [f for f in failures if f.column not in mistyped or f.expectation == TYPE_CHECK]
    failures.sort(key=lambda f: f.expectation != SCHEMA_CHECK)
    return failures


def validate_frame(
    df: pd.DataFrame, settings: Settings, batch_uri: str = "", *, now: datetime | None = None
) -> ValidationReport:
    """Run the suite on a frame (already normalised); ``now`` is the ingest time (default: now)."""
    moment = now or datetime.now(UTC)
    result = _run_suite(df, settings, moment)
    return ValidationReport(
        batch_uri=batch_uri,
        success=bool(result.success),
        rows=len(df),
        failures=_failures(result, df, settings.schema_),
        result=result.to_json_dict(),
        checked_at=moment.isoformat(),
    )


def validate_landed(landed: Landed, settings: Settings) -> tuple[ValidationReport, pd.DataFrame | None]:
    """Decode and validate a fetched file; a file that cannot be taken fails as one check."""
    try:
        df = normalize_types(reading.decode(landed, settings.ingest), settings.schema_)
    except BatchUnreadable as exc:
        failure = CheckFailure(exc.rule, None, str(exc))
        return ValidationReport(landed.uri, False, exc.rows, [failure]), None
    return validate_frame(df, settings, batch_uri=landed.uri), df


def validate_batch(uri: str, settings: Settings) -> tuple[ValidationReport, pd.DataFrame | None]:
    """Read and validate one batch (``airloop validate``: nothing is moved or written)."""
    return validate_landed(reading.fetch(uri, settings.ingest), settings)
