"""The monitor on simulated traffic: stable, concept drift, covariate drift, persistent drift.

Every window runs through the real path (inference log -> Evidently -> report -> store ->
decision), against the reference of a champion registered in a real MLflow server.
"""

from __future__ import annotations

import itertools
import json
import os
import re

import pandas as pd
import pytest

from tasks.common import storage
from tasks.monitoring import cli, decision, pages, reading, sensing, store, window
from tasks.monitoring.results import Window, WindowResult
from tasks.monitoring.sampling import dkw_epsilon
from tests.monitoring.conftest import COVARIATE, SHADOW_VERSION, STABLE


def _judged(p):
    return [r for r in p.results if r.drift.judged]


def test_stable_traffic_never_retrains_across_many_windows(stable_pass):
    results, decisions = stable_pass.results, stable_pass.decisions["stable"]
    judged = _judged(stable_pass)
    assert len(results) >= 8 and len(judged) >= 8
    assert not [d.detail for d in decisions if d.triggered or d.retrain]
    cfg = stable_pass.settings["stable"].monitor
    assert max(r.drift.share for r in judged) < cfg.drift.share_threshold
    assert not any(r.drift.prediction_drift for r in judged)
    perf = [r.performance for r in results if r.performance.judged]
    assert len(perf) >= 6 and not any(p.is_degraded for p in perf)
    # the shadow mirror (another version, inverted scores) is not live traffic: left out
    for r in results:
        assert set(r.versions) == {r.model_version} != {SHADOW_VERSION}
        assert r.scored_rows == r.rows >= cfg.min_new_predictions


def test_concept_drift_retrains_once_for_performance_and_is_invisible_to_drift(concept_pass):
    decisions = concept_pass.decisions["concept"]
    retrains = concept_pass.retrains("concept")
    assert len(retrains) == 1, [d.detail for d in decisions]
    made = retrains[0]
    assert made.reason == "performance"
    assert made.triggers and all(t.startswith("performance: ") for t in made.triggers)
    assert any(t.startswith("performance: roc_auc") for t in made.triggers)
    numbers = made.conf()["drift"]
    assert numbers["roc_auc"] < numbers["holdout_roc_auc"] - 0.05
    # the inputs did not move: no window saw data drift or prediction drift
    threshold = concept_pass.settings["concept"].monitor.drift.share_threshold
    assert all(r.drift.share < threshold and not r.drift.prediction_drift for r in _judged(concept_pass))
    # later windows still degraded, held back by the cooldown
    after = decisions[decisions.index(made) + 1 :]
    assert after and all(d.blocked_by == "cooldown" and d.reason == "performance" for d in after)


def test_covariate_drift_retrains_once_for_drift(covariate_pass):
    decisions = covariate_pass.decisions["covariate"]
    retrains = covariate_pass.retrains("covariate")
    assert len(retrains) == 1, [d.detail for d in decisions]
    made = retrains[0]
    assert made.reason == "drift"
    assert any(t.startswith("data drift: ") for t in made.triggers)
    conf = made.conf()
    assert conf["reason"] == "drift"
    assert conf["drift"]["drift_share"] >= conf["drift"]["share_threshold"]
    assert {"amount", "channel", "region"} <= set(conf["drift"]["drifted_columns"])
    # one drifted window is not enough: the first is pending, the retrain comes with the second
    first = next(i for i, d in enumerate(decisions) if d.pending or d.triggers)
    assert decisions[first].pending and not decisions[first].retrain
    assert "2 needed" in decisions[first].pending[-1]
    assert decisions[first + 1] is made
    # performance held up: covariate drift is seen in the inputs, not (yet) in the labels
    assert not any(r.performance.is_degraded for r in covariate_pass.results)


def test_persistent_drift_retrains_at_most_once_per_cooldown(covariate_pass):
    cfg = covariate_pass.settings["storm"].monitor.decision
    decisions = covariate_pass.decisions["storm"]
    drifted = [d for d in decisions if d.triggered]
    retrains = covariate_pass.retrains("storm")
    assert len(drifted) >= 4 and 1 <= len(retrains) < len(drifted)
    times = [pd.Timestamp(d.decided_at) for d in retrains]
    assert all(b - a >= pd.Timedelta(hours=cfg.cooldown_hours) for a, b in itertools.pairwise(times))
    span = COVARIATE[1] - COVARIATE[0]
    assert len(retrains) <= 1 + span // pd.Timedelta(hours=cfg.cooldown_hours)
    blocked = [d for d in drifted if not d.retrain]
    assert blocked and {d.blocked_by for d in blocked} <= {"cooldown", "running"}
    for d in blocked:
        assert d.detail.startswith("drift would retrain, but")


