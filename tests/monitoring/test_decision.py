"""Performance, the decision and the store on hand-made windows: every rule, no Evidently."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from config import read_config
from tasks.monitoring import decision, performance, store
from tasks.monitoring.results import ColumnDrift, DriftResult, Scores, WindowResult
from tasks.training.context import RunContext

T0 = pd.Timestamp("2026-03-01T00:00:00Z")


def test_scores_match_sklearn_and_count_at_the_threshold():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    got = performance.scores(np.r_[y, np.nan, 1], np.r_[p, 0.9, np.nan], 0.5)  # rows with NaN are left out
    assert got.rows == 500 and got.positives == int(y.sum())
    assert got.roc_auc == roc_auc_score(y, p)
    assert got.pr_auc == average_precision_score(y, p)
    flagged = p >= 0.5
    assert got.precision == pytest.approx((flagged & (y == 1)).sum() / flagged.sum())
    assert got.recall == pytest.approx((flagged & (y == 1)).sum() / y.sum())
    one_class = performance.scores([0, 0, 0], [0.1, 0.7, 0.2], 0.5)
    assert one_class.roc_auc is None and one_class.recall is None and one_class.precision == 0.0


@pytest.mark.parametrize("ties", ["none", "rounded", "few levels", "float32"])
def test_roc_auc_and_average_precision_equal_sklearns_to_the_last_bit(ties):
    """The monitor's own ROC AUC and average precision (scikit-learn's arithmetic without its
    input checks) give scikit-learn's numbers exactly, on random labels and tied scores."""
    rng = np.random.default_rng(len(ties))
    checked = 0
    for _ in range(150):
        n = int(rng.integers(2, 3000))
        y = (rng.random(n) < rng.uniform(0.002, 0.6)).astype("int64")
        if not 0 < y.sum() < n:
            continue
        p = {
            "none": rng.random(n),
            "rounded": np.round(rng.random(n), int(rng.integers(1, 4))),
            "few levels": rng.integers(0, 5, n) / 4.0,
            "float32": rng.random(n).astype("float32").astype("float64"),
        }[ties]
        assert performance.roc_auc(y, p) == float(roc_auc_score(y, p))
        assert performance.average_precision(y, p) == float(average_precision_score(y, p))
        checked += 1
    assert checked > 100


def _settings(**over):
    env = {**os.environ, **{f"AIRLOOP__MONITOR__{k.upper()}": str(v) for k, v in over.items()}}
    return read_config("local", env)


def test_performance_is_judged_only_with_enough_labels_and_drops_are_held_to_tolerances(airloop_home):
    settings = _settings(performance__precision_tolerance=0.1)
    base = Scores(rows=5000, positives=100, threshold=0.5, roc_auc=0.97, precision=0.6, recall=0.66)
    ok = Scores(rows=3000, positives=60, threshold=0.5, roc_auc=0.95, precision=0.55, recall=0.5)
    good = performance.compare(settings, ok, base, start="a", end="b")
    assert good.judged and not good.is_degraded and good.drops["roc_auc"] == pytest.approx(0.02)
    bad = Scores(rows=3000, positives=60, threshold=0.5, roc_auc=0.7, precision=0.3, recall=0.2)
    worse = performance.compare(settings, bad, base, start="a", end="b")
    assert [line.split()[0] for line in worse.degraded] == ["roc_auc", "recall", "precision"]
    assert worse.degraded[0] == "roc_auc 0.700 < hold-out 0.970 - 0.05"
    few = Scores(rows=3000, positives=10, threshold=0.5, roc_auc=0.5, precision=0.1, recall=0.1)
    unjudged = performance.compare(settings, few, base, start="a", end="b")
    assert not unjudged.judged and not unjudged.degraded and "30 fraud" in unjudged.note
    off = _settings(performance__roc_auc_tolerance="null", performance__recall_tolerance="null")
    assert not performance.compare(off, bad, base, start="a", end="b").is_degraded


