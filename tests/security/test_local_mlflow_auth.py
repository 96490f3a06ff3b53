"""The local stack's MLflow needs credentials too: ``airloop up`` runs it with MLflow's basic auth
(the production server's settings, ``deploy/mlflow/server.py``), its ``admin`` password generated
under ``AIRLOOP_HOME``, and every client the stack starts logs in with it. Without credentials,
nothing but ``/health`` answers: no registering a model, no reading the registry."""

from __future__ import annotations

import stat

import pytest
import requests

from config import read_config
from tasks.common import secrets
from tasks.common.net import free_port

pytestmark = pytest.mark.slow

CREATE = "/api/2.0/mlflow/registered-models/create"
SEARCH = "/api/2.0/mlflow/registered-models/search"


@pytest.fixture(scope="module")
def local_mlflow(tmp_path_factory):
    from tasks.platform import stack

    home = tmp_path_factory.mktemp("local-mlflow")
    env = {
        "AIRLOOP_HOME": str(home),
        "AIRLOOP__MLFLOW__PORT": str(free_port()),
        "AIRLOOP__METADATA_DB__MLFLOW_DATABASE": "null",  # its SQLite file: no PostgreSQL needed here
    }  # no AIRLOOP__MLFLOW__ADMIN_PASSWORD: the password is generated, as on a user's machine
    settings = read_config("local", env)
    try:
        stack.start(settings, services=[stack.MLFLOW], timeout=180, quiet=True)
        yield settings
    finally:
        stack.stop(settings, services=[stack.MLFLOW], quiet=True)


def test_nothing_but_health_answers_without_credentials(local_mlflow):
    url = local_mlflow.mlflow.url
    assert requests.get(f"{url}/health", timeout=10).status_code == 200
    created = requests.post(f"{url}{CREATE}", json={"name": "planted"}, timeout=10)
    assert created.status_code == 401, created.text
    assert requests.get(f"{url}{SEARCH}", timeout=10).status_code == 401
    wrong = requests.post(f"{url}{CREATE}", json={"name": "planted"}, auth=("admin", "guess"), timeout=10)
    assert wrong.status_code == 401


def test_the_stacks_clients_log_in_with_the_generated_password(local_mlflow):
    from tasks.platform import stack

    login = secrets.mlflow_credentials(local_mlflow)
    assert login["MLFLOW_TRACKING_USERNAME"] == "admin" and len(login["MLFLOW_TRACKING_PASSWORD"]) >= 32
    password_file = secrets.secrets_dir(local_mlflow) / secrets.MLFLOW_PASSWORD
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    # Airflow's tasks, training and serving get it in their environment
    assert stack.airflow_vars(local_mlflow).items() >= login.items()
    auth = (login["MLFLOW_TRACKING_USERNAME"], login["MLFLOW_TRACKING_PASSWORD"])
    url = local_mlflow.mlflow.url
    created = requests.post(f"{url}{CREATE}", json={"name": "registered"}, auth=auth, timeout=10)
    assert created.status_code == 200, created.text
    found = requests.get(f"{url}{SEARCH}", auth=auth, timeout=10).json()["registered_models"]
    assert [m["name"] for m in found] == ["registered"]


def test_production_clients_bring_their_own_credentials(tmp_path):
    settings = read_config("production", {"AIRLOOP_HOME": str(tmp_path)}, check_secrets=False)
    assert secrets.mlflow_credentials(settings) == {}
    assert not secrets.secrets_dir(settings).exists()  # nothing generated for production
