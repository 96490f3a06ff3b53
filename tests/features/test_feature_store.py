"""The feature store with real Feast (file offline store, SQLite online store, file registry)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.features import store, tables
from tasks.features.materialization import materialize, watermarks
from tasks.features.offline import training_set
from tasks.features.online import online_features
from tests.features.conftest import assert_matches_feast, brute_force, events, land

pytestmark = pytest.mark.slow


def _cycle(settings, *indices: int, rows: int = 1200) -> dict:
    """What the features DAG does after an ingest run: refresh, apply, materialize."""
    for index in indices:
        land(settings, index, rows=rows)
    changed = tables.refresh(settings)
    store.apply(settings)
    return {"changed": changed, "materialized": materialize(settings, changed)}


def _latest(settings, table) -> pd.DataFrame:
    frame = tables.read_table(settings, table.name)
    return frame.sort_values("event_timestamp").groupby(table.join_key).tail(1).set_index(table.join_key)


def _online_for(settings, customers, merchants, when) -> pd.DataFrame:
    requests = pd.DataFrame(
        {"customer_id": customers, "merchant_id": merchants, "amount": 50.0, "event_timestamp": when}
    )
    return online_features(settings, requests)


def test_training_set_never_sees_the_label_event_or_a_later_one(fresh_store):
    settings = fresh_store
    _cycle(settings, 0, 1, 2, 3)
    history = events(settings)
    sample = history.sample(120, random_state=3).reset_index(drop=True)

    train = training_set(settings, sample)

    assert list(train["transaction_id"]) == list(sample["transaction_id"])  # order kept
    for _, row in train.iterrows():
        expected = brute_force(history, row.customer_id, row.merchant_id, row.event_timestamp)
        for name in tables.CUSTOMER_ACTIVITY.features | tables.MERCHANT_RISK.features:
            if name in expected:
                assert row[name] == pytest.approx(expected[name], abs=1e-6), (name, row.transaction_id)
            else:  # no earlier event: missing, not zero and not the row's own event
                assert np.isnan(row[name]), (name, row.transaction_id)
        if "customer_last_txn_unix_s" in expected:
            gap = row.event_timestamp.timestamp() - expected["customer_last_txn_unix_s"]
            assert row["seconds_since_last_txn"] == pytest.approx(gap)
            assert row["seconds_since_last_txn"] > 0


def test_online_values_equal_the_latest_offline_values(fresh_store):
    settings = fresh_store
    _cycle(settings, 0, 1, 2)
    customers = _latest(settings, tables.CUSTOMER_ACTIVITY)
    merchants = _latest(settings, tables.MERCHANT_RISK)
    n = min(len(customers), len(merchants))
    online = _online_for(
        settings,
        customers.index[:n].tolist(),
        merchants.index[:n].tolist(),
        pd.Timestamp("2026-01-01T04:00Z"),
    )
    assert online["customer_found"].all() and online["merchant_found"].all()
    for table, latest, key in (
        (tables.CUSTOMER_ACTIVITY, customers, "customer_id"),
        (tables.MERCHANT_RISK, merchants, "merchant_id"),
    ):
        expected = latest.iloc[:n][list(table.features)].astype("float64").reset_index(drop=True)
        got = online[list(table.features)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected, check_names=False, obj=key)


def test_three_successive_runs_each_materialize_their_new_rows(fresh_store):
    settings = fresh_store
    marks = []
    for run, hour in enumerate((0, 5, 9)):
        result = _cycle(settings, hour)
        assert result["changed"].rows["customer_activity"] > 0
        modes = {m.mode for m in result["materialized"]}
        assert modes == ({"initial"} if run == 0 else {"incremental"})
        marks.append(watermarks(settings))
        if run == 1:  # re-applying a changed definition must not reset the watermark (feast#2905)
            changed = settings.model_copy(
                update={"feast": settings.feast.model_copy(update={"ttl_days": 20})}
            )
            assert any("feature_view" in c for c in store.apply(changed))
            assert watermarks(changed) == marks[-1]
        # everything this run landed is online: each customer's latest row, as of this run
        latest = _latest(settings, tables.CUSTOMER_ACTIVITY)
        batch_end = pd.Timestamp(result["changed"].end)
        assert all(pd.Timestamp(m) > batch_end for m in marks[-1].values())
        fresh = latest[latest["event_timestamp"] > batch_end - pd.Timedelta("1h")]
        online = _online_for(settings, fresh.index.tolist(), [0] * len(fresh), batch_end)
        np.testing.assert_allclose(
            online["customer_last_txn_unix_s"], tables.unix_seconds(fresh["event_timestamp"]).to_numpy()
        )
    for view in marks[0]:
        assert marks[0][view] < marks[1][view] < marks[2][view]


def test_late_data_is_backfilled_without_overwriting_newer_online_values(fresh_store):
    settings = fresh_store
    _cycle(settings, 0, 30)
    before = watermarks(settings)
    result = _cycle(settings, 2)  # late: older than the watermark
    assert {m.mode for m in result["materialized"]} == {"backfill"}
    assert watermarks(settings) == before
    latest = _latest(settings, tables.CUSTOMER_ACTIVITY)
    online = _online_for(
        settings, latest.index.tolist(), [0] * len(latest), pd.Timestamp("2026-01-03T00:00Z")
    )
    np.testing.assert_allclose(
        online["customer_last_txn_unix_s"], tables.unix_seconds(latest["event_timestamp"]).to_numpy()
    )


def test_unknown_keys_come_back_as_explicit_missing_values(fresh_store):
    settings = fresh_store
    _cycle(settings, 0)
    known_customer = int(tables.read_table(settings, "customer_activity")["customer_id"].iloc[0])
    online = _online_for(settings, [known_customer, 10**9], [10**9, 10**9], pd.Timestamp("2026-01-01T02:00Z"))
    assert online["customer_found"].tolist() == [True, False]
    assert online["merchant_found"].tolist() == [False, False]
    assert online.loc[1, list(tables.CUSTOMER_ACTIVITY.features)].isna().all()
    assert online[list(tables.MERCHANT_RISK.features)].isna().all().all()
    assert np.isnan(online.loc[1, "seconds_since_last_txn"])


def test_direct_online_read_returns_what_feast_returns(fresh_store):
    """Serving reads the online store directly (``online_columns``); for known, unknown and
    repeated keys, and a zero amount, it must give Feast's ``get_online_features`` values."""
    settings = fresh_store
    _cycle(settings, 0, 1)
    history = events(settings)
    known = history.drop_duplicates("customer_id").head(20)
    customers = [*known["customer_id"], 10**9, int(known["customer_id"].iloc[0])]
    merchants = [*known["merchant_id"], int(known["merchant_id"].iloc[0]), 10**9]
    requests = pd.DataFrame(
        {
            "customer_id": customers,
            "merchant_id": merchants,
            "amount": [0.0, *np.linspace(1, 900, len(customers) - 1)],
            "event_timestamp": history["event_timestamp"].max() + pd.Timedelta("7min"),
        }
    )
    assert_matches_feast(settings, requests)


