"""The gate against a real MLflow server: sabotaged candidates are rejected for the right reason
and leave the registry untouched; a passing one is registered with its lineage, aliases, model
card and a SHA-256 that matches the files serving downloads.

Sabotage goes through the real path: a shuffled-label training set, the ``prior`` family (a
constant predictor), and candidates whose trained model is wrapped to score worse overall or for
one region only; each is trained, evaluated and gated by ``tasks.training.run.run`` like any other.
A champion whose files no longer match their hash is refused and reported as not comparable.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.common import registry, storage
from tasks.common.secrets import model_signing_key
from tasks.training import dataset
from tasks.training.candidates import Candidate, FitContext, plan
from tasks.training.families.base import FraudModel, sigmoid
from tasks.training.run import run
from tests.services import mlflow_login

RELAXED = {
    "gate__min_roc_auc": "0.5",
    "gate__min_pr_auc": "0.01",
    "gate__max_log_loss": "1.0",
    "gate__max_ece": "0.5",
}
"""Absolute thresholds out of the way, so a sabotaged model can fail only the check under test."""

CONTEXT = {
    "dag_id": "train",
    "run_id": "manual__2026-01-02T00:00:00+00:00",
    "reason": "drift: amount PSI 0.31",
    "drift": {"amount": 0.31},
}


def _versions(client, name: str) -> list[Any]:
    return list(client.search_model_versions(f"name='{name}'"))


def _wrapped(model: FraudModel, cls: type[FraudModel]) -> FraudModel:
    return cls(
        spec=model.spec,
        encoder=model.encoder,
        scorer=model.scorer,
        calibration=model.calibration,
        family=model.family,
        params=model.params,
    )


class NoisyModel(FraudModel):
    """The trained model with noise on its logits: clearly worse than the same model unspoiled."""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        p = np.clip(super().predict_proba(frame), 1e-9, 1 - 1e-9)
        noise = np.random.default_rng(7).normal(0.0, 2.5, len(p))
        return sigmoid(np.log(p / (1 - p)) + noise)


class BlindSpotModel(FraudModel):
    """The trained model, except that it hardly ever flags fraud in one region."""

    region = "north"

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        p = super().predict_proba(frame)
        return np.where(frame["region"].to_numpy() == self.region, p * 0.01, p)


@dataclass
class Sabotaged(Candidate):
    """A real XGBoost candidate whose fitted model is swapped for a spoiled copy."""

    spoil: type[FraudModel] = FraudModel

    def fit(self, ctx: FitContext):
        fitted = Candidate(self.name, "xgboost", self.params).fit(ctx)
        fitted.model = _wrapped(fitted.model, self.spoil)
        return fitted


def _xgb_params(settings) -> dict[str, Any]:
    return next(c for c in plan(settings) if c.family == "xgboost").params


@pytest.fixture(scope="module")
def first(world):
    """The first model ever: XGBoost, MLP and the prior baseline trained in one run."""
    settings = world.settings(train__families="[xgboost, mlp, prior]")
    result = run(
        settings, world.training_set_uri, tracking_uri=world.tracking_uri, run_context=json.dumps(CONTEXT)
    )
    return settings, result


def test_trained_models_beat_the_baselines(first):
    _, result = first
    by_family = {c.family: c for c in result.candidates}
    prior, xgb, mlp = (by_family["prior"].metrics, by_family["xgboost"].metrics, by_family["mlp"].metrics)
    base_rate = result.split["holdout_positives"] / result.split["holdout_rows"]
    for trained in (xgb, mlp):
        assert trained["roc_auc"] > 0.85, trained
        assert trained["roc_auc"] > prior["roc_auc"] + 0.3
        assert trained["pr_auc"] > 5 * base_rate
        assert trained["log_loss"] < prior["log_loss"]
    assert by_family["prior"].passed is False
    assert {"roc_auc", "pr_auc"} <= set(by_family["prior"].failed_checks)


def test_first_passing_model_is_registered_as_challenger_and_champion(first, world, mlflow_client):
    settings, result = first
    name = settings.mlflow.registered_model
    assert result.status == "registered", result.reasons
    assert result.version == "1" and sorted(result.aliases) == ["challenger", "champion"]
    best = next(c for c in result.candidates if c.name == result.best_candidate)
    assert best.passed and best.family in ("xgboost", "mlp")
    assert [v.version for v in _versions(mlflow_client, name)] == ["1"]
    for alias in ("challenger", "champion"):
        assert mlflow_client.get_model_version_by_alias(name, alias).version == "1"


def test_registered_version_carries_every_lineage_tag(first, world, mlflow_client):
    settings, result = first
    version = mlflow_client.get_model_version(settings.mlflow.registered_model, result.version)
    tags = version.tags
    assert tags[registry.TAG_DAG_ID] == "train"
    assert tags[registry.TAG_DAG_RUN_ID] == CONTEXT["run_id"]
    assert tags[registry.TAG_REASON] == CONTEXT["reason"]
    assert tags[registry.TAG_DATA_SHA256] == world.data_sha256
    assert tags[registry.TAG_TRAINING_SET] == world.training_set_uri
    assert tags[registry.TAG_DATA_PARTITIONS] == "event_date=2026-01-01..event_date=2026-01-02 (2 partitions)"
    assert tags[registry.TAG_FEATURE_SERVICE] == settings.feast.service == "fraud_features_v1"
    assert tags[registry.TAG_FEATURES].split(",") == result.data_version["features"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", tags[registry.TAG_GIT_COMMIT])
    assert tags[registry.TAG_FAMILY] == next(
        c.family for c in result.candidates if c.name == result.best_candidate
    )
    assert tags[registry.TAG_MODEL_SHA256] == result.model_sha256
    assert tags[registry.TAG_RUN_ID] == version.run_id == result.best_run_id
    assert "ROC AUC" in version.description
    # the run itself carries the data version and the code version too
    parent = mlflow_client.get_run(result.mlflow_run_id)
    assert parent.data.params["data_sha256"] == world.data_sha256
    assert parent.data.params["feature_service"] == "fraud_features_v1"
    assert parent.data.tags["git_commit"] == tags[registry.TAG_GIT_COMMIT]
    assert parent.data.tags["gate.decision"] == "registered"
    data_version = mlflow_client.download_artifacts(result.mlflow_run_id, "data_version.json")
    with open(data_version) as fh:
        assert json.load(fh)["partitions"] == result.data_version["partitions"]
    # per-round / per-epoch curves are in the candidates' runs
    for cand in result.candidates:
        keys = mlflow_client.get_run(cand.run_id).data.metrics
        assert "holdout_roc_auc" in keys
        if cand.family == "xgboost":
            history = mlflow_client.get_metric_history(cand.run_id, "valid_logloss")
            assert len(history) > 5 and [m.step for m in history][:3] == [0, 1, 2]
        if cand.family == "mlp":
            assert len(mlflow_client.get_metric_history(cand.run_id, "valid_loss")) >= 3


def test_sha256_tag_matches_the_downloaded_artifact(first, world, tmp_path):
    import mlflow

    settings, result = first
    name = settings.mlflow.registered_model
    local = mlflow.artifacts.download_artifacts(
        f"models:/{name}@challenger", dst_path=str(tmp_path / "a"), tracking_uri=world.tracking_uri
    )
    assert registry.artifact_sha256(local) == result.model_sha256
    verified, version = registry.fetch_verified(
        world.tracking_uri, name, "challenger", tmp_path / "b", key=model_signing_key(settings)
    )
    assert version.version == result.version
    # a byte changed anywhere in the model is caught
    (verified / "MLmodel").write_text((verified / "MLmodel").read_text() + "\n# tampered\n")
    assert registry.artifact_sha256(verified) != result.model_sha256


def test_model_card_is_logged_with_metrics_and_plots(first, world, mlflow_client):
    import requests

    settings, result = first
    html = requests.get(result.model_card_url, auth=mlflow_login(), timeout=30).text
    assert html.startswith("<!doctype html>")
    assert (
        len(
            re.findall(
                r'<img alt="(roc|pr|calibration|importance|fairness)" src="data:image/png;base64,', html
            )
        )
        == 5
    )
    assert result.best_candidate in html and world.data_sha256 in html
    assert "fairness_tpr_gap" in html and "Fairness: recall by region" in html
    tag = mlflow_client.get_model_version(settings.mlflow.registered_model, result.version).tags["model_card"]
    assert tag == result.model_card_uri and tag.endswith("/model_card.html")


def test_pyfunc_loads_by_alias_and_scores_unknown_categories_and_missing_values(first, world):
    import mlflow

    settings, result = first
    model = mlflow.pyfunc.load_model(f"models:/{settings.mlflow.registered_model}@challenger")
    columns = model.metadata.get_input_schema().input_names()
    assert columns == [
        *result.data_version["features"],
        "amount",
        "merchant_category",
        "channel",
        "region",
    ]

    frame, _ = dataset.read(settings, world.training_set_uri)
    holdout = frame[frame.event_timestamp >= pd.Timestamp(result.split["holdout_start"])]
    from sklearn.metrics import roc_auc_score

    p = model.predict(holdout[columns])
    best = next(c for c in result.candidates if c.name == result.best_candidate)
    assert roc_auc_score(holdout.is_fraud, p) == pytest.approx(best.metrics["roc_auc"], abs=1e-9)

    odd = holdout[columns].head(4).copy().reset_index(drop=True)
    odd.loc[0, "merchant_category"] = "space_travel"  # never seen in training
    odd.loc[1, ["channel", "region"]] = None
    odd.loc[2, result.data_version["features"]] = np.nan  # a brand-new customer and merchant
    odd.loc[3, "region"] = "atlantis"
    scores = model.predict(odd)
    assert scores.shape == (4,) and np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 1))

    # Serving scores plain typed arrays (FraudModel.score through LoadedModel.inputs), not frames:
    # same probabilities, to the bit, for ordinary and odd rows alike.
    from tasks.serving.models import LoadedModel
    from tasks.training.families.base import model_input

    python_model = model.unwrap_python_model()
    numeric = [*python_model.spec.features, *python_model.spec.raw_numeric]
    loaded = LoadedModel("m", "1", "test", "", None, None, columns, numeric, Path("."), python_model.score)
    for rows in (odd, holdout[columns].head(300).reset_index(drop=True)):
        plain = {c: rows[c].tolist() for c in columns}  # what the ingress hands the model slot
        np.testing.assert_array_equal(loaded.predict(plain), model.predict(rows))
        typed = model_input(rows, python_model.spec)
        np.testing.assert_array_equal(python_model.score(typed), model.predict(rows))


def test_constant_predictor_is_rejected_and_nothing_registered(world, mlflow_client):
    settings = world.settings(train__families="[prior]")
    result = run(settings, world.training_set_uri, tracking_uri=world.tracking_uri, reason="sabotage")
    assert result.status == "rejected" and result.version is None
    assert {"roc_auc", "pr_auc"} <= set(result.candidates[0].failed_checks)
    assert any(r.startswith("prior: FAIL  roc_auc: 0.5000 >= 0.8500") for r in result.reasons)
    assert _versions(mlflow_client, settings.mlflow.registered_model) == []
    parent = mlflow_client.get_run(result.mlflow_run_id)
    assert parent.data.tags["gate.decision"] == "rejected"


def test_shuffled_labels_are_rejected_and_nothing_registered(world, mlflow_client):
    settings = world.settings(train__families="[xgboost]")
    frame, _ = dataset.read(settings, world.training_set_uri)
    frame["is_fraud"] = np.random.default_rng(0).permutation(frame["is_fraud"].to_numpy())
    uri = storage.join(world.home.as_uri(), "data", "shuffled.parquet")
    storage.write_bytes(uri, dataset.to_parquet_bytes(frame))

    result = run(settings, uri, tracking_uri=world.tracking_uri, reason="sabotage")
    assert result.status == "rejected"
    (cand,) = result.candidates
    assert cand.metrics["roc_auc"] < 0.7
    assert {"roc_auc", "pr_auc"} <= set(cand.failed_checks)
    assert _versions(mlflow_client, settings.mlflow.registered_model) == []


def test_champion_regressing_model_is_rejected_then_a_good_one_becomes_challenger_only(world, mlflow_client):
    name = f"fraud-champ-{world.home.name[-6:]}"
    settings = world.settings(name, train__families="[xgboost]")
    params = _xgb_params(settings)
    champion = run(settings, world.training_set_uri, tracking_uri=world.tracking_uri, reason="first")
    assert champion.status == "registered" and "champion" in champion.aliases

    relaxed = world.settings(name, **RELAXED)
    noisy = Sabotaged("noisy-xgboost", "xgboost", params, spoil=NoisyModel)
    result = run(
        relaxed,
        world.training_set_uri,
        tracking_uri=world.tracking_uri,
        reason="sabotage",
        candidates=[noisy],
    )
    assert result.status == "rejected"
    assert result.champion.version == champion.version and result.champion.metrics is not None
    (cand,) = result.candidates
    overall, per_segment = cand.failed_checks[:2], cand.failed_checks[2:]
    assert overall == ["roc_auc_vs_champion", "pr_auc_vs_champion"], cand.reasons
    # the segment gate sees the same regression, segment by segment, and only against the champion
    assert all(c.startswith("segment_") and "_vs_champion[" in c for c in per_segment), cand.reasons
    assert cand.metrics["roc_auc"] > 0.5  # good enough on its own: only the comparison fails
    assert [v.version for v in _versions(mlflow_client, name)] == ["1"]

    again = run(
        settings,
        world.training_set_uri,
        tracking_uri=world.tracking_uri,
        reason="retrain",
        candidates=[Candidate("xgboost", "xgboost", params)],
    )
    assert again.status == "registered" and again.version == "2"
    assert again.aliases == ["challenger"]
    checks = {c.name: c for c in again.candidates[0].checks}
    assert checks["roc_auc_vs_champion"].passed is True
    assert checks["roc_auc_vs_champion"].value == pytest.approx(0.0, abs=1e-12)  # deterministic
    assert mlflow_client.get_model_version_by_alias(name, "champion").version == "1"
    assert mlflow_client.get_model_version_by_alias(name, "challenger").version == "2"


def test_model_with_a_fairness_gap_is_rejected_and_nothing_registered(world, mlflow_client):
    settings = world.settings(
        train__families="[xgboost]",
        gate__fairness__threshold="0.1",
        gate__fairness__min_positives="10",
        **RELAXED,
    )
    params = _xgb_params(settings)
    fair = Candidate("xgboost", "xgboost", params)
    blind = Sabotaged("blind-north", "xgboost", params, spoil=BlindSpotModel)
    result = run(
        settings,
        world.training_set_uri,
        tracking_uri=world.tracking_uri,
        reason="sabotage",
        candidates=[blind],
    )
    assert result.status == "rejected"
    (cand,) = result.candidates
    assert cand.failed_checks == ["fairness_tpr_gap"], cand.reasons
    gap = next(c for c in cand.checks if c.name == "fairness_tpr_gap")
    assert gap.value > settings.gate.fairness.max_tpr_gap and "north 0.00" in gap.detail
    assert _versions(mlflow_client, settings.mlflow.registered_model) == []

    # the same model without the blind spot passes the same gate
    control = run(settings, world.training_set_uri, tracking_uri=world.tracking_uri, candidates=[fair])
    assert control.status == "registered", control.reasons


def _artifact_dir(world, client, name: str, version: str) -> Path:
    """Where the local MLflow server keeps a version's files (``--artifacts-destination``)."""
    uri = client.get_model_version_download_uri(name, version)
    assert uri.startswith("mlflow-artifacts:/"), uri
    return world.home / "data" / "mlflow" / "artifacts" / uri.removeprefix("mlflow-artifacts:/").lstrip("/")