def _window(
    i: int,
    *,
    share: float = 0.0,
    score: float = 0.01,
    roc_auc: float = 0.96,
    version: str = "1",
    hours: int = 2,
) -> WindowResult:
    """A judged window ``i`` (``hours`` long from T0 + i * hours) with the given numbers."""
    start, end = T0 + pd.Timedelta(hours=i * hours), T0 + pd.Timedelta(hours=(i + 1) * hours)
    n_cols = 10
    cols = [
        ColumnDrift(f"c{j}", "numeric", "wasserstein", 0.1, score=0.5 if j < round(share * n_cols) else 0.01)
        for j in range(n_cols)
    ]
    for c in cols:
        c.drifted = c.score >= 0.1
    d = DriftResult(True, 2000, 9000, 2000, 9000, 0.0, 0.95, cols, share_threshold=0.3)
    d.prediction = ColumnDrift("score", "prediction", "psi", 0.1, score=score, drifted=score >= 0.1)
    base = Scores(rows=4000, positives=80, threshold=0.5, roc_auc=0.97, precision=0.6, recall=0.66)
    live = Scores(rows=3000, positives=60, threshold=0.5, roc_auc=roc_auc, precision=0.6, recall=0.66)
    perf = performance.compare(_settings(), live, base, start=start.isoformat(), end=end.isoformat())
    w = WindowResult(
        window_id=f"w{i:03d}",
        start=start.isoformat(),
        end=end.isoformat(),
        model_name="m",
        model_version=version,
        data_sha256="abc",
        rows=2000,
        scored_rows=2000,
        versions={version: 2000},
        drift=d,
        performance=perf,
        computed_at=end.isoformat(),
    )
    return w


def test_a_window_result_survives_xcom(airloop_home):
    import json

    for w in (_window(3, share=0.5, score=0.3, roc_auc=0.8), _window(0)):
        back = WindowResult.from_dict(json.loads(json.dumps(w.as_dict())))
        assert back.as_dict() == w.as_dict()
        assert pd.Series(back.row()).equals(pd.Series(w.row()))  # NaN where NaN
        settings = _settings(decision__confirm_windows=1)
        made = decision.decide(settings, back, now=T0)
        assert made.as_dict() == decision.decide(settings, w, now=T0).as_dict()


def test_calm_window_does_not_retrain(airloop_home):
    made = decision.decide(_settings(), _window(0), now=T0)
    assert not made.retrain and made.reason == "none" and not made.triggers
    assert made.detail.startswith("no retrain: drift share 0.00 < 0.30")


def test_drift_needs_consecutive_windows_of_the_same_version(airloop_home):
    settings = _settings()
    first, second = _window(0, share=0.5), _window(1, share=0.5)
    alone = decision.decide(settings, first, now=first.end)
    assert not alone.retrain and alone.reason == "none" and alone.pending
    assert alone.pending[0].startswith("data drift: 5 of 10 input columns drifted (share 0.50 >= 0.30)")
    history = pd.DataFrame([first.row(), second.row()])
    made = decision.decide(settings, second, history=history, now=second.end)
    assert made.retrain and made.reason == "drift" and made.triggers[0].startswith("data drift")
    other = pd.DataFrame([_window(0, share=0.5, version="0").row(), second.row()])
    assert not decision.decide(settings, second, history=other, now=second.end).retrain
    calm = pd.DataFrame([_window(0).row(), second.row()])
    assert not decision.decide(settings, second, history=calm, now=second.end).retrain
    once = _settings(decision__confirm_windows=1)
    assert decision.decide(once, first, now=first.end).retrain


def test_prediction_drift_triggers_unless_turned_off(airloop_home):
    first, second = _window(0, score=0.3), _window(1, score=0.3)
    history = pd.DataFrame([first.row(), second.row()])
    made = decision.decide(_settings(), second, history=history, now=second.end)
    assert made.retrain and made.reason == "drift"
    assert made.triggers == ["prediction drift: score psi 0.3 (threshold 0.1)"]
    off = _settings(decision__on_prediction_drift="false")
    assert not decision.decide(off, second, history=history, now=second.end).triggered


def test_performance_triggers_at_once_and_outranks_drift(airloop_home):
    settings = _settings(decision__confirm_windows=1)
    made = decision.decide(settings, _window(0, roc_auc=0.8), now=T0)
    assert made.retrain and made.reason == "performance"
    assert made.triggers == ["performance: roc_auc 0.800 < hold-out 0.970 - 0.05"]
    both = decision.decide(settings, _window(0, roc_auc=0.8, share=0.6), now=T0)
    assert both.reason == "performance" and len(both.triggers) == 2
    ctx = RunContext.parse(both.conf())
    assert ctx.reason == "performance" and ctx.drift["roc_auc"] == 0.8 and ctx.drift["window_id"] == "w000"