def test_every_decision_is_recorded_with_its_reason_and_numbers(covariate_pass):
    settings = covariate_pass.settings["covariate"]
    made = covariate_pass.decisions["covariate"]
    rows = store.decisions(settings)
    assert list(rows["window_id"]) == [d.window_id for d in made]
    assert list(rows["retrain"]) == [d.retrain for d in made]
    assert list(rows["reason"]) == [d.reason for d in made]
    retrain = rows[rows["retrain"]].iloc[0]
    assert retrain["reason"] == "drift" and "data drift" in retrain["detail"]
    numbers = json.loads(retrain["numbers"])
    assert numbers["drift_share"] >= numbers["share_threshold"] and numbers["rows"] > 0
    assert store.last_retrain(settings) == pd.Timestamp(retrain["decided_at"])
    # deciding a window again (a retried task, its result through XCom) returns the recorded decision
    xcom = json.loads(json.dumps(covariate_pass.results[-1].as_dict()))
    result = WindowResult.from_dict(xcom)
    again = decision.decide_and_record(settings, result, last_retrain_at=None, now=pd.Timestamp(result.end))
    assert again.replayed and again.retrain == made[-1].retrain and again.detail == made[-1].detail
    assert len(store.decisions(settings)) == len(made)


def test_metrics_are_stored_per_window_and_queryable_over_time(stable_pass):
    settings = stable_pass.settings["stable"]
    history = store.history(settings)
    assert list(history["window_id"]) == [r.window_id for r in stable_pass.results]
    assert history["end"].is_monotonic_increasing
    day_two = STABLE[0] + pd.Timedelta(days=1)
    later = store.history(settings, since=day_two)
    assert 0 < len(later) < len(history) and (later["end"] >= day_two).all()
    earlier = store.history(settings, until=day_two)
    assert len(earlier) + len(later) == len(history)
    assert store.last_window_end(settings) == pd.Timestamp(stable_pass.results[-1].end)
    row = history.iloc[-1]
    for col in ("drift_share", "prediction_score", "roc_auc", "baseline_roc_auc", "recall", "precision"):
        assert pd.notna(row[col]), col
    scores = json.loads(row["column_scores"])
    assert set(scores) == {c.column for c in stable_pass.results[-1].drift.tested}
    # the next window starts where the last one ended
    nxt = sensing.next_window(settings, end=pd.Timestamp(stable_pass.results[-1].end) + pd.Timedelta(hours=2))
    assert nxt.start == pd.Timestamp(stable_pass.results[-1].end)


def test_html_report_is_written_with_its_plots_and_the_summary_links_it(covariate_pass):
    settings = covariate_pass.settings["covariate"]
    result = next(r for r in covariate_pass.results if r.drift.data_drift)
    assert result.report_uri == pages.report_uri(settings, result.window_id)
    page = storage.read_bytes(result.report_uri).decode()
    assert page.lstrip().lower().startswith("<!doctype html") and len(page) > 100_000
    for col in result.drift.tested:
        assert col.column in page
    assert len(re.findall(r'"type": "big_graph"', page)) >= len(result.drift.tested)
    # above Evidently's report: realised vs estimated performance, with the estimate's band
    top = page.index("Performance: realised and estimated")
    body = page.index("<body")
    first = page.index(">", body) + 1
    assert page.startswith("<div", first) and top < page.index("</div>", first)  # the body's first element
    section = page[top : page.index("</div>", top)]
    assert f"realised ({result.performance.live.rows} labels)" in section
    assert f"estimated ({result.estimate['rows']} scores)" in section and "hold-out, estimated" in section
    assert section.count("<circle") >= 9 and "stroke-width='2'" in section  # 3 metrics; bands drawn
    numbers = json.loads(storage.read_bytes(pages.numbers_uri(settings, result.window_id)))
    assert numbers["window_id"] == result.window_id and numbers["drift"]["data_drift"] is True
    # listed in the reports index the Airflow UI plugin serves (with the summary page)
    from tasks.common import reports

    listed = {r.name: r for r in reports.list_reports(settings, settings.monitor.reports_dir)}
    entry = listed[result.window_id]
    assert entry.model_version == result.model_version and entry.meta["data_drift"] is True
    assert "data drift" in entry.title and "index" in listed

    summary = storage.read_bytes(result.summary_uri).decode()
    assert summary.count("<svg") == 3 and "<polyline" in summary
    assert f"href='{result.window_id}'" in summary  # relative to .../reports/monitoring/index
    assert "retrain: drift" in summary and "blocked: cooldown" in summary


