"""Each service of docker-compose.yaml receives exactly the secrets it uses: the table below is the
documentation, and the test finds every secret wherever the compose file puts it (environment,
command, healthcheck, configs), spliced into a URL or a JSON string included. The services that
run airloop code load the production profile, checked (``check_secrets=True``), with what they
receive and nothing more."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from config import read_config
from tests.containers.test_compose import (
    MINIO_INIT_SCRIPT,
    ROOT,
    compose,
    env_example,
    environment,
    secret_names,
)

AIRFLOW = {
    "AIRFLOW_DB_PASSWORD",  # its metadata database
    "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY",
    "S3_SECRET_KEY",  # S3 read-write (landing, curated, features, reports, inference log)
    "MLFLOW_TRAINING_PASSWORD",  # MLflow's `training` user
    "FEAST_DB_PASSWORD", "REDIS_PASSWORD",  # the Feast registry, materialization into Redis
    "MODEL_SIGNING_KEY",  # signs at registration, verifies the champion and the reference
    "SERVING_ADMIN_TOKEN", "RAY_AUTH_TOKEN",  # the deploy DAG drives serving and the Serve REST API
}  # fmt: skip
SERVICE_SECRETS: dict[str, set[str]] = {
    "postgres": {
        "POSTGRES_SUPERUSER_PASSWORD",
        *(f"{db}_DB_PASSWORD" for db in ("AIRFLOW", "MLFLOW", "FEAST")),
    },
    "redis": {"REDIS_PASSWORD", "REDIS_SERVING_PASSWORD"},
    "minio": {"MINIO_ROOT_PASSWORD"},
    "minio-init": {"MINIO_ROOT_PASSWORD", "S3_SECRET_KEY", "MLFLOW_S3_SECRET_KEY", "S3_SERVING_SECRET_KEY"},
    "mlflow": {
        "MLFLOW_DB_PASSWORD",  # tracking store and users store
        "MLFLOW_S3_SECRET_KEY",  # its artifacts under s3://airloop/mlflow (clients go through it)
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
    },
    "mlflow-init": {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_TRAINING_PASSWORD", "MLFLOW_SERVING_PASSWORD"},
    "airflow-init": AIRFLOW | {"AIRFLOW_ADMIN_PASSWORD"},  # writes the api-server's password file
    "airflow-apiserver": AIRFLOW,
    "airflow-scheduler": AIRFLOW,
    "airflow-dag-processor": AIRFLOW,
    "airflow-triggerer": AIRFLOW,
    "ray-head": {
        "RAY_AUTH_TOKEN",  # the cluster's token: every Ray process and the dashboard check it
        "S3_SERVING_SECRET_KEY",  # writes new inference-log files, reads nothing
        "MLFLOW_SERVING_PASSWORD",  # MLflow's read-only `serving` user: loads models
        "REDIS_SERVING_PASSWORD",  # Redis's read-only `serving` user: feature lookups
        "FEAST_DB_PASSWORD",  # the Feast registry (feature service definitions)
        "MODEL_SIGNING_KEY",  # verifies a model before anything is unpickled
        "SERVING_ADMIN_TOKEN",  # checks /admin/* and POST /labels
    },
    "train": {"S3_SECRET_KEY", "MLFLOW_TRAINING_PASSWORD", "MODEL_SIGNING_KEY"},
    "statsd-exporter": set(),
    "pushgateway": set(),
    "prometheus": set(),  # scrapes and answers on the compose network only
    "grafana": {"GRAFANA_ADMIN_PASSWORD"},
}
RUNS_AIRLOOP_CODE = ["airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                     "airflow-triggerer", "ray-head", "train"]  # fmt: skip


def sentinel(name: str) -> str:
    return f"sentinel{name.replace('_', '')}0123456789"


def received() -> dict[str, set[str]]:
    """The secrets each service receives, found by giving each secret a unique value."""
    env = {**env_example(), **{name: sentinel(name) for name in secret_names()}}
    doc = compose(env)
    configs = {name: json.dumps(spec) for name, spec in (doc.get("configs") or {}).items()}
    found = {}
    for service, spec in doc["services"].items():
        text = json.dumps(spec) + "".join(
            configs[ref if isinstance(ref, str) else ref["source"]] for ref in spec.get("configs", [])
        )
        found[service] = {name for name in secret_names() if sentinel(name) in text}
    return found


def real_secrets() -> dict[str, str]:
    """What a deployment's .env holds: every secret replaced by a generated value."""
    import secrets

    return {**env_example(), **{name: secrets.token_urlsafe(24) for name in secret_names()}}


def test_the_table_covers_every_service_and_every_secret():
    assert set(SERVICE_SECRETS) == set(compose()["services"])
    assert set().union(*SERVICE_SECRETS.values()) == secret_names()


