"""Validate a landed batch against the transaction contract with Great Expectations.

The suite is built from ``config`` (schema, types, nulls, ranges, allowed values, uniqueness,
row count, optional freshness), so changing the contract never means editing code. A failed
validation comes back as a list of specific failures (which expectation, which column, how many
rows, examples) plus GE's own result JSON and data-docs HTML for the quarantine folder.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd

from tasks.common import storage

if TYPE_CHECKING:
    from config import DataSchema, Settings

log = logging.getLogger(__name__)

# Pandas dtypes accepted for each contract type (after lossless normalisation in read_batch).
TYPE_LISTS: dict[str, list[str]] = {
    "string": ["object", "str", "string"],
    "int": ["int64", "int32", "Int64", "Int32"],
    "float": ["float64", "float32", "int64", "int32", "Float64", "Int64"],
    # GE cannot match tz-aware dtypes, so timestamps are validated as naive UTC (see _for_ge).
    "timestamp": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"],
}


class BatchUnreadable(ValueError):
    """The file is not a table at all: empty, corrupt, or an unknown format."""


@dataclass
class CheckFailure:
    """One failed expectation, in words a data engineer can act on."""

    expectation: str
    column: str | None
    message: str
    unexpected_count: int | None = None
    examples: list[Any] = field(default_factory=list)


@dataclass
class ValidationReport:
    batch_uri: str
    success: bool
    rows: int
    failures: list[CheckFailure]
    result: dict[str, Any] | None = None
    """GE's validation result as JSON (None when the file could not be read at all)."""
    gx_result: Any = field(default=None, repr=False, compare=False)

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
            "failures": [asdict(f) for f in self.failures],
        }


def read_batch(uri: str, schema: DataSchema) -> pd.DataFrame:
    """Read a CSV or Parquet batch and normalise types where that is lossless.

    Values that do not convert (``"12,5x"`` in a float column) keep the column's raw dtype, so the
    type expectation fails and names the column instead of the reader silently coercing to NaN.
    """
    data = storage.read_bytes(uri)
    name = storage.basename(uri).lower()
    if not data:
        raise BatchUnreadable(f"empty file (0 bytes): {uri}")
    try:
        if name.endswith(".parquet"):
            df = pd.read_parquet(io.BytesIO(data))
        elif name.endswith(".csv"):
            df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""])
        else:
            raise BatchUnreadable(f"unknown file format {name!r}: expected .parquet or .csv")
    except BatchUnreadable:
        raise
    except Exception as exc:
        raise BatchUnreadable(f"unreadable {name}: {type(exc).__name__}: {exc}") from exc
    return normalize_types(df, schema)


def normalize_types(df: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    out = df.copy()
    for col in schema.columns:
        if col.name not in out.columns:
            continue
        series = out[col.name]
        try:
            if col.type == "int":
                num = pd.to_numeric(series) if series.dtype == object else series
                if num.isna().any():
                    out[col.name] = num.astype("Int64")
                elif (num == num.round()).all():
                    out[col.name] = num.astype("int64")
            elif col.type == "float":
                out[col.name] = (pd.to_numeric(series) if series.dtype == object else series).astype(
                    "float64"
                )
            elif col.type == "timestamp":
                out[col.name] = pd.to_datetime(series, utc=True, format="ISO8601")
            elif col.type == "string" and series.dtype != object:
                out[col.name] = series.astype(object).where(series.notna(), None)
        except (ValueError, TypeError):
            log.debug("column %s keeps raw dtype %s", col.name, series.dtype)
    return out


def _expectations(settings: Settings) -> list[Any]:
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
    if ingest.max_age_hours is not None:
        # naive UTC, like the timestamps GE sees (see _for_ge)
        oldest_ok = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=ingest.max_age_hours)
        exps.append(gxe.ExpectColumnMaxToBeBetween(column=schema.timestamp, min_value=oldest_ok))
    return exps


