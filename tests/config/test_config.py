"""The one settings object: profiles, env overrides, secrets from env, paths that follow the home."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config import CONFIG_DIR, load_config, read_config


def test_local_profile_resolves_relative_uris_against_airloop_home(tmp_path):
    cfg = read_config("local", {"AIRLOOP_HOME": str(tmp_path)})
    assert cfg.profile == "local"
    assert cfg.storage.landing_uri == f"file://{tmp_path}/data/landing"
    assert cfg.airflow.home == str(tmp_path / ".airflow")


def test_production_profile_uses_s3_and_secrets_from_env():
    cfg = read_config("production", {"REDIS_PASSWORD": "s3cret", "FEAST_DB_PASSWORD": "pw"})
    assert cfg.storage.curated_uri == "s3://airloop/curated/transactions"
    assert cfg.storage.s3_endpoint_url == "http://minio:9000"
    assert cfg.feast.online_store.connection_string == "redis:6379,password=s3cret"
    assert cfg.feast.registry == "postgresql+psycopg://feast:pw@postgres:5432/feast"
    assert cfg.airflow.password is None, "no default admin password in production"
    with_password = read_config("production", {"AIRLOOP__AIRFLOW__PASSWORD": "given"})
    assert with_password.airflow.password == "given"
    assert cfg.ingest.max_age_hours == 48


@pytest.mark.parametrize(
    ("name", "raw", "read", "expected"),
    [
        ("AIRLOOP__INGEST__MIN_ROWS", "10", lambda c: c.ingest.min_rows, 10),
        ("AIRLOOP__INGEST__CRON", "* * * * *", lambda c: c.ingest.cron, "* * * * *"),
        ("AIRLOOP__INGEST__CRON", "*/5 * * * *", lambda c: c.ingest.cron, "*/5 * * * *"),
        ("AIRLOOP__INGEST__MAX_AGE_HOURS", "null", lambda c: c.ingest.max_age_hours, None),
        ("AIRLOOP__AIRFLOW__PORT", "8999", lambda c: c.airflow.url, "http://127.0.0.1:8999"),
        ("AIRLOOP__STORAGE__LANDING_URI", "s3://b/l", lambda c: c.storage.landing_uri, "s3://b/l"),
    ],
)
def test_env_overrides_any_key(name, raw, read, expected):
    assert read(read_config("local", {name: raw})) == expected


def test_unknown_keys_and_bad_values_are_rejected():
    with pytest.raises(ValidationError, match="not_a_key"):
        read_config("local", {"AIRLOOP__INGEST__NOT_A_KEY": "1"})
    with pytest.raises(ValidationError, match="min_rows"):
        read_config("local", {"AIRLOOP__INGEST__MIN_ROWS": "many"})


def test_unknown_profile_names_the_missing_file():
    with pytest.raises(FileNotFoundError, match=r"staging\.yaml"):
        read_config("staging", {})


def test_load_config_is_cached_but_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    monkeypatch.delenv("AIRLOOP__INGEST__MIN_ROWS", raising=False)
    first = load_config("local")
    assert load_config("local") is first
    monkeypatch.setenv("AIRLOOP__INGEST__MIN_ROWS", "7")
    assert load_config("local").ingest.min_rows == 7


def test_mlflow_local_server_stores_follow_airloop_home(tmp_path):
    cfg = read_config("local", {"AIRLOOP_HOME": str(tmp_path)})
    assert cfg.mlflow.url == "http://127.0.0.1:5000"
    assert cfg.mlflow.backend_store_uri == f"sqlite:///{tmp_path}/data/mlflow/mlflow.db"
    assert cfg.mlflow.artifacts_destination == f"file://{tmp_path}/data/mlflow/artifacts"
    moved = read_config("local", {"AIRLOOP_HOME": str(tmp_path), "AIRLOOP__MLFLOW__PORT": "5999"})
    assert moved.mlflow.url == "http://127.0.0.1:5999"


def test_mlflow_production_uses_the_compose_service_and_secrets_from_env():
    cfg = read_config("production", {"MODEL_SIGNING_KEY": "k" * 32})
    assert cfg.mlflow.url == "http://mlflow:5000"
    assert cfg.mlflow.signing_key == "k" * 32
    assert cfg.mlflow.artifacts_destination == "s3://airloop/mlflow"
    assert "backend_store_uri" not in (CONFIG_DIR / "production.yaml").read_text(), (
        "the server's database credentials belong to the mlflow container, not every component"
    )


def test_train_and_gate_sections_in_both_profiles_agree_on_thresholds():
    local, prod = read_config("local", {}), read_config("production", {})
    assert local.train == prod.train
    # Segment sizing differs by design (demo-sized hold-outs); every threshold agrees.
    sizing = {"min_rows", "min_positives", "max_unjudged_share"}

    def thresholds(gate):
        rules = {c: r.model_dump(exclude=sizing) for c, r in gate.segments.columns.items()}
        return gate.model_dump(exclude={"segments"}), gate.segments.threshold, rules

    assert thresholds(local.gate) == thresholds(prod.gate)
    assert local.train.families == ["xgboost", "mlp"]
    assert local.gate.fairness.segment in local.schema_.names


def test_training_grids_and_gate_thresholds_are_overridable():
    cfg = read_config(
        "local",
        {
            "AIRLOOP__TRAIN__XGBOOST__GRID__MAX_DEPTH": "[3, 5]",
            "AIRLOOP__TRAIN__FAMILIES": "[prior]",
            "AIRLOOP__GATE__FAIRNESS__MAX_TPR_GAP": "0.05",
        },
    )
    assert cfg.train.xgboost.grid.max_depth == [3, 5]
    assert cfg.train.families == ["prior"]
    assert cfg.gate.fairness.max_tpr_gap == 0.05
    with pytest.raises(ValidationError, match="families"):
        read_config("local", {"AIRLOOP__TRAIN__FAMILIES": "[lightgbm]"})
    with pytest.raises(ValidationError, match="holdout_fraction"):
        read_config("local", {"AIRLOOP__TRAIN__HOLDOUT_FRACTION": "1.5"})
    with pytest.raises(ValidationError, match="min_auc"):
        read_config("local", {"AIRLOOP__GATE__MIN_AUC": "0.9"})
