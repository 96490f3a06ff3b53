"""MLflow stopped during training (a fault of issue 14's list), with a server of this module's own
(``kill -9`` of the session's would fail the other tests): an outage shorter than the MLflow
client's retries is ridden over and the run registers one version; one longer fails the run with
an error that names the tracking server, and the task's retry (the same DAG run) registers exactly
one version, nothing of the failed attempt left behind."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config import Settings, read_config
from tasks.common.net import free_port
from tests.figures import keep

pytestmark = pytest.mark.slow


def _context(run_id: str) -> str:
    return json.dumps({"dag_id": "train", "run_id": run_id, "reason": "fault test"})


def _poll(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@pytest.fixture(scope="module")
def outage(world, tmp_path_factory) -> Iterator[Settings]:
    """Settings whose MLflow is a server of this module's (its store, its pid file)."""
    from tasks.platform import stack

    folder = tmp_path_factory.mktemp("mlflow-outage")
    env = {
        **world.env,
        "AIRLOOP__AIRFLOW__HOME": str(folder / "airflow"),
        "AIRLOOP__MLFLOW__PORT": str(free_port()),
        "AIRLOOP__METADATA_DB__MLFLOW_DATABASE": "null",
        "AIRLOOP__MLFLOW__BACKEND_STORE_URI": f"sqlite:///{folder}/mlflow.db",
        "AIRLOOP__MLFLOW__ARTIFACTS_DESTINATION": f"file://{folder}/artifacts",
        "AIRLOOP__MLFLOW__REGISTERED_MODEL": "fraud-outage",
        "AIRLOOP__TRAIN__FAMILIES": "[xgboost]",
    }
    settings = read_config("local", env)
    stack.start(settings, services=[stack.MLFLOW], timeout=180, quiet=True)
    try:
        yield settings
    finally:
        stack.stop(settings, services=[stack.MLFLOW], quiet=True)


def _train_in_background(settings: Settings, world, run_id: str) -> tuple[threading.Thread, dict[str, Any]]:
    from tasks.training.run import run

    out: dict[str, Any] = {}

    def train() -> None:
        try:
            uri, context = world.training_set_uri, _context(run_id)
            out["result"] = run(settings, uri, tracking_uri=settings.mlflow.url, run_context=context)
        except BaseException as exc:  # noqa: BLE001 - the test asserts on it
            out["error"] = exc

    thread = threading.Thread(target=train, name="train-under-outage", daemon=True)
    thread.start()
    return thread, out


def _kill_mlflow_once_training_logs(settings: Settings, run_id: str) -> float:
    """``kill -9`` of the MLflow server as soon as the training run exists; when it died."""
    from mlflow import MlflowClient

    from tasks.platform import stack

    mc = MlflowClient(tracking_uri=settings.mlflow.url)

    def started() -> bool:
        experiment = mc.get_experiment_by_name(settings.mlflow.experiment)
        return experiment is not None and bool(
            mc.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'")
        )

    _poll(started, 120, "the training run in MLflow")
    pid = stack.service_pid(settings, stack.MLFLOW)
    assert pid is not None
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the server and its uvicorn workers
    _poll(lambda: stack.service_pid(settings, stack.MLFLOW) is None, 30, "MLflow gone")
    return time.monotonic()


def _versions(settings: Settings) -> list[Any]:
    from mlflow import MlflowClient

    mc = MlflowClient(tracking_uri=settings.mlflow.url, registry_uri=settings.mlflow.url)
    return mc.search_model_versions(f"name='{settings.mlflow.registered_model}'")


def test_a_short_outage_is_ridden_over_and_one_version_registered(outage, world, capsys):
    from tasks.platform import stack

    run_id = "manual__outage-short"
    thread, out = _train_in_background(outage, world, run_id)
    killed = _kill_mlflow_once_training_logs(outage, run_id)
    stack.start(outage, services=[stack.MLFLOW], timeout=180, quiet=True)  # what `airloop up` does
    back = time.monotonic() - killed
    thread.join(timeout=600)
    assert not thread.is_alive() and "error" not in out, out.get("error")
    result = out["result"]
    assert result.registered and result.version
    assert [v.version for v in _versions(outage)] == [str(result.version)]
    keep("mlflow kill -9 in training", {"back_s": round(back, 1), "registered": result.version})
    with capsys.disabled():
        print(f"\n[fault] MLflow kill -9 in training: back in {back:.1f} s, registered v{result.version}")


def test_a_long_outage_fails_the_run_and_its_retry_registers_exactly_once(outage, world, monkeypatch):
    from tasks.platform import stack

    before = {v.version for v in _versions(outage)}
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # give up within seconds
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    run_id = "manual__outage-long"
    thread, out = _train_in_background(outage, world, run_id)
    _kill_mlflow_once_training_logs(outage, run_id)
    thread.join(timeout=600)
    assert not thread.is_alive()
    error = out.get("error")
    assert error is not None, "training went on without its tracking server"
    said = f"{type(error).__name__}: {error}"
    assert outage.mlflow.url.split("//")[1] in said or "Connection" in said, said

    stack.start(outage, services=[stack.MLFLOW], timeout=180, quiet=True)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
    thread, out = _train_in_background(outage, world, run_id)  # the task's retry: the same DAG run
    thread.join(timeout=600)
    assert "error" not in out, out.get("error")
    new = [v for v in _versions(outage) if v.version not in before]
    assert [v.version for v in new] == [str(out["result"].version)], "one version for the DAG run"