def _quiet_great_expectations() -> None:
    """Before Great Expectations is first imported: no analytics, no INFO flood in task logs.

    It is imported inside the functions that run a suite or render its page (~7 s), so that
    importing this module (the ingest routing, ``airloop validate --help``) stays light.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    for name in ("great_expectations", "great_expectations._docs_decorators"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run_suite(df: pd.DataFrame, settings: Settings) -> Any:
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
    for exp in _expectations(settings):
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


def _describe(result: Any, missing: set[str]) -> CheckFailure | None:
    """Turn one failed GE expectation result into a specific, human failure (or None to drop)."""
    cfg = result.expectation_config
    kind, kwargs, res = cfg.type, cfg.kwargs, result.result or {}
    column = kwargs.get("column")
    if column in missing:
        return None  # already reported once as a missing column
    count = res.get("unexpected_count")
    examples = [_scalar_or_text(v) for v in (res.get("partial_unexpected_list") or [])]
    exception = (result.exception_info or {}).get("exception_message")
    if kind == "expect_table_columns_to_match_set":
        details = res.get("details", {}).get("mismatched", {})
        parts = []
        if details.get("missing"):
            parts.append(f"missing columns {sorted(details['missing'])}")
        if details.get("unexpected"):
            parts.append(f"unexpected columns {sorted(details['unexpected'])}")
        message = "schema mismatch: " + ", ".join(parts or [f"observed {res.get('observed_value')}"])
    elif kind == "expect_table_row_count_to_be_between":
        message = (
            f"row count {res.get('observed_value')} outside "
            f"[{kwargs.get('min_value')}, {kwargs.get('max_value')}]"
        )
    elif kind == "expect_column_values_to_be_in_type_list":
        expected = next(t for t, names in TYPE_LISTS.items() if names == kwargs["type_list"])
        message = f"column {column!r} has type {res.get('observed_value')}, expected {expected}"
    elif kind == "expect_column_values_to_not_be_null":
        message = f"column {column!r} has {count} null values"
    elif kind == "expect_column_values_to_be_unique":
        message = f"column {column!r} has {count} duplicated values, e.g. {examples[:3]}"
    elif kind == "expect_column_values_to_be_between":
        message = (
            f"column {column!r} has {count} values outside "
            f"[{kwargs.get('min_value')}, {kwargs.get('max_value')}], e.g. {examples[:3]}"
        )
    elif kind == "expect_column_values_to_be_in_set":
        message = f"column {column!r} has {count} values not in the allowed set, e.g. {examples[:3]}"
    elif kind == "expect_column_max_to_be_between":
        message = f"stale batch: newest {column!r} is {res.get('observed_value')}, older than allowed"
    else:
        message = f"{kind} failed on {column!r}"
    if exception and "column" not in message:
        message += f" ({exception})"
    return CheckFailure(kind, column, message, count, examples)


def _explain_type(failure: CheckFailure, df: pd.DataFrame, schema: DataSchema) -> None:
    """Say which values broke the type: GE only reports the dtype, and not always that."""
    column = failure.column
    if column is None:
        return
    expected = schema.column(column).type
    series = df[column]
    bad = series
    if expected in ("int", "float"):
        bad = series[pd.to_numeric(series, errors="coerce").isna() & series.notna()]
    elif expected == "timestamp":
        parsed = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
        bad = series[parsed.isna() & series.notna()]
    failure.examples = [_scalar_or_text(v) for v in bad.head(3)]
    failure.unexpected_count = len(bad)
    failure.message = (
        f"column {column!r} has type {series.dtype}, expected {expected}: "
        f"{len(bad)} values do not parse, e.g. {failure.examples}"
    )


def _scalar_or_text(value: Any) -> Any:
    """An example value as GE's JSON result and the quarantine note can show it: scalars as they
    are, anything else (a timestamp, a list) as its text."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def validate_frame(df: pd.DataFrame, settings: Settings, batch_uri: str = "") -> ValidationReport:
    result = _run_suite(df, settings)
    missing = set(settings.schema_.names) - set(df.columns)
    failures = [f for r in result.results if not r.success if (f := _describe(r, missing))]
    for f in failures:
        if f.expectation == "expect_column_values_to_be_in_type_list":
            _explain_type(f, df, settings.schema_)
    # A column of the wrong type makes its range/set checks meaningless: report the type only.
    mistyped = {f.column for f in failures if f.expectation == "expect_column_values_to_be_in_type_list"}
    failures = [
        f
        for f in failures
        if f.column not in mistyped or f.expectation == "expect_column_values_to_be_in_type_list"
    ]
    failures.sort(key=lambda f: f.expectation != "expect_table_columns_to_match_set")
    return ValidationReport(
        batch_uri=batch_uri,
        success=bool(result.success),
        rows=len(df),
        failures=failures,
        result=result.to_json_dict(),
        gx_result=result,
    )


def validate_batch(uri: str, settings: Settings) -> tuple[ValidationReport, pd.DataFrame | None]:
    """Read and validate one batch; unreadable files fail validation instead of raising."""
    try:
        df = read_batch(uri, settings.schema_)
    except BatchUnreadable as exc:
        failure = CheckFailure("readable_file", None, str(exc))
        return ValidationReport(uri, False, 0, [failure]), None
    return validate_frame(df, settings, batch_uri=uri), df


def render_html(report: ValidationReport) -> str:
    """GE's data-docs page for the validation result (a plain page when there was no result)."""
    if report.gx_result is None:
        return (
            "<html><head><title>airloop validation</title></head><body>"
            f"<h1>Batch rejected</h1><p>{escape(report.batch_uri)}</p>"
            f"<p><strong>{escape(report.reason)}</strong></p></body></html>"
        )
    _quiet_great_expectations()
    from great_expectations.render.renderer import (  # noqa: PLC0415 - see _quiet_great_expectations
        ValidationResultsPageRenderer,
    )
    from great_expectations.render.view import DefaultJinjaPageView  # noqa: PLC0415 - as above

    page = ValidationResultsPageRenderer().render(report.gx_result)
    view: Any = DefaultJinjaPageView()  # its render() is unannotated
    return str(view.render(page))
