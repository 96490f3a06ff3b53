"""The production stack's servers as entries of the local stack's service table
(``tasks.platform.stack.Service``): started, checked and stopped by the same code as ``airloop
up``, each from what the compose file runs.

- ``redis``: ``deploy/redis/start.sh`` (the password, and the read-only ``serving`` user);
- ``s3``: moto's S3 server in place of MinIO (the same protocol);
- ``ray-head``: ``ray start --head`` with Ray's token authentication, its dashboard (the Serve
  REST API) on loopback; ``ray-worker``: a second node joining it with resources of its own.
  Both run with the serving application's credentials (S3, MLflow's ``serving`` user, Redis's
  ``serving`` user), as compose's ``ray-head``;
- ``mlflow``: ``deploy/mlflow/server.py`` (basic auth) on the ``mlflow`` role's databases, its
  artifacts proxied to S3.

PostgreSQL is the stack's own (``stack.POSTGRES``); Airflow's services are the stack's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import requests

from config import PROJECT_ROOT, Settings
from tasks.platform.prodlocal.state import (
    BUCKET,
    State,
    base_env,
    database_url,
    load_or_create,
)
from tasks.platform.stack import Service

RAY_AUTH = {"RAY_AUTH_MODE": "token"}
RAY_STOP_SECONDS = 60.0
"""A stopping Ray node drains for up to 30 s (``ray start --block`` on SIGTERM) before it stops."""


def _state(settings: Settings) -> State:
    return load_or_create(Path(settings.home))


def _ray() -> str:
    return str(Path(sys.executable).with_name("ray"))


# -- Redis ---------------------------------------------------------------------------------------


def _redis_command(settings: Settings) -> list[str]:
    state = _state(settings)
    folder = state.root / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    port = str(state.ports["redis"])
    script = str(PROJECT_ROOT / "deploy" / "redis" / "start.sh")
    return ["sh", script, "--port", port, "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]


def _redis_env(settings: Settings) -> dict[str, str]:
    s = _state(settings).secrets
    return {"REDIS_PASSWORD": s["REDIS_PASSWORD"], "REDIS_SERVING_PASSWORD": s["REDIS_SERVING_PASSWORD"]}


def _redis_answers(settings: Settings) -> bool:
    import redis  # noqa: PLC0415 - only when the production stack starts

    state = _state(settings)
    client = redis.Redis(port=state.ports["redis"], password=state.secrets["REDIS_PASSWORD"])
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


# -- S3 ------------------------------------------------------------------------------------------


def _s3_command(settings: Settings) -> list[str]:
    port = str(_state(settings).ports["s3"])
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port]


def _s3_answers(settings: Settings) -> bool:
    try:
        return requests.get(_state(settings).url("s3"), timeout=5).status_code < 500
    except requests.RequestException:
        return False


# -- Ray -----------------------------------------------------------------------------------------


def _ray_args(ports: dict[str, int]) -> list[str]:
    return [f"--{name}={port}" for name, port in ports.items()]


def _head_command(settings: Settings) -> list[str]:
    state = _state(settings)
    state.ray_temp.mkdir(parents=True, exist_ok=True)
    return [
        _ray(), "start", "--head", "--block", "--disable-usage-stats",
        f"--port={state.ports['ray_gcs']}", f"--dashboard-port={state.ports['ray_dashboard']}",
        "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--node-ip-address=127.0.0.1",
        "--num-cpus=1", f"--temp-dir={state.ray_temp}", *_ray_args(state.ray_ports["head"]),
    ]  # fmt: skip


def _worker_command(settings: Settings) -> list[str]:
    state = _state(settings)
    return [
        _ray(), "start", "--block", "--disable-usage-stats",
        f"--address=127.0.0.1:{state.ports['ray_gcs']}", "--node-ip-address=127.0.0.1",
        "--num-cpus=1", '--resources={"airloop_worker": 1}', *_ray_args(state.ray_ports["worker"]),
    ]  # fmt: skip


def ray_env(settings: Settings) -> dict[str, str]:
    """A Ray node's environment: the serving application's credentials (compose's ``ray-head``),
    Ray's token, Serve's mode and this machine's own Serve ports and HAProxy files."""
    from tasks.serving.process import local_ray_env, process_env  # noqa: PLC0415 - Ray's helpers

    state = _state(settings)
    s = state.secrets
    redis = f"127.0.0.1:{state.ports['redis']},username=serving,password={s['REDIS_SERVING_PASSWORD']}"
    return {
        **base_env(state),
        **RAY_AUTH,
        "RAY_AUTH_TOKEN": s["RAY_AUTH_TOKEN"],
        "AWS_ACCESS_KEY_ID": "airloop-serving",
        "AWS_SECRET_ACCESS_KEY": s["S3_SECRET_KEY"],
        "MLFLOW_TRACKING_USERNAME": "serving",
        "MLFLOW_TRACKING_PASSWORD": s["MLFLOW_SERVING_PASSWORD"],
        "AIRLOOP__FEAST__ONLINE_STORE__CONNECTION_STRING": redis,
        **process_env(settings),
        **local_ray_env(settings),
        # a cluster of two nodes: not the single-machine Ray the local serving process starts
        # (local_ray_env's "0" makes a joining node refuse the head)
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
    }


def ray_get(settings: Settings, path: str) -> requests.Response:
    """A GET on the Ray dashboard's REST API with the cluster's token."""
    state = _state(settings)
    headers = {"Authorization": f"Bearer {state.secrets['RAY_AUTH_TOKEN']}"}
    return requests.get(f"{state.url('ray_dashboard')}{path}", headers=headers, timeout=10)


def _head_answers(settings: Settings) -> bool:
    try:
        return ray_get(settings, "/api/version").status_code == 200
    except requests.RequestException:
        return False


def alive_nodes(settings: Settings) -> list[dict[str, Any]]:
    """The cluster's live nodes (the dashboard's node summary)."""
    nodes: list[dict[str, Any]] = ray_get(settings, "/nodes?view=summary").json()["data"]["summary"]
    return [n for n in nodes if (n.get("raylet") or {}).get("state") == "ALIVE"]


def _worker_joined(settings: Settings) -> bool:
    try:
        return len(alive_nodes(settings)) >= 2
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return False


# -- MLflow --------------------------------------------------------------------------------------


def _mlflow_command(settings: Settings) -> list[str]:
    m = settings.mlflow
    server = str(PROJECT_ROOT / "deploy" / "mlflow" / "server.py")
    args = ["--host", m.host, "--port", str(m.port), "--workers", "1"]
    return [sys.executable, server, *args, "--artifacts-destination", m.artifacts_destination]


def _mlflow_env(settings: Settings) -> dict[str, str]:
    """Compose's ``mlflow`` service: its databases, its users' store, its S3 credentials."""
    state = _state(settings)
    s = state.secrets
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "MLFLOW_BACKEND_STORE_URI": database_url(state, "mlflow", "mlflow"),
        "MLFLOW_AUTH_DATABASE_URI": database_url(state, "mlflow", "mlflow_auth"),
        "MLFLOW_AUTH_ADMIN_PASSWORD": s["MLFLOW_AUTH_ADMIN_PASSWORD"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": s["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        "MLFLOW_S3_ENDPOINT_URL": state.url("s3"),
        "AWS_ACCESS_KEY_ID": "airloop-mlflow",
        "AWS_SECRET_ACCESS_KEY": s["S3_SECRET_KEY"],
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def _loopback(settings: Settings) -> str:
    return "127.0.0.1"


REDIS = Service(
    "redis", _redis_command, port=lambda s: _state(s).ports["redis"], probe=_redis_answers,
    match="redis", host=_loopback, env=_redis_env, airflow=False, port_setting="",
)  # fmt: skip
S3 = Service(
    "s3", _s3_command, port=lambda s: _state(s).ports["s3"], probe=_s3_answers,
    match="moto", host=_loopback, airflow=False, port_setting="",
)  # fmt: skip
RAY_HEAD = Service(
    "ray-head", _head_command, port=lambda s: _state(s).ports["ray_dashboard"], probe=_head_answers,
    match="ray", host=_loopback, env=ray_env, airflow=False, port_setting="",
    stop_grace=lambda s: RAY_STOP_SECONDS,
)  # fmt: skip
RAY_WORKER = Service(
    "ray-worker", _worker_command, probe=_worker_joined, after=("ray-head",),
    match="ray", host=_loopback, env=ray_env, airflow=False, port_setting="",
)  # fmt: skip
MLFLOW = Service(
    "mlflow", _mlflow_command, port=lambda s: s.mlflow.port, ready_paths=("/health",),
    match="mlflow", host=_loopback, env=_mlflow_env, airflow=False, port_setting="AIRLOOP__MLFLOW__PORT",
)  # fmt: skip
BACKING = [REDIS, S3, RAY_HEAD, RAY_WORKER, MLFLOW]
"""What compose runs besides Postgres and Airflow (no Prometheus, Grafana, StatsD here)."""


def bucket_uri() -> str:
    return f"s3://{BUCKET}"


def describe(settings: Settings) -> str:
    """The services' addresses, for ``airloop prod-local up``."""
    state = _state(settings)
    return json.dumps({name: state.url(name) for name in state.ports}, indent=2)