def test_reference_is_the_champion_training_set_and_its_logged_holdout(world, champion):
    from mlflow import MlflowClient

    from tasks.common import registry
    from tasks.monitoring.performance import threshold_for
    from tasks.monitoring.reference import champion_reference

    settings = world.settings()
    mc = MlflowClient(tracking_uri=world.tracking_uri, registry_uri=world.tracking_uri)
    version = mc.get_model_version_by_alias(settings.mlflow.registered_model, "champion")
    assert champion.model_version == str(version.version) == world.version
    assert champion.training_set_uri == version.tags[registry.TAG_TRAINING_SET]
    assert champion.data_sha256 == version.tags[registry.TAG_DATA_SHA256]
    logged = mc.get_run(version.run_id).data.metrics
    base = champion.baseline(threshold_for(settings))
    assert base.roc_auc == pytest.approx(logged["holdout_roc_auc"], abs=1e-9)
    assert base.positives == logged["holdout_positives"]
    assert champion.rows == int(version.tags[registry.TAG_DATA_ROWS]) == len(champion.frame)
    assert champion.frame["score"].notna().sum() == base.rows
    cached = champion_reference(settings, world.tracking_uri)
    pd.testing.assert_frame_equal(cached.frame, champion.frame)
    assert cached.created_at == champion.created_at


def test_a_large_window_is_sampled_with_its_error_bound_recorded(world, champion):
    settings = world.settings("sampled", monitor__drift__max_rows=1000)
    span = Window.of(*COVARIATE)
    data = reading.load_window(settings, span, champion)
    assert len(data.sample) == 1000 < data.rows
    assert data.sample["score"].notna().all()
    result, _ = window.analyze(settings, data, champion)
    cfg = settings.monitor.drift
    expected = dkw_epsilon(1000, data.rows, cfg.error_confidence) + dkw_epsilon(
        len(champion.frame), champion.rows, cfg.error_confidence
    )
    assert result.drift.error_bound == pytest.approx(expected) and expected > 0
    assert result.drift.rows == data.rows and result.drift.sample_rows == 1000
    assert result.drift.data_drift  # the sample still sees the covariate drift
    assert result.performance.live.rows > 1000  # performance uses every labelled row, unsampled


def test_the_sensor_count_is_live_predictions_only(world, stable_pass):
    """Neither the shadow mirror nor the load test's synthetic requests (on the champion's route)
    count, in the sensor or in the window."""
    settings = stable_pass.settings["stable"]
    first = stable_pass.results[0]
    assert sensing.count_predictions(settings, first.start, first.end) == first.rows
    log = world.predictions
    start, end = STABLE[0] + pd.Timedelta(minutes=30), STABLE[1]
    inside = (log["timestamp"] >= start) & (log["timestamp"] < end)
    live = world.live()
    live = live[(live["timestamp"] >= start) & (live["timestamp"] < end)]
    champion_route = inside & (log["route"] == "champion")
    assert sensing.count_predictions(settings, start, end) == len(live) < champion_route.sum() < inside.sum()
    synthetic = [n for r in stable_pass.results for n in r.notes if "synthetic predictions" in n]
    assert len(synthetic) == len(stable_pass.results), "every window says what it left out"
    assert sensing.count_predictions(settings, COVARIATE[1], COVARIATE[1] + pd.Timedelta(days=1)) == 0


def test_the_module_entrypoint_runs_a_window_and_decides(world, champion, monkeypatch, capsys):
    for name in [k for k in os.environ if k.startswith("AIRLOOP")]:
        monkeypatch.delenv(name)
    env = {**world.env, "AIRLOOP__MONITOR__STORE_DIR": "cli", "AIRLOOP__MONITOR__REPORTS_DIR": "cli"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world.tracking_uri)
    end = COVARIATE[0] + pd.Timedelta(hours=14)
    args = ["--start", (end - pd.Timedelta(hours=4)).isoformat(), "--end", end.isoformat(), "--decide"]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["window"]["window_id"] == "20260115T100000Z-20260115T140000Z"
    assert out["window"]["model_version"] == champion.model_version and out["window"]["drift"]["data_drift"]
    assert out["decision"]["reason"] == "none" and out["decision"]["pending"]  # first drifted window
    assert cli.main(["--end", (end + pd.Timedelta(hours=3)).isoformat(), "--decide"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["window"]["start"] == end.isoformat()  # continues from the last recorded window
    assert again["decision"]["retrain"] and again["decision"]["conf"]["reason"] == "drift"
