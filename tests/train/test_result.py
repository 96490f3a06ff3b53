"""The training result across task boundaries, and the train DAG's rules, without Airflow or a
tracking server: the typed result's JSON round trip, the UI links, the summary table, the publish
step (skip naming every failed check; the asset event's extra; the model card in the reports)
and the training-set step's skip."""

from __future__ import annotations

import json
import math

import pytest

from tasks.common import reports
from tasks.common.outcomes import Skip
from tasks.training import dataset, publish
from tasks.training.context import RunContext
from tasks.training.gate import Check
from tasks.training.metrics import Metrics
from tasks.training.result import CandidateSummary, ChampionSummary, TrainingResult
from tasks.training.summary import summary_table

NAN = float("nan")


def _candidate(name: str, passed: bool) -> CandidateSummary:
    checks = [
        Check("roc_auc", 0.91 if passed else 0.5, ">=", 0.85, passed),
        Check("roc_auc_vs_champion", None, ">=", None, None, "no champion yet"),
    ]
    return CandidateSummary(
        name=name,
        family="xgboost",
        params={"max_depth": 4},
        run_id=f"run-{name}",
        device="cpu",
        train_seconds=1.25,
        best_iteration=17,
        metrics={"roc_auc": 0.91, "pr_auc": 0.6, "log_loss": 0.05, "ece": 0.01, "brier": 0.02}
        | {"tpr_gap": NAN, "latency_ms_per_row": 0.002},
        passed=passed,
        failed_checks=[] if passed else ["roc_auc"],
        reasons=[] if passed else [checks[0].line],
        checks=checks,
    )


def _champion_metrics() -> Metrics:
    segments = {
        "north": {"rows": 10, "positives": 0, "tpr": NAN},
        "south": {"rows": 90, "positives": 5, "tpr": 0.8},
    }
    return Metrics(100, 5, 0.9, 0.5, 0.07, 0.02, 0.03, None, "region", segments, 0.0, ["south"])


def _result(registered: bool, **over) -> TrainingResult:
    base = "http://mlflow:5000"
    cands = [_candidate("a", registered), _candidate("b", False)]
    values = dict(
        status="registered" if registered else "rejected",
        mlflow_run_id="parent",
        experiment_id="1",
        tracking_uri=base,
        run_url=f"{base}/#/experiments/1/runs/parent",
        registered_model="fraud",
        version="3" if registered else None,
        aliases=["challenger"] if registered else [],
        model_uri="models:/fraud/3" if registered else None,
        model_sha256="ab" * 32 if registered else None,
        model_card_uri=None,
        model_card_url=f"{base}/get-artifact?path=model_card.html&run_uuid=run-a" if registered else None,
        best_candidate="a" if registered else None,
        best_run_id="run-a" if registered else None,
        reasons=[] if registered else [f"{c.name}: {r}" for c in cands for r in c.reasons],
        candidates=cands,
        champion=ChampionSummary("2", "", _champion_metrics()),
        data_version={
            "uri": "file:///ts.parquet",
            "sha256": "cd" * 32,
            "feature_service": "fraud_features_v1",
        },
        split={"train_rows": 60, "holdout_rows": 20},
        context=RunContext("train", "manual__1", "drift", {"share": 0.4}),
        git_commit="0" * 40,
        device="cpu",
        seconds=12.5,
    )
    return TrainingResult(**(values | over))


@pytest.mark.parametrize("registered", [True, False])
def test_the_result_survives_a_json_round_trip(registered):
    result = _result(registered)
    data = result.as_dict()
    text = json.dumps(data, allow_nan=False)  # NaN became null: every JSON reader accepts it
    back = TrainingResult.from_dict(json.loads(text))
    assert back.as_dict() == data
    assert back.candidates[1].checks[0] == Check("roc_auc", 0.5, ">=", 0.85, False)
    assert math.isnan(back.champion.metrics.segments["north"]["tpr"])
    assert back.champion.metrics.segments["south"] == {"rows": 90, "positives": 5, "tpr": 0.8}
    assert back.context == result.context and back.registered is registered
    assert list(data)[:3] == ["status", "mlflow_run_id", "experiment_id"] and list(data)[-1] == "seconds"


def test_from_dict_refuses_what_is_not_a_training_result():
    data = _result(True).as_dict()
    with pytest.raises(ValueError, match="not a training result"):
        TrainingResult.from_dict(data | {"status": "maybe"})
    with pytest.raises(KeyError):
        TrainingResult.from_dict({k: v for k, v in data.items() if k != "candidates"})
    with pytest.raises(TypeError):
        TrainingResult.from_dict({"status": "registered", "candidates": [], "champion": {}, "context": {}})
    # a key a newer entrypoint adds is ignored, not an error
    assert TrainingResult.from_dict(data | {"new_key": 1}).as_dict() == data


def test_links_point_at_the_address_browsers_reach():
    links = _result(True).public_links("https://mlflow.example/")
    assert links == {
        "run": "https://mlflow.example/#/experiments/1/runs/parent",
        "model_card": "https://mlflow.example/get-artifact?path=model_card.html&run_uuid=run-a",
    }
    assert _result(False).public_links("https://mlflow.example")["model_card"] == ""


def test_summary_table_names_each_candidate_the_champion_and_the_decision():
    lines = summary_table(_result(False))
    assert any(line.startswith("a ") and "FAIL roc_auc" in line for line in lines)
    assert any(line.startswith("champion v2") for line in lines)
    assert "NOTHING REGISTERED: no candidate passed the gate" in lines
    assert "  a: FAIL  roc_auc: 0.5000 >= 0.8500" in lines
    row = next(line for line in lines if line.startswith("b "))
    assert row.split()[7] == "-"  # the TPR gap that could not be computed
    registered = summary_table(_result(True))
    assert any(line.startswith("REGISTERED fraud version 3 (challenger) from a") for line in registered)


def test_publish_skips_naming_every_failed_check_when_nothing_was_registered(settings):
    with pytest.raises(Skip) as skipped:
        publish.announce(settings, _result(False))
    message = str(skipped.value)
    assert message.startswith("the gate rejected every candidate; nothing registered")
    assert "- a: FAIL  roc_auc" in message and "- b: FAIL  roc_auc" in message
    assert reports.list_reports(settings, "model_cards") == []


def test_publish_announces_the_version_and_lists_its_model_card(settings, tmp_path):
    card = tmp_path / "model_card.html"
    card.write_text("<!doctype html><h1>Model card: fraud</h1>")
    extra = publish.announce(settings, _result(True, model_card_uri=card.as_uri()))
    assert extra == {
        "model": "fraud",
        "version": "3",
        "aliases": ["challenger"],
        "model_uri": "models:/fraud/3",
        "model_sha256": "ab" * 32,
        "data_sha256": "cd" * 32,
        "feature_service": "fraud_features_v1",
        "reason": "drift",
        "mlflow_run_id": "parent",
        "model_card_report": "/airloop/reports/model_cards/fraud-v3",
    }
    [listed] = reports.list_reports(settings, "model_cards")
    assert listed.model_version == "3" and listed.title == "fraud v3 (a)"
    assert reports.read_report(settings, "model_cards", listed.name) == card.read_text()


def test_no_labelled_data_is_nothing_to_train_on(settings):
    with pytest.raises(Skip, match=r"^nothing to train on: the curated dataset at .* is empty"):
        dataset.build_or_skip(settings)
