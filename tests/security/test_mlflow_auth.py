"""MLflow's basic auth as the production stack runs it, for real: ``deploy/mlflow/server.py``
starts ``mlflow server --app-name basic-auth`` (SQLite stores in a temporary folder, a free
port), ``deploy/mlflow/users.py`` creates ``training`` and ``serving``, and the MLflow client
does what training and serving do, over HTTP, as each user."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tasks.common.net import free_port
from tests.services import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "deploy" / "mlflow" / "server.py"
USERS = ROOT / "deploy" / "mlflow" / "users.py"
MODEL = "fraud-detector"
USERS_MADE = ("training", "serving")
PASSWORDS = {
    "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-test-password-0123",
    "MLFLOW_TRAINING_PASSWORD": "training-test-password-0123",
    "MLFLOW_SERVING_PASSWORD": "serving-test-password-0123",
}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-auth")
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{root}/auth.db",
        "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORDS["MLFLOW_AUTH_ADMIN_PASSWORD"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-test-secret-0123456789",
    }
    args = ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    args += [
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        f"file://{root}/art",
    ]
    log = (root / "server.log").open("wb")
    command = [sys.executable, str(SERVER), *args]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is None and requests.get(f"{url}/health", timeout=2).ok, 180, "MLflow")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def init_users(url: str, **passwords: str) -> str:
    env = {**os.environ, **PASSWORDS, **passwords, "MLFLOW_TRACKING_URI": url}
    done = subprocess.run(
        [sys.executable, str(USERS), "--experiment", MODEL, "--registered-model", MODEL],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def as_user(monkeypatch, url: str, username: str, password: str):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    return MlflowClient(url, url)


def refused(call) -> int:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as caught:
        call()
    return caught.value.get_http_status_code()


def test_users_roles_and_what_each_may_do(mlflow_server, monkeypatch, tmp_path):
    import mlflow

    url = mlflow_server
    first = init_users(url)
    assert "training: created, experiment=EDIT, registered_model=MANAGE" in first
    assert f"admin: experiment {MODEL}, registered model {MODEL}" in first
    search = f"{url}/api/2.0/mlflow/registered-models/search"
    assert requests.get(search, timeout=10).status_code == 401, "anonymous"
    assert requests.get(search, auth=("serving", "wrong-password"), timeout=10).status_code == 401
    serving_auth = ("serving", PASSWORDS["MLFLOW_SERVING_PASSWORD"])
    grant = {
        "username": "serving",
        "resource_type": "registered_model",
        "resource_id": "*",
        "permission": "MANAGE",
    }
    for path, body in [
        ("/api/2.0/mlflow/users/create", {"username": "intruder", "password": "intruder-password-0123"}),
        ("/api/3.0/mlflow/users/permissions/grant", grant),
    ]:
        answer = requests.post(f"{url}{path}", json=body, auth=serving_auth, timeout=10)
        assert answer.status_code == 403, path

    # training: a run, its files, a version with tags, aliases set and moved
    training = as_user(monkeypatch, url, "training", PASSWORDS["MLFLOW_TRAINING_PASSWORD"])
    experiment = training.get_experiment_by_name(MODEL).experiment_id
    run = training.create_run(experiment)
    training.log_metric(run.info.run_id, "pr_auc", 0.8)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.bin").write_bytes(b"weights")
    training.log_artifacts(run.info.run_id, str(tmp_path / "model"), "model")
    version = training.create_model_version(
        MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, tags={"model_sha256": "abc"}
    ).version
    training.set_registered_model_alias(MODEL, "challenger", version)
    training.set_model_version_tag(MODEL, version, "rollout", "begun")
    training.set_registered_model_alias(MODEL, "champion", version)
    training.delete_registered_model_alias(MODEL, "challenger")
    training.set_terminated(run.info.run_id)

    # serving: read the champion and download its files; change nothing
    serving = as_user(monkeypatch, url, "serving", PASSWORDS["MLFLOW_SERVING_PASSWORD"])
    champion = serving.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == version and champion.tags["model_sha256"] == "abc"
    source = serving.get_model_version_download_uri(MODEL, version)
    local = mlflow.artifacts.download_artifacts(source, dst_path=str(tmp_path / "dl"), tracking_uri=url)
    assert (Path(local) / "model.bin").read_bytes() == b"weights"
    assert refused(lambda: serving.create_model_version(MODEL, f"runs:/{run.info.run_id}/model")) == 403
    assert refused(lambda: serving.set_registered_model_alias(MODEL, "champion", version)) == 403
    assert refused(lambda: serving.delete_registered_model_alias(MODEL, "champion")) == 403
    assert refused(lambda: serving.set_model_version_tag(MODEL, version, "model_sha256", "forged")) == 403
    assert refused(lambda: serving.log_metric(run.info.run_id, "pr_auc", 1.0)) == 403
    assert refused(lambda: serving.create_run(experiment)) == 403
    assert serving.get_model_version(MODEL, version).tags["model_sha256"] == "abc"

    # a second run changes nothing; a new password in the environment is a rotation
    assert init_users(url).splitlines() == [
        f"mlflow-init: {who}: unchanged" for who in ("admin", *USERS_MADE)
    ]
    rotated = init_users(url, MLFLOW_SERVING_PASSWORD="serving-rotated-password-0123")
    assert "serving: password updated" in rotated and "training: unchanged" in rotated
    old = requests.get(search, auth=("serving", PASSWORDS["MLFLOW_SERVING_PASSWORD"]), timeout=10)
    new = requests.get(search, auth=("serving", "serving-rotated-password-0123"), timeout=10)
    assert (old.status_code, new.status_code) == (401, 200)


def test_the_server_refuses_to_start_without_its_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        [sys.executable, str(SERVER)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    for name in ("MLFLOW_AUTH_DATABASE_URI", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert name in done.stderr
