"""Shared fixtures.

Airflow reads its configuration when first imported, so the test Airflow home (a private SQLite
metadata DB, no example DAGs, the project's dags/ and plugins/) is set here, before any test
module imports it. Each test gets its own AIRLOOP_HOME so data never leaks between tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["tests.services"]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AIRFLOW_TEST_HOME = Path(tempfile.mkdtemp(prefix="airloop-test-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_TEST_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_TEST_HOME}/airflow.db",
        "GX_ANALYTICS_ENABLED": "False",
        "MLFLOW_DISABLE_TELEMETRY": "true",  # its thread unsets an env var while others iterate os.environ
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
)
pytest.register_assert_rewrite("tests.services")  # imported here, before pytest loads it as a plugin
from tests.services import MLFLOW_LOGIN  # noqa: E402 - after sys.path has the project

# Every local MLflow server the tests start runs basic auth with MLFLOW_LOGIN's password, and
# this process's clients (and the processes it starts) log in with it.
os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
os.environ["MLFLOW_TRACKING_PASSWORD"] = MLFLOW_LOGIN["AIRLOOP__MLFLOW__ADMIN_PASSWORD"]


@pytest.fixture
def airloop_home(tmp_path, monkeypatch) -> Path:
    """Point every data URI of the local profile at a fresh folder."""
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("AIRLOOP_PROFILE", "local")
    for name in [k for k in os.environ if k.startswith("AIRLOOP__") and k not in MLFLOW_LOGIN]:
        monkeypatch.delenv(name)
    return tmp_path


@pytest.fixture
def settings(airloop_home):
    from config import read_config

    return read_config("local")


@pytest.fixture
def dag_settings(tmp_path_factory, monkeypatch, airflow_db):
    """Settings for dag.test() runs: one AIRLOOP_HOME per session, its data wiped per test.

    Asset URIs are derived from the data location, and Airflow keeps one active URI per asset
    name in its metadata DB, so DAG tests share a home instead of getting one each.
    """
    import shutil

    from config import read_config
    from tasks.features import store

    home = AIRFLOW_TEST_HOME / "airloop-home"
    shutil.rmtree(home / "data", ignore_errors=True)
    store.forget_stores()  # their registry caches describe the data just wiped
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("AIRLOOP_HOME", str(home))
    monkeypatch.setenv("AIRLOOP_PROFILE", "local")
    for name in [k for k in os.environ if k.startswith("AIRLOOP__")]:
        monkeypatch.delenv(name)
    return read_config("local")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB for dag.test() runs (once per session)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return AIRFLOW_TEST_HOME