def test_training_and_serving_agree_for_the_same_entity_and_time(fresh_store):
    settings = fresh_store
    _cycle(settings, 0, 1, 2)
    history = events(settings)
    when = history["event_timestamp"].max() + pd.Timedelta("20min")
    pairs = history.drop_duplicates("customer_id").head(40)
    requests = pd.DataFrame(
        {
            "transaction_id": [f"probe-{i}" for i in range(len(pairs))],
            "customer_id": pairs["customer_id"].to_numpy(),
            "merchant_id": pairs["merchant_id"].to_numpy(),
            "amount": np.linspace(5, 500, len(pairs)),
            "event_timestamp": when,
        }
    )

    offline = training_set(settings, requests)
    online = online_features(settings, requests)

    names = store.feature_names(settings)
    assert names == [c for c in online.columns if not c.endswith("_found")]
    assert "seconds_since_last_txn" in names and "merchant_fraud_rate_7d" in names
    pd.testing.assert_frame_equal(
        offline[names].astype("float64").reset_index(drop=True), online[names].reset_index(drop=True)
    )


def test_apply_registers_only_when_definitions_change(fresh_store):
    settings = fresh_store
    first = store.apply(settings)
    assert "feature_service fraud_features_v1: create" in first
    assert store.apply(settings) == []
