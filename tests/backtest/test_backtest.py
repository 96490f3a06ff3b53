"""The backtest at a small scale: hourly windows of 600 transactions, a 3-day training history,
one small XGBoost on the feature service's features; the monitor's thresholds scaled to the
window's size.

- on stable traffic no policy retrains;
- on covariate drift, concept drift and the ramp the policy finds the drift and the retrained
  champion restores quality: near what a model trained on the new traffic alone reaches in the
  same run (the reference, ``yardsticks``), and no worse than the first champion left serving (on
  concept drift, which costs that one half its ROC AUC, far better);
- every replayed decision equals what the monitor DAG's decide task computes
  (``decision.decide_and_record``, which ``decide_window`` calls) from the same window in its XCom
  form, recorded in a real store, with the same retrain state from "Airflow" (``SameAsTheDag``
  says what this leaves out);
- the estimated ROC AUC follows the true one on covariate drift (within its band and a small bias,
  then marked untrusted) and not on concept drift (trusted and far off).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from typing import Any

import pandas as pd
import pytest

from config import read_config
from tasks.backtest import features, report, spec
from tasks.backtest import history as hist
from tasks.backtest.run import backtest
from tests.backtest.conftest import SMALL
from tests.features.conftest import brute_force


def _spec(scenario: str, days: float, onset: float, policies: list[dict[str, Any]]) -> spec.Spec:
    return spec.parse({**SMALL, "scenario": scenario, "days": days, "onset_day": onset, "policies": policies})


def _windows(result: dict[str, Any], policy: str) -> pd.DataFrame:
    w = pd.DataFrame(result["windows"][policy])
    w["end"] = pd.to_datetime(w["end"], utc=True)
    return w


class SameAsTheDag:
    """Decides every replayed window again the way the monitor DAG's tasks do, and keeps any
    difference from the backtest's decision.

    For each window of each policy, in a real monitor store of its own (one per policy, with the
    policy's settings): the drift task's part, ``store.record_window(result.row())``, then the
    decide task's: ``decision.decide_and_record`` (what ``decide_window`` runs) on the window in
    the form the task gets it from XCom (``WindowResult.as_dict()`` through JSON and back), with
    the store's history and last retrain, and "Airflow" saying whether the policy's retrain is
    still running. What this does not cover: the DAG's own scheduling (``dag.test()``, the
    sensor, reading the window from the inference log: ``test_backtest_dag`` runs them on one
    window), and the wall clock: ``now`` is the window's end, as the replay decides in simulated
    time."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.checked = 0
        self.differences: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def __call__(self, run: Any, result: Any, made: Any) -> None:
        from tasks.monitoring import decision, store
        from tasks.monitoring.results import WindowResult

        home = os.path.join(self.home, run.policy.name)  # one monitor store per policy
        env = {**os.environ, "AIRLOOP_HOME": home, **spec.overrides(SMALL["settings"])}
        env |= spec.overrides({"monitor": run.policy.monitor})
        settings = read_config("local", env)
        store.record_window(settings, result.row())
        xcom = WindowResult.from_dict(json.loads(json.dumps(result.as_dict())))
        state = "running" if run.pending is not None else "success"
        dag = decision.decide_and_record(
            settings,
            xcom,
            retrain_running=run.pending is not None,
            now=result.end,
            run_state=lambda _: state,
        )
        ours, theirs = made.as_dict(), dag.as_dict()
        self.checked += 1
        if ours != theirs:
            diff = {k: (ours[k], theirs.get(k)) for k in ours if ours[k] != theirs.get(k)}
            self.differences.append((result.window_id, diff, {}))


WATCH = {
    "name": "watch",  # never retrains (drift of every input only): the first champion all along
    "monitor": {
        "drift": {"share_threshold": 1.0},
        "decision": {"on_prediction_drift": False},
        "performance": {"roc_auc_tolerance": None, "recall_tolerance": None},
    },
}


@pytest.fixture(scope="module")
def covariate(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], SameAsTheDag]:
    home = tmp_path_factory.mktemp("backtest-covariate")
    os.environ.setdefault("AIRLOOP_HOME", str(home))
    same = SameAsTheDag(str(home / "store"))
    policies = [{"name": "default"}, WATCH]
    return backtest(_spec("covariate_drift", 2.5, 0.5, policies), observe=same), same