def test_a_champion_whose_files_do_not_match_their_hash_is_not_comparable(world, mlflow_client):
    # the prior family passes a gate this lax, so a champion is registered in a second
    name = f"fraud-tampered-{world.home.name[-6:]}"
    no_segment_floors = {
        f"gate__segments__columns__{col}__{rule}": "0"
        for col in ("region", "channel", "merchant_category")
        for rule in ("min_roc_auc", "min_pr_auc", "min_recall")
    }
    lax = {**RELAXED, "gate__min_roc_auc": "0.4", **no_segment_floors}
    settings = world.settings(name, train__families="[prior]", **lax)
    first = run(settings, world.training_set_uri, tracking_uri=world.tracking_uri, reason="first")
    assert first.status == "registered" and "champion" in first.aliases, first.reasons
    files = _artifact_dir(world, mlflow_client, name, first.version)
    model_file = files / "MLmodel"
    model_file.write_text(model_file.read_text() + "\n# tampered\n")

    result = run(settings, world.training_set_uri, tracking_uri=world.tracking_uri, reason="tampered")
    assert result.champion.version == first.version and result.champion.metrics is None
    assert "not comparable" in result.champion.note and "model_sha256" in result.champion.note
    (cand,) = result.candidates
    vs = [c for c in cand.checks if c.name.endswith("_vs_champion")]
    assert [(c.passed, c.detail) for c in vs] == [(None, result.champion.note)] * 2
    assert result.status == "registered" and result.aliases == ["challenger"]
    assert mlflow_client.get_model_version_by_alias(name, "champion").version == first.version
