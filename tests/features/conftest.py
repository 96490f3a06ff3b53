"""Helpers for feature-store tests: land simulated hours through the real ingest path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.ingest.batches import ingest_batch
from tasks.ingest.curated import read_curated
from tasks.platform import simulate


def land(settings, index: int, rows: int = 1500, scenario: str = "stable") -> pd.DataFrame:
    """One simulated hour, validated and curated exactly as the ingest DAG does it."""
    df = simulate.generate_batch(settings, scenario, index=index, rows=rows)
    uri = simulate.write_batch(df, settings.storage.landing_uri, simulate.batch_name(scenario, index))
    assert ingest_batch(uri, settings).status == "ingested"
    return df


def events(settings) -> pd.DataFrame:
    frame = read_curated(settings)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


def brute_force(history: pd.DataFrame, customer: int, merchant: int, before: pd.Timestamp) -> dict:
    """The feature values by definition, from events strictly before ``before``: the oracle."""
    from tasks.features.tables import CUSTOMER_WINDOWS, MERCHANT_WINDOWS

    past = history[history["event_timestamp"] < before]
    cust = past[past["customer_id"] == customer]
    merch = past[past["merchant_id"] == merchant]
    out: dict = {}
    if len(cust):
        # the state as of the customer's latest transaction, like the stored row
        last = cust["event_timestamp"].max()
        for w, width in CUSTOMER_WINDOWS.items():
            win = cust[cust["event_timestamp"] > last - width]
            out[f"customer_txn_count_{w}"] = len(win)
            out[f"customer_amount_sum_{w}"] = win["amount"].sum()
        out["customer_amount_mean_7d"] = cust[cust["event_timestamp"] > last - CUSTOMER_WINDOWS["7d"]][
            "amount"
        ].mean()
        out["customer_last_txn_unix_s"] = last.timestamp()
    if len(merch):
        last = merch["event_timestamp"].max()
        for w, width in MERCHANT_WINDOWS.items():
            out[f"merchant_txn_count_{w}"] = int((merch["event_timestamp"] > last - width).sum())
        week = merch[merch["event_timestamp"] > last - MERCHANT_WINDOWS["7d"]]
        out["merchant_fraud_count_7d"] = int(week["is_fraud"].sum())
        out["merchant_fraud_rate_7d"] = week["is_fraud"].mean()
    return out


@pytest.fixture
def fresh_store(settings):
    from tasks.features import store

    store.forget_stores()
    yield settings
    store.forget_stores()


def assert_matches_feast(settings, requests: pd.DataFrame) -> None:
    """``online_columns`` (our direct read of the online store) returns exactly what Feast's own
    ``get_online_features`` returns for the same rows: every feature service value, on-demand
    features included, and NaN wherever Feast has no value."""
    from feature_repo.definitions import REQUEST_TIME
    from tasks.features import online, store
    from tasks.features.tables import unix_seconds

    rows = {
        "customer_id": requests["customer_id"].astype("int64").tolist(),
        "merchant_id": requests["merchant_id"].astype("int64").tolist(),
        "amount": requests["amount"].astype("float64").tolist(),
        REQUEST_TIME: unix_seconds(requests["event_timestamp"]).tolist(),
    }
    feast_store = store.get_store(settings)
    service = feast_store.get_feature_service(settings.feast.service)
    reference = feast_store.get_online_features(features=service, entity_rows=rows).to_dict()
    # the serving path hands over plain columns: ints, floats and datetime objects
    columns = {
        "customer_id": rows["customer_id"],
        "merchant_id": rows["merchant_id"],
        "amount": rows["amount"],
        "event_timestamp": [t.to_pydatetime() for t in requests["event_timestamp"]],
    }
    ours = online.online_columns(settings, columns)
    names = store.feature_names(settings)
    assert list(ours)[: len(names)] == names
    for name in names:
        expected = np.array([np.nan if v is None else v for v in reference[name]], dtype="float64")
        np.testing.assert_array_equal(ours[name], expected, err_msg=name)
