"""The production profile on one machine (``tasks.platform.prodlocal``), without starting
anything: every ``${VAR}`` of the profile gets a generated secret that its check accepts, the
state is made once and kept private, and each component gets only its own credentials."""

from __future__ import annotations

import stat

import pytest
import yaml

from config import read_config, secret_variables
from config.interpolation import why_refused
from tasks.platform.prodlocal import load_or_create, pipeline_env, settings
from tasks.platform.prodlocal.state import EXTRA_SECRETS, base_env, state_file


@pytest.fixture
def state(tmp_path):
    return load_or_create(tmp_path / "run")


def test_every_secret_of_the_profile_is_generated_and_passes_its_check(state):
    wanted = [n for n in secret_variables("production") if n != "MLFLOW_PUBLIC_URL"]
    assert set(wanted) | set(EXTRA_SECRETS) == set(state.secrets)
    assert all(why_refused(name, value, in_url=True) is None for name, value in state.secrets.items())
    cfg = settings(state)  # the profile's own secret check passes
    assert cfg.profile == "production" and cfg.training_pod.runner == "local"
    assert cfg.feast.sql_registry and cfg.feast.online_store.type == "redis"
    assert cfg.rollout.metrics_source == "serving" and cfg.monitor.pushgateway_url is None
    assert cfg.serving.dashboard_url == state.url("ray_dashboard")


def test_the_state_is_made_once_private_and_kept(state):
    path = state_file(state.root)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create(state.root)
    assert again == state
    ports = [*state.ports.values()] + [p for node in state.ray_ports.values() for p in node.values()]
    assert len(ports) == len(set(ports))


def test_training_holds_no_serving_ray_or_redis_secret(state):
    env = read_config("production", {**pipeline_env(state)}).training_pod.env
    assert env["AIRLOOP__SERVING__ADMIN_TOKEN"] == env["AIRLOOP__SERVING__RAY_AUTH_TOKEN"] == ""
    assert env["AIRLOOP__FEAST__ONLINE_STORE__CONNECTION_STRING"] == ""
    assert state.secrets["FEAST_DB_PASSWORD"] not in env["AIRLOOP__FEAST__REGISTRY"]
    assert env["AWS_ENDPOINT_URL_S3"] == state.url("s3")


def test_only_the_pipeline_holds_the_pipeline_credentials(state):
    shared, pipeline = base_env(state), pipeline_env(state)
    for name in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        assert name not in shared and name in pipeline
    assert state.secrets["AIRFLOW_DB_PASSWORD"] in pipeline["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert yaml.safe_load(pipeline["AIRLOOP__TRAINING_POD__ENV"])["MLFLOW_TRACKING_USERNAME"] == "training"
