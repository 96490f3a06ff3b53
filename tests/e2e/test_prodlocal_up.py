"""The production stack of this machine comes up, locked (the short CI variant of
``test_prodlocal_run.py``, whose whole loop takes about 8 minutes and is opt-in).

``prodlocal.up`` starts every process of the production profile (PostgreSQL with compose's
roles, Redis, moto's S3 server, a two-node Ray cluster with token auth, MLflow with basic auth,
Airflow's four services with ``AIRLOOP_PROFILE=production``); the tests check that the DAGs parse
under that profile, that the Ray cluster has both nodes, and that no service takes a request
without its credentials while the right ones are let in.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import requests

from tasks.platform import prodlocal
from tasks.platform.prodlocal.checks import mlflow_facts
from tasks.platform.prodlocal.services import alive_nodes, ray_get

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

DAGS = ("ingest", "features", "train", "deploy", "monitor")


@pytest.fixture(scope="module")
def production_stack():
    root = Path(tempfile.mkdtemp(prefix="airloop-prod-"))  # not pytest's: PostgreSQL runs as `postgres`
    state = prodlocal.load_or_create(root)
    try:
        prodlocal.up(root, timeout=600.0, quiet=True)
        with prodlocal.environment(prodlocal.pipeline_env(state)):
            yield state, prodlocal.settings(state)
    finally:
        prodlocal.down(root, quiet=True)
        shutil.rmtree(state.ray_temp, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def test_the_dags_parse_under_the_production_profile_and_ray_has_two_nodes(production_stack):
    from tasks.platform.airflow_client import AirflowClient

    _, settings = production_stack
    client = AirflowClient.from_settings(settings)
    for dag_id in DAGS:
        client.wait_for_dag(dag_id, timeout=300)
    assert len(alive_nodes(settings)) == 2
    assert ray_get(settings, "/api/serve/applications/").status_code == 200


def test_no_service_takes_a_request_without_its_credentials(production_stack):
    state, settings = production_stack
    post = {"json": {}, "timeout": 10}
    # Airflow's REST API (asset events start runs): a token from its login, nothing else
    assert requests.post(f"{state.url('airflow')}/api/v2/assets/events", **post).status_code == 401
    assert requests.get(f"{state.url('airflow')}/api/v2/dags", timeout=10).status_code == 401
    # MLflow (basic auth): anonymous reads and writes refused, training's user may write
    mlflow = f"{state.url('mlflow')}/api/2.0/mlflow"
    created = {"json": {"name": "anonymous"}, "timeout": 10}
    assert requests.post(f"{mlflow}/registered-models/create", **created).status_code == 401
    assert requests.get(f"{mlflow}/registered-models/search", timeout=10).status_code == 401
    training = ("training", state.secrets["MLFLOW_TRAINING_PASSWORD"])
    answer = requests.get(f"{mlflow}/registered-models/search", auth=training, timeout=10)
    assert answer.status_code == 200, answer.text
    assert {"admin", "training", "serving"} <= set(mlflow_facts(state)["users"])
    # the Ray dashboard (the Serve REST API that deploys the application): the cluster's token
    ray = state.url("ray_dashboard")
    assert requests.get(f"{ray}/api/serve/applications/", timeout=10).status_code in (401, 403)
    assert requests.put(f"{ray}/api/serve/applications/", json={}, timeout=10).status_code in (401, 403)
    assert settings.profile == "production"
