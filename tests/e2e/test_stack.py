"""The local Airflow stack (``tasks.platform.stack``): it starts, answers, authenticates, reports and stops.

Runs against the real processes (api-server, scheduler, dag-processor, triggerer) on the
project's dags/, started once per session by the ``airflow_stack`` fixture.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from config import PROJECT_ROOT, read_config
from tasks.platform import stack
from tasks.platform.airflow_client import HEALTH_PATH, AirflowAPIError, AirflowClient
from tasks.platform.stack.processes import alive

pytestmark = pytest.mark.e2e

DAG_PARSE_TIMEOUT_S = 180.0


def test_api_and_ui_answer(airflow_stack):
    settings, client, _ = airflow_stack
    health = client.health()
    for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert health[component]["status"] == "healthy", health
    assert client.get("/version")["version"].startswith("3.")
    ui = requests.get(stack.api_url(settings) + "/", timeout=10)
    assert ui.status_code == 200
    assert "<html" in ui.text.lower()


def test_login_with_configured_password(airflow_stack):
    settings, _, _ = airflow_stack
    client = AirflowClient(stack.api_url(settings), settings.airflow.username, settings.airflow.password)
    token = client.login()
    assert token.count(".") == 2  # a JWT
    assert "dags" in client.get("/dags", limit=1)


def test_wrong_password_is_rejected(airflow_stack):
    settings, _, _ = airflow_stack
    client = AirflowClient(stack.api_url(settings), settings.airflow.username, "not-the-password")
    with pytest.raises(AirflowAPIError) as err:
        client.login()
    assert err.value.status_code == 401
    anonymous = requests.get(stack.api_url(settings) + "/api/v2/dags", timeout=10)
    assert anonymous.status_code == 401


def test_status_reports_every_service(airflow_stack):
    settings, _, _ = airflow_stack
    st = stack.status(settings)
    assert set(st["services"]) == {s.name for s in stack.SERVICES}
    for name, service in st["services"].items():
        assert service["running"], (name, service)
        assert service["health"] == "healthy", (name, service)
        assert Path(service["log"]).is_file()
    assert st["services"]["api-server"]["port"] == settings.airflow.port
    assert st["services"]["mlflow"]["port"] == settings.mlflow.port
    assert requests.get(settings.mlflow.url + "/health", timeout=10).status_code == 200
    assert st["health"]["scheduler"]["status"] == "healthy"


def test_start_is_idempotent(airflow_stack):
    settings, _, _ = airflow_stack
    before = {name: s["pid"] for name, s in stack.status(settings)["services"].items()}
    t0 = time.monotonic()
    assert stack.start(settings, quiet=True) == before
    assert time.monotonic() - t0 < 15  # no migration, no new processes


def test_cli_status_and_env(airflow_stack):
    """``airloop status`` and ``airloop env`` (the console script) against the running stack."""
    settings, _, env = airflow_stack
    cli = [str(Path(sys.executable).parent / "airloop")]
    status = subprocess.run(
        [*cli, "status"], env=env, cwd=PROJECT_ROOT, check=False, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0, status.stderr
    for service in stack.SERVICES:
        assert service.name in status.stdout
    # every service of the stack runs (and serving, when a test of this session started it)
    running = [line.split()[0] for line in status.stdout.splitlines() if "running pid" in line]
    assert set(running) - {stack.SERVE.name} == {s.name for s in stack.SERVICES}, status.stdout
    assert status.stdout.splitlines()[-1].startswith("running: every service is up")
    assert "scheduler healthy" in status.stdout

    exported = subprocess.run(
        [*cli, "env"], env=env, cwd=PROJECT_ROOT, check=False, capture_output=True, text=True, timeout=60
    )
    assert exported.returncode == 0, exported.stderr
    assert f"export AIRFLOW_HOME={settings.airflow.home}" in exported.stdout.splitlines()
    assert "export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=" in exported.stdout
    assert f"export MLFLOW_TRACKING_URI={settings.mlflow.url}" in exported.stdout.splitlines()


def test_project_dags_parse_without_import_errors(airflow_stack):
    """Every file in dags/ becomes at least one DAG in the running stack."""
    _, client, _ = airflow_stack
    files = {p.name for p in (PROJECT_ROOT / "dags").glob("*.py") if not p.name.startswith("_")}
    deadline = time.monotonic() + DAG_PARSE_TIMEOUT_S
    while True:
        errors = client.import_errors()
        assert not errors, "\n\n".join(f"{e['filename']}:\n{e['stack_trace']}" for e in errors)
        parsed = {Path(d["fileloc"]).name for d in client.get("/dags", limit=100)["dags"]}
        if files <= parsed:
            break
        assert time.monotonic() < deadline, f"not parsed after {DAG_PARSE_TIMEOUT_S}s: {files - parsed}"
        time.sleep(2)


def test_airflow_env_pins_auth_and_secrets(tmp_path, monkeypatch):
    """No processes needed: the environment every Airflow process gets, and what it writes."""
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("AIRLOOP__AIRFLOW__PASSWORD", "s3cret")
    monkeypatch.setenv("AIRLOOP__AIRFLOW__PORT", "8765")
    settings = read_config("local")
    env = stack.airflow_env(settings)
    home = Path(env["AIRFLOW_HOME"])
    assert home == tmp_path / ".airflow"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(PROJECT_ROOT / "dags")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    conn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert conn.startswith("postgresql+psycopg://airloop:") and conn.endswith(f"?host={home}/postgres/run")
    assert "MLFLOW_BACKEND_STORE_URI" not in env  # MLflow's own service gets it, nobody else
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8765/execution/"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRLOOP__AIRFLOW__PASSWORD"] == "s3cret"  # AIRLOOP_* pass through
    assert str(PROJECT_ROOT) in env["PYTHONPATH"].split(os.pathsep)
    passwords = json.loads(Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
    assert passwords == {"admin": "s3cret"}
    again = stack.airflow_env(settings, dags_folder=tmp_path)
    assert again["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert again["AIRFLOW__API__SECRET_KEY"] == env["AIRFLOW__API__SECRET_KEY"]
    assert again["AIRFLOW__CORE__DAGS_FOLDER"] == str(tmp_path)


def test_services_do_not_inherit_the_starters_temporary_metrics_dir(tmp_path, monkeypatch):
    """Importing Feast in the process that starts the stack (``airloop demo``) points
    PROMETHEUS_MULTIPROC_DIR at a directory it deletes on exit: a service that inherited it failed
    every later Feast import (the second ``make demo``'s features run)."""
    import subprocess
    import sys

    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    probe = "import os, feast; print(os.environ['PROMETHEUS_MULTIPROC_DIR'])"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_MULTIPROC")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=clean)
    gone = out.stdout.strip().splitlines()[-1]
    assert gone and not Path(gone).exists(), "feast no longer makes (and removes) its own metrics dir"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", gone)
    monkeypatch.setenv("PROMETHEUS_MULTIPROCESS_DIR", gone)
    env = stack.airflow_env(read_config("local"))
    assert "PROMETHEUS_MULTIPROC_DIR" not in env and "PROMETHEUS_MULTIPROCESS_DIR" not in env


def test_start_refuses_a_taken_port(tmp_path, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
        monkeypatch.setenv("AIRLOOP__AIRFLOW__PORT", str(busy.getsockname()[1]))
        settings = read_config("local")
        with pytest.raises(stack.StackError, match="is taken"):
            stack.start(settings, quiet=True)
    assert not any(s["running"] for s in stack.status(settings)["services"].values())


def test_status_shows_each_services_memory(airflow_stack):
    settings, _, env = airflow_stack
    st = stack.status(settings)
    for name, service in st["services"].items():
        assert service["rss"] > 10 * 2**20 and service["processes"] >= 1, (name, service)
    assert st["memory"]["rss"] == sum(s["rss"] for s in st["services"].values())
    assert 0 < st["memory"]["pss"] <= st["memory"]["rss"]
    cli = [str(Path(sys.executable).parent / "airloop"), "status"]
    done = subprocess.run(
        cli, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    out = done.stdout
    assert "MiB in" in out and "memory:" in out and "proportional" in out


def _quiesce(client: AirflowClient, timeout: float = 600.0) -> float:
    """Pause every DAG and wait until no task is queued or running. ``down`` lets running tasks
    finish (up to ``airflow.scheduler_stop_seconds``, then kills them and says so); the stack's
    every-minute ingest cron and the runs it triggers would otherwise make that wait depend on
    how busy the machine is. Returns the seconds it waited."""
    t0 = time.monotonic()
    for dag in client.get("/dags", limit=100)["dags"]:
        client.patch(f"/dags/{dag['dag_id']}", {"is_paused": True})
    while True:
        busy = client.get("/dags/~/dagRuns/~/taskInstances", state=["queued", "running"], limit=100)
        if not busy["total_entries"]:
            return time.monotonic() - t0
        waiting = [f"{t['dag_id']}.{t['task_id']} ({t['state']})" for t in busy["task_instances"]]
        assert time.monotonic() - t0 < timeout, f"tasks still busy after {timeout:.0f}s: {waiting}"
        time.sleep(1)


@pytest.mark.e2e_last
def test_stop_stops_every_service(airflow_stack, capsys):
    """``airloop down`` on an idle stack: every process of the stack gone (trees and sessions),
    every port free, the database's socket gone, and nothing needed SIGKILL."""
    from tasks.platform.stack import database
    from tasks.platform.stack.processes import members

    settings, client, _ = airflow_stack
    quiet_after = _quiesce(client)
    running = {s.name: pid for s in stack.LOOP if (pid := stack.service_pid(settings, s)) is not None}
    everything = set().union(*(members(pid) for pid in running.values()))
    t0 = time.monotonic()
    stopped = stack.stop(settings, services=stack.LOOP)
    took = time.monotonic() - t0
    out = capsys.readouterr().out
    assert set(stopped) == set(running)
    assert "killed" not in out and "still running" not in out, out
    st = stack.status(settings, services=stack.LOOP)
    assert not any(s["running"] for s in st["services"].values()), st
    assert st["health"] is None
    assert not [pid for pid in everything if alive(pid)], "processes of the stack outlived `down`"
    for port in (settings.airflow.port, settings.mlflow.port, settings.serving.port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still taken"
    assert not (database.layout(settings).sockets / ".s.PGSQL.5432").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(stack.api_url(settings) + HEALTH_PATH, timeout=5)
    assert stack.stop(settings, quiet=True) == []  # stopping twice is fine
    with capsys.disabled():
        print(
            f"\n[e2e] airloop down: {len(stopped)} services, {len(everything)} processes, "
            f"{took:.1f}s (after {quiet_after:.0f}s for running tasks to finish)"
        )
