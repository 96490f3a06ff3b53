"""Steady live traffic looks like the training data to the monitor; drifted traffic does not.

Offline, with the real pieces and no stack (``benchmarks.skew``): the local profile's simulated
history, its feature tables, the training set as training builds it (warm-up left out), a model,
and live traffic on the simulated clock, looked up as the online store answers (each entity's
latest row; the request's own time for the on-demand features), judged by the monitor's drift
computation against the training reference.
"""

from __future__ import annotations

import warnings

import pytest

from benchmarks import skew
from config import read_config
from tasks.features import tables
from tasks.monitoring import drift
from tasks.monitoring.reference import build_reference
from tasks.platform import traffic
from tasks.platform.simulate import history_end
from tasks.training import dataset
from tasks.training.families.base import InputSpec, model_input

BATCHES = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    settings = read_config("local", {"AIRLOOP_HOME": str(tmp_path_factory.mktemp("skew"))})
    events = skew.history(settings, BATCHES)
    tabs = tables.compute(events)
    frame = dataset.after_warmup(settings, skew.training_rows(events, tabs)).reset_index(drop=True)
    frame["event_date"] = frame[tables.TIMESTAMP].dt.strftime("%Y-%m-%d")
    spec = InputSpec.from_settings(settings, skew.feature_names())
    model, _ = skew.train(settings, frame, spec)
    ref = build_reference(
        settings, frame, model.predict_proba, features=skew.feature_names(), model_name="m", model_version="1"
    )
    return settings, tabs, spec, model, ref


def _window(trained, scenario: str) -> drift.DriftResult:
    settings, tabs, spec, model, ref = trained
    clock = traffic.Clock(history_end(settings, BATCHES).to_pydatetime())
    requests = skew.live_requests(settings, scenario, 3000, clock)
    current = model_input(skew.serving_rows(requests, tabs), spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result, _ = drift.compute(settings, current.assign(score=model.predict_proba(current)), ref)
    return result


def test_steady_traffic_is_not_drift(trained) -> None:
    result = _window(trained, "stable")
    assert result.judged
    assert result.share is not None and result.share < 0.15, result.drifted_columns
    assert not result.data_drift and result.prediction is not None and not result.prediction.drifted
    # the long windows and the request-time gap read as in training (they drifted before the fix)
    for column in ("customer_txn_count_7d", "merchant_txn_count_7d", "customer_txn_count_24h"):
        assert column not in result.drifted_columns


def test_covariate_drift_is_still_seen(trained) -> None:
    result = _window(trained, "covariate_drift")
    assert {"amount", "channel", "region"} <= set(result.drifted_columns)
    assert result.data_drift or (result.prediction is not None and result.prediction.drifted)
