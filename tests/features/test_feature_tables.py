"""Window features by construction: exact against a brute-force oracle, incremental == full."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.features import tables
from tests.features.conftest import brute_force, events, land


def test_every_stored_row_is_the_state_after_its_own_time_and_never_later(settings):
    for i in range(4):
        land(settings, i, rows=800)
    history = events(settings)
    computed = tables.compute(history)
    customers, merchants = computed["customer_activity"], computed["merchant_risk"]
    rng = np.random.default_rng(7)
    for i in rng.choice(len(customers), 150, replace=False):
        row = customers.iloc[i]
        # "before t + 1 µs" = every event at or before t: the stored row includes its own time
        expected = brute_force(history, row.customer_id, -1, row.event_timestamp + pd.Timedelta("1us"))
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, abs=1e-6), (name, row.customer_id)
    for i in rng.choice(len(merchants), 150, replace=False):
        row = merchants.iloc[i]
        expected = brute_force(history, -1, row.merchant_id, row.event_timestamp + pd.Timedelta("1us"))
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, abs=1e-6), (name, row.merchant_id)


def test_one_row_per_entity_and_timestamp(settings):
    land(settings, 0, rows=2000)
    table = tables.compute(events(settings))["customer_activity"]
    assert not table.duplicated(["customer_id", "event_timestamp"]).any()
    assert str(table["event_timestamp"].dtype) == "datetime64[us, UTC]"


def _sorted(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame.sort_values([key, "event_timestamp"]).reset_index(drop=True)


def test_incremental_refresh_equals_a_full_recompute_even_with_late_data(settings):
    # hours 0, 30 and 60, then a late batch for hour 10 that changes later windows
    summaries = []
    for index in (0, 30, 60, 10):
        land(settings, index, rows=600)
        summaries.append(tables.refresh(settings))
    assert [len(s.batches) for s in summaries] == [1, 1, 1, 1]
    # the late batch rewrote its own date and the dates its windows reach
    assert summaries[-1].start < summaries[-2].start
    full = tables.compute(events(settings))
    for table in tables.TABLES:
        stored = tables.read_table(settings, table.name)
        expected = full[table.name]
        pd.testing.assert_frame_equal(
            _sorted(stored, table.join_key)[expected.columns],
            _sorted(expected, table.join_key),
            check_dtype=False,
        )


def test_refresh_without_new_batches_rewrites_nothing(settings):
    land(settings, 0, rows=300)
    first = tables.refresh(settings)
    again = tables.refresh(settings)
    assert first.rows["customer_activity"] > 0
    assert again == tables.FeatureChanges()
    assert not again.rewritten


def test_unix_seconds_of_datetimes_equals_the_pandas_conversion():
    """Serving converts plain datetimes without pandas; it must agree to the last bit with the
    conversion of the feature tables and training sets (naive = UTC, missing = NaN)."""
    from datetime import UTC, datetime, timedelta, timezone

    values = [
        datetime(2026, 1, 1, 12, 0, 0, 123457, tzinfo=UTC),
        None,
        pd.Timestamp("2026-03-01T00:00:00.5Z"),
        pd.NaT,
        datetime(2026, 1, 1, 3, 4, 5),
        datetime(2026, 6, 1, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-7))),
    ]
    fast = tables.unix_seconds(values)
    reference = tables.unix_seconds(pd.Series(values, dtype=object)).to_numpy()
    np.testing.assert_array_equal(fast, reference)
    assert np.isnan(fast[1]) and np.isnan(fast[3]) and fast[0] == 1767268800.123457
