"""Column types of a decoded batch, normalised where that is lossless, and the values that are not.

A CSV arrives as text and a Parquet file with whatever types its writer chose; the contract
(``config`` ``schema``) says int, float, string or timestamp. A column converts only when every
value does: one value that does not (``"12,5x"`` in a float column, ``99999999999999999999`` in
an int64 column) leaves the column's raw dtype, so the type expectation fails and
``unparseable`` names those values, instead of a reader silently coercing them to NaN or
wrapping them around. Timestamps are normalised to UTC (naive ones are taken as UTC).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from config import DataSchema

log = logging.getLogger(__name__)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INTEGER = re.compile(r"^\s*[+-]?\d+(\.0*)?\s*$")


def as_int64(value: Any) -> int | None:
    """The value as an int64, or None when it is not a whole number that fits (NaN included)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        number = int(value)
    elif isinstance(value, (float, np.floating)):
        if not float(value).is_integer():
            return None
        number = int(value)
    elif isinstance(value, str) and _INTEGER.match(value):
        number = int(value.strip().split(".")[0])
    else:
        return None
    return number if INT64_MIN <= number <= INT64_MAX else None


def _ints(series: pd.Series) -> pd.Series | None:
    """The column as int64 (Int64 with nulls), or None when a value is not an int64."""
    present = series.notna()
    if series.dtype.kind in "iu" and series.dtype != np.uint64:
        values = series
    else:
        parsed = series[present].map(as_int64)
        if parsed.isna().any():
            return None
        values = pd.Series(pd.array([None] * len(series), dtype="Int64"), index=series.index)
        values[present] = parsed.astype("int64")
    return values.astype("Int64") if not present.all() else values.astype("int64")


def _floats(series: pd.Series) -> pd.Series:
    return (pd.to_numeric(series) if series.dtype == object else series).astype("float64")


def _timestamps(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True, format="ISO8601")


def _strings(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), None)


def normalize_types(df: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    """The frame with each contract column converted where every value converts."""
    out = df.copy()
    for col in schema.columns:
        if col.name not in out.columns:
            continue
        series = out[col.name]
        try:
            if col.type == "int":
                ints = _ints(series)
                if ints is not None:
                    out[col.name] = ints
            elif col.type == "float":
                out[col.name] = _floats(series)
            elif col.type == "timestamp":
                out[col.name] = _timestamps(series)
            elif col.type == "string" and series.dtype != object:
                out[col.name] = _strings(series)
        except (ValueError, TypeError, OverflowError):
            log.debug("column %s keeps raw dtype %s", col.name, series.dtype)
    return out


def unparseable(series: pd.Series, kind: str) -> pd.Series:
    """The values of a column that do not convert to the contract type ``kind`` (nulls aside)."""
    present = series[series.notna()]
    if kind == "int":
        bad = present.map(as_int64).isna()
    elif kind == "float":
        bad = pd.to_numeric(present, errors="coerce").isna()
    elif kind == "timestamp":
        bad = pd.to_datetime(present, errors="coerce", utc=True, format="ISO8601").isna()
    else:
        bad = ~present.map(lambda v: isinstance(v, str)).astype(bool)
    return present[bad.to_numpy(dtype=bool)]
