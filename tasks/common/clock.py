"""Time in one convention: timezone-aware UTC, whatever a caller, a file or a user passed in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def utc(value: datetime | str) -> datetime:
    """An aware UTC ``datetime`` from a datetime or ISO 8601 text (naive means UTC; ``Z`` is fine)."""
    ts = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def utc_timestamp(value: Any) -> pd.Timestamp:
    """An aware UTC ``pandas.Timestamp`` from anything pandas reads as a time (naive means UTC)."""
    import pandas as pd  # noqa: PLC0415 - plugins import this module at DAG parse time

    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def now_iso() -> str:
    """Now, in UTC, as ISO 8601 text (what records and reports store)."""
    return datetime.now(UTC).isoformat()