@pytest.mark.parametrize("service", sorted(SERVICE_SECRETS))
def test_each_service_receives_exactly_its_secrets(service):
    got = received()[service]
    assert got == SERVICE_SECRETS[service], (
        f"{service}: unexpected {sorted(got - SERVICE_SECRETS[service])}, "
        f"missing {sorted(SERVICE_SECRETS[service] - got)}"
    )


@pytest.mark.parametrize("service", RUNS_AIRLOOP_CODE)
def test_what_a_service_receives_is_enough_for_the_checked_production_profile(service):
    """``load_config`` would start: each variable the profile reads is there with a real value,
    or the service overrides that key to empty because it must not hold it (the train pod)."""
    doc = compose(real_secrets())
    env = environment(service, doc)
    cfg = read_config("production", env, check_secrets=True)
    if service == "train":
        assert cfg.serving.admin_token is None and cfg.serving.ray_auth_token is None
        assert urlsplit(cfg.feast.registry).password is None
    else:
        assert cfg.serving.admin_token and cfg.mlflow.signing_key


def test_example_values_are_refused_by_every_service_that_runs_airloop_code():
    for service in RUNS_AIRLOOP_CODE:
        env = environment(service, compose(env_example()))
        with pytest.raises(ValueError, match=r"change-me|example value"):
            read_config("production", env, check_secrets=True)


def test_serving_uses_its_read_only_users():
    env = environment("ray-head")
    assert env["MLFLOW_TRACKING_USERNAME"] == "serving"
    cfg = read_config("production", env)
    assert ",username=serving," in cfg.feast.online_store.connection_string
    assert env["AWS_ACCESS_KEY_ID"] == env_example()["S3_SERVING_ACCESS_KEY"]
    airflow = environment("airflow-scheduler")
    assert airflow["MLFLOW_TRACKING_USERNAME"] == "training"
    assert airflow["AWS_ACCESS_KEY_ID"] == env_example()["S3_ACCESS_KEY"]


# --------------------------------------------------------------------------------------------
# MinIO: one policy per user, each no wider than its component needs
# --------------------------------------------------------------------------------------------


def policy(name: str) -> list[dict]:
    return json.loads((ROOT / "deploy" / "minio" / f"{name}-policy.json").read_text())["Statement"]


def test_minio_init_gives_each_user_its_own_policy_file():
    script = MINIO_INIT_SCRIPT.read_text()
    users = re.findall(r'^airloop_user (airloop-\w+) "\$(\w+)" "\$(\w+)"$', script, re.M)
    assert {(p, a, s) for p, a, s in users} == {
        ("airloop-pipeline", "S3_ACCESS_KEY", "S3_SECRET_KEY"),
        ("airloop-mlflow", "MLFLOW_S3_ACCESS_KEY", "MLFLOW_S3_SECRET_KEY"),
        ("airloop-serving", "S3_SERVING_ACCESS_KEY", "S3_SERVING_SECRET_KEY"),
    }
    assert "readwrite" not in script, "no built-in all-buckets policy"
    for name in ("pipeline", "mlflow", "serving"):
        for statement in policy(name):
            assert statement["Effect"] in ("Allow", "Deny") and statement["Action"]
            assert all(a.startswith("s3:") and "*" not in a for a in statement["Action"]), statement


def test_the_serving_user_can_only_write_new_inference_log_files():
    cfg = read_config("production", {})
    bucket = urlsplit(cfg.storage.data_uri).netloc
    prefix = cfg.serving.inference_log.path.strip("/")
    allowed = {
        (action, resource)
        for statement in policy("serving")
        if statement["Effect"] == "Allow"
        for action in statement["Action"]
        for resource in statement["Resource"]
    }
    assert allowed == {
        ("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}"),  # s3fs probes the bucket before writing
        ("s3:PutObject", f"arn:aws:s3:::{bucket}/{prefix}/*"),
    }


def test_mlflow_artifacts_belong_to_the_mlflow_user_only():
    cfg = read_config("production", {})
    artifacts = urlsplit(cfg.mlflow.artifacts_destination)
    objects = f"arn:aws:s3:::{artifacts.netloc}{artifacts.path}/*"
    allowed = [s for s in policy("mlflow") if s["Effect"] == "Allow"]
    mlflow_objects = {r for s in allowed for r in s["Resource"] if "/" in r}
    assert mlflow_objects == {objects}
    denied = [s for s in policy("pipeline") if s["Effect"] == "Deny"]
    assert denied and all(objects in s["Resource"] for s in denied), "the pipeline goes through MLflow"
    assert {"s3:PutObject", "s3:DeleteObject"} <= {a for s in denied for a in s["Action"]}