def test_running_retrain_and_cooldown_hold_a_trigger_back(airloop_home):
    settings = _settings(decision__confirm_windows=1, decision__cooldown_hours=6)
    w = _window(0, roc_auc=0.8)
    running = decision.decide(settings, w, retrain_running=True, now=T0)
    assert not running.retrain and running.blocked_by == "running" and running.reason == "performance"
    cooling = decision.decide(settings, w, last_retrain_at=T0 - pd.Timedelta(hours=5), now=T0)
    assert not cooling.retrain and cooling.blocked_by == "cooldown"
    assert cooling.cooldown_until == (T0 + pd.Timedelta(hours=1)).isoformat()
    cooled = decision.decide(settings, w, last_retrain_at=T0 - pd.Timedelta(hours=6), now=T0)
    assert cooled.retrain and cooled.blocked_by is None


def test_the_store_remembers_retrains_even_when_the_caller_does_not(airloop_home):
    settings = _settings(decision__confirm_windows=1, decision__cooldown_hours=6)
    made = []
    for i in range(12):  # two-hour windows, all degraded, the caller never says a retrain ran
        w = _window(i, roc_auc=0.7)
        store.record_window(settings, w.row())
        made.append(decision.decide_and_record(settings, w, now=w.end))
    retrains = [d for d in made if d.retrain]
    assert [d.window_id for d in retrains] == ["w000", "w003", "w006", "w009"]  # one per 6 h
    assert {d.blocked_by for d in made if not d.retrain} == {"cooldown"}
    rows = store.decisions(settings)
    assert list(rows["window_id"]) == [d.window_id for d in made]
    assert list(rows["retrain"]) == [d.retrain for d in made]
    again = decision.decide_and_record(settings, _window(3, roc_auc=0.7), now=T0 + pd.Timedelta(days=3))
    assert again.replayed and again.retrain and again.window_id == "w003"
    assert store.last_retrain(settings) == pd.Timestamp(retrains[-1].decided_at)


def test_store_rows_are_replaced_per_window_and_read_by_time(airloop_home):
    settings = _settings()
    assert store.history(settings).empty and store.last_window_end(settings) is None
    for i in range(30):  # 2 h windows over 2.5 days: three date partitions
        store.record_window(settings, _window(i).row())
    store.record_window(settings, _window(4, share=0.9).row())  # the same window again: replaced
    rows = store.history(settings)
    assert len(rows) == 30 and rows["end"].is_monotonic_increasing
    assert rows.set_index("window_id").loc["w004", "drift_share"] == pytest.approx(0.9)
    day = T0 + pd.Timedelta(days=1)
    assert (store.history(settings, since=day)["end"] >= day).all()
    assert len(store.history(settings, since=day, until=day + pd.Timedelta(hours=6))) == 3
    assert store.last_window_end(settings) == T0 + pd.Timedelta(hours=60)


def test_a_decision_survives_xcom_and_gives_the_train_conf_only_to_retrain(airloop_home):
    import json

    settings = _settings(decision__confirm_windows=1)
    made = decision.decide(settings, _window(0, roc_auc=0.8, share=0.6), now=T0)
    back = decision.Decision.from_dict(json.loads(json.dumps(made.as_dict())))
    assert back.as_dict() == made.as_dict() and back.retrain and back.triggers == made.triggers
    assert decision.retrain_conf(made.as_dict()) == made.conf()
    assert made.conf()["reason"] == "performance"
    calm = decision.decide(settings, _window(1), now=T0)
    assert decision.retrain_conf(calm.as_dict()) is False


def test_the_decide_task_holds_a_retrain_back_while_a_train_run_is_in_flight(airloop_home):
    """``decide_window`` is the DAG task's body: the window from XCom, Airflow's count of train runs."""
    settings = _settings(decision__confirm_windows=1)
    busy = decision.decide_window(settings, _window(0, roc_auc=0.8).as_dict(), running_retrains=2)
    assert not busy["retrain"] and busy["blocked_by"] == "running" and busy["conf"] is None
    free = decision.decide_window(settings, _window(1, roc_auc=0.8).as_dict(), running_retrains=0)
    assert free["retrain"] and free["conf"]["reason"] == "performance"
    assert list(store.decisions(settings)["window_id"]) == ["w000", "w001"]