@pytest.fixture(scope="module")
def concept() -> dict[str, Any]:
    return backtest(_spec("concept_drift", 2.5, 0.5, [{"name": "default"}, WATCH]))


REACHED = 0.04
"""The retrained champion's ROC AUC is at most this far below the reference's on the same windows
(a retrain decided a day after the onset has a day of the new traffic's labels; the reference,
three: on concept drift 0.913 against 0.943)."""
GAINED = 0.8
"""Where the drift cost the first champion more than ``REACHED``, the retrained one wins back at
least this share of what it lost against the reference (on concept drift 0.94)."""


def _restored(result: dict[str, Any], policy: str = "default") -> dict[str, float]:
    """The drift was found, a retrained champion served, and once the quality window covers its
    hours only, its quality is what is achievable on the new traffic, measured in the same run
    (``yardsticks``): near the reference's (a model of the same code and scale trained on the new
    traffic alone), and no worse than the first champion's, left serving; clearly better where
    the drift cost that one. Not "back to the level before the onset": under concept drift the
    best achievable quality changes with the traffic. The means, for the caller's own checks."""
    summary = next(p for p in result["policies"] if p["policy"] == policy)
    assert summary["detected_after_hours"] is not None, summary
    assert summary["deployed"] >= 1, result["retrains"][policy]
    w = _windows(result, policy)
    w["reference"] = [x["roc_auc"] for x in result["reference"]["windows"]]
    w["stale"] = [x["roc_auc"] for x in result["first_champion"]["windows"]]
    onset = pd.Timestamp(result["onset"])
    deployed = next(pd.Timestamp(r["deployed_at"]) for r in result["retrains"][policy] if r["deployed_at"])
    after = w[w["end"] > max(deployed, onset) + pd.Timedelta(hours=result["spec"]["quality_hours"])]
    assert len(after) >= 6
    got = {"retrained": float(after["roc_auc"].mean())}
    got |= {k: float(after[k].mean()) for k in ("reference", "stale")}
    got["before_onset"] = summary["quality_before_onset"]["roc_auc"]
    assert got["retrained"] >= got["reference"] - REACHED, got
    lost = got["reference"] - got["stale"]
    floor = got["stale"] + GAINED * lost if lost > REACHED else got["stale"] - REACHED
    assert got["retrained"] >= floor, got
    return got


def test_on_stable_traffic_no_policy_retrains(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    strict = {
        "name": "strict",
        "monitor": {"drift": {"share_threshold": 0.5}, "decision": {"cooldown_hours": 12}},
    }
    result = backtest(_spec("stable", 1, 0, [{"name": "default"}, strict]))
    assert [p["retrains"] for p in result["policies"]] == [0, 0]
    assert all(p["area_lost_roc_auc"] < 1.0 for p in result["policies"])
    uris = report.write(read_config("local"), result, "stable-test", str(tmp_path / "out"))
    page = (tmp_path / "out" / "stable-test.html").read_text()
    assert "strict" in page and "<svg" in page and uris["report"].endswith("backtests/stable-test.html")
    picture = ET.fromstring(report.picture(result))  # the README's picture: standalone SVG
    assert picture.tag == "{http://www.w3.org/2000/svg}svg" and "strict" in report.picture(result)


def test_covariate_drift_is_found_and_the_retrain_restores_quality(covariate):
    _restored(covariate[0])


def test_concept_drift_is_found_and_the_retrain_restores_quality(concept):
    got = _restored(concept)
    # the new fraud inverts the old signal: the first champion falls to ~0.45 (~0.97 before the
    # onset), the reference reaches ~0.94: there was something to restore
    assert got["reference"] - got["stale"] >= 0.2, got
    page = report.render(concept)  # the report shows the yardsticks a user chooses by
    assert "reference ROC AUC" in page and "Achievable on the new traffic" in page


def test_concept_drift_is_found(concept):
    summary = next(p for p in concept["policies"] if p["policy"] == "default")
    assert summary["detected_after_hours"] is not None and summary["retrains"] >= 1


def test_the_ramp_is_found_and_the_retrain_restores_quality(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    _restored(backtest(_spec("ramp", 2.5, 0.5, [{"name": "default"}])))


def test_every_replayed_decision_is_the_monitor_dags(covariate):
    result, same = covariate
    assert same.checked == sum(len(w) for w in result["windows"].values())
    assert not same.differences, same.differences[:1]


ESTIMATE_BIAS = 0.025
"""How far below the truth the estimated ROC AUC may run on covariate drift beyond its band (the
band is the sampling error of the realised metric only): as rows move towards the edge of the
training data's support the scores' calibration loosens (measured: 0.010-0.020 at 12 h of scores,
until the estimate is marked untrusted when out-of-support rows pass 5 %)."""


def test_the_estimate_follows_covariate_drift_but_not_concept_drift(covariate, concept):
    """With the first champion serving on, on covariate drift the estimated ROC AUC stays within
    its band and the estimator's bias of the true one, and is marked untrusted once the rows leave
    the training data's support; on concept drift the scores stay confident while the truth falls:
    trusted, and far outside both."""

    def drifted(result: dict[str, Any]) -> pd.DataFrame:
        """The watching policy's windows once the true quality covers drifted hours only."""
        w = _windows(result, "watch")
        assert not result["retrains"]["watch"]
        quality = pd.Timedelta(hours=result["spec"]["quality_hours"])
        return w[w["end"] > pd.Timestamp(result["onset"]) + quality]

    cov = drifted(covariate[0])
    error = (cov["estimated_roc_auc"] - cov["roc_auc"]).abs()
    assert len(cov) and (error <= cov["estimate_band_roc_auc"] + ESTIMATE_BIAS).mean() >= 0.9, cov[
        ["estimated_roc_auc", "roc_auc", "estimate_band_roc_auc", "estimate_trusted"]
    ]
    assert not cov["estimate_trusted"].iloc[-12:].any()  # a day in: rows beyond the support
    con = drifted(concept)
    gap = con["estimated_roc_auc"] - con["roc_auc"]
    assert len(con) and (gap > con["estimate_band_roc_auc"] + 10 * ESTIMATE_BIAS).mean() >= 0.8, con[
        ["estimated_roc_auc", "roc_auc"]
    ]
    assert con["estimate_trusted"].mean() >= 0.8  # nothing in the inputs says the concept moved


def test_the_models_features_are_the_feature_stores_point_in_time(tmp_path, monkeypatch):
    """Every hour gets the feature service's features as of just before each transaction, from
    the warm-up context and the earlier hours only: the oracle of the feature store's own tests
    (every window by definition, strictly before the event) on a sample of events."""
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    small = _spec("concept_drift", 0.5, 0.0, [{"name": "default"}])
    small = spec.parse({**small.as_dict(), "train_days": 0.5, "rows_per_hour": 120})
    settings = spec.policy_settings(small, small.policies[0])
    history = hist.build(settings, small)
    context = features.warmup_hours(settings, small.rows_per_hour, history.start)
    assert len(context) == 7 * 24 and context[-1]["event_timestamp"].max() < history.start
    features.add(settings, history, context)
    everything = pd.concat([*context, *history.hours], ignore_index=True)
    events = pd.concat(history.hours, ignore_index=True)
    names = features.names(settings)
    assert "customer_txn_count_1h" in names and "seconds_since_last_txn" in names
    for row in events.sample(40, random_state=0).itertuples():
        at = row.event_timestamp
        expected = brute_force(everything, row.customer_id, row.merchant_id, at)
        got = pd.Series({n: getattr(row, n) for n in names})
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-6, nan_ok=True), (name, row.Index)
        last = expected.get("customer_last_txn_unix_s")
        if last is not None:
            assert got["seconds_since_last_txn"] == pytest.approx(at.timestamp() - last, abs=1e-3)
            ratio = row.amount / expected["customer_amount_mean_7d"]
            assert got["amount_to_customer_mean_7d"] == pytest.approx(ratio, rel=1e-5)
        else:
            assert pd.isna(got["seconds_since_last_txn"])