def test_a_failed_retrain_is_recorded_shown_and_retried_after_its_back_off(airloop_home):
    """The train run a retrain triggered failed: the next windows know it (the decision records
    the run and its state), the summary page says so, the cooldown does not hold the loop for
    hours: after ``failed_retry_hours`` the next triggered window retries, naming the failed run."""
    from tasks.monitoring import pages

    settings = _settings(
        decision__confirm_windows=1, decision__cooldown_hours=6, decision__failed_retry_hours=3
    )
    states = {"monitor__w000": "failed"}
    made = []
    for i in range(4):  # two-hour windows, all degraded
        w = _window(i, roc_auc=0.7)
        w.report_uri = "r"  # (so that the summary page is rewritten after each decision)
        store.record_window(settings, w.row())
        made.append(decision.decide_and_record(settings, w, now=w.end, run_state=states.get))
    first, held, retry, after = made
    assert first.retrain and first.train_run_id == "monitor__w000" and first.last_retrain_run_id is None
    assert not held.retrain and held.blocked_by == "failed_retry" and held.last_retrain_state == "failed"
    assert held.cooldown_until == (pd.Timestamp(first.decided_at) + pd.Timedelta(hours=3)).isoformat()
    assert "the last retrain failed (train run monitor__w000" in held.detail
    assert retry.retrain and retry.retry_of == "monitor__w000" and retry.train_run_id == "monitor__w002"
    assert retry.detail.startswith("retry (performance) after a failed retrain")
    # the retry's own run has no state yet (unknown): the cooldown holds from the retry on
    assert (
        not after.retrain and after.blocked_by == "cooldown" and after.last_retrain_run_id == "monitor__w002"
    )
    # recorded, and read back as it was
    rows = store.decisions(settings).set_index("window_id")
    assert (
        rows.loc["w001", "last_retrain_state"] == "failed" and rows.loc["w002", "retry_of"] == "monitor__w000"
    )
    again = decision.decide_and_record(settings, _window(1, roc_auc=0.7), run_state=states.get)
    assert again.replayed and again.blocked_by == "failed_retry" and again.last_retrain_state == "failed"
    # the summary page: stalled on the failed run while held back, then the retry
    stalled = pages.render_summary(settings, store.history(settings), store.decisions(settings).iloc[:2])
    assert "The last retrain failed: train run monitor__w000 failed" in stalled
    assert "failed_retry_hours" in stalled and "blocked: failed_retry" in stalled
    retried = pages.render_summary(settings, store.history(settings), store.decisions(settings).iloc[:3])
    assert "retrain: performance (retry)" in retried and "window w002 retried it" in retried


def test_a_retrain_that_never_started_or_is_still_queued_is_known_from_airflow(airloop_home):
    settings = _settings(
        decision__confirm_windows=1, decision__cooldown_hours=6, decision__failed_retry_hours=0
    )
    from tasks.monitoring.retrain import LastRetrain

    w0, w1 = _window(0, roc_auc=0.7), _window(1, roc_auc=0.7)
    t0 = pd.Timestamp(w0.end)
    store.record_window(settings, w0.row())
    assert decision.decide_and_record(settings, w0, now=w0.end).retrain
    queued = decision.decide(
        settings,
        w1,
        now=w1.end,
        last_retrain_at=t0,
        last_retrain=LastRetrain("monitor__w000", t0, "queued"),
    )
    assert queued.blocked_by == "running"  # Airflow's count may miss it; its own state does not
    missing = decision.decide_and_record(settings, w1, now=w1.end, run_state=lambda run_id: "missing")
    assert missing.retrain and missing.retry_of == "monitor__w000" and missing.last_retrain_state == "missing"
    succeeded = decision.decide(
        settings, w1, now=w1.end, last_retrain_at=t0, last_retrain=LastRetrain("r", t0, "success")
    )
    assert succeeded.blocked_by == "cooldown"  # a retrain that worked: the cooldown holds as before
    # a retrain started since the failed one (the weekly run, by hand): the cooldown applies again
    later = decision.decide(
        settings,
        w1,
        now=w1.end,
        last_retrain_at=pd.Timestamp(w1.end) - pd.Timedelta(minutes=5),
        last_retrain=LastRetrain("monitor__w000", t0, "failed"),
    )
    assert later.blocked_by == "cooldown"
