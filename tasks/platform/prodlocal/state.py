"""What one production-profile run on this machine is made of: its folder, its ports and its
secrets (generated once and kept, 0600, so ``up``, ``run`` and ``down`` agree), and the
environment each kind of process gets from them.

The environment is the production profile (``config/production.yaml``) with every ``${VAR}`` it
uses set to a generated value, and ``AIRLOOP__*`` overrides only where this machine differs from
a cluster: service addresses (ports on loopback instead of compose host names), training as a
child process instead of a Kubernetes pod, the rollout judging ``/metrics`` directly (no
Prometheus here), no Pushgateway, and the loop at CI scale (``tasks.platform.scale``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from config import Settings, read_config, secret_variables
from tasks.common.net import free_ports
from tasks.platform.scale import SMALL_LOOP

PORT_NAMES = ("redis", "s3", "mlflow", "airflow", "serving", "ray_gcs", "ray_dashboard")
HEAD_PORTS = (
    "node-manager-port",
    "object-manager-port",
    "ray-client-server-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)
WORKER_PORTS = tuple(p for p in HEAD_PORTS if p != "ray-client-server-port")
WORKER_RANGE = 21
"""Ports each Ray node's worker processes listen on (a contiguous range of its own)."""
EXTRA_SECRETS = (
    "AIRFLOW_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "REDIS_SERVING_PASSWORD",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "MLFLOW_TRAINING_PASSWORD",
    "MLFLOW_SERVING_PASSWORD",
    "AIRFLOW_ADMIN_PASSWORD",
    "S3_SECRET_KEY",
)
"""Secrets of the compose stack (``.env.example``) that the profile's YAML does not name: the
databases' roles, Redis's read-only user, MLflow's users, the Airflow login, S3."""
NOT_SECRET = ("MLFLOW_PUBLIC_URL",)
BUCKET = "airloop"
PIPELINE_KEY = "airloop-pipeline"


@dataclass(frozen=True)
class State:
    """A run's folder, ports and secrets (``<root>/prod-local.json``)."""

    root: Path
    ports: dict[str, int]
    ray_ports: dict[str, dict[str, int]]
    secrets: dict[str, str]

    @property
    def ray_temp(self) -> Path:
        """Ray's session folder: short (its socket paths are limited), one per run folder."""
        return Path("/tmp") / f"alp-{hashlib.sha256(str(self.root).encode()).hexdigest()[:10]}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


def state_file(root: Path) -> Path:
    return root / "prod-local.json"


def _new_ports() -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    ray: dict[str, dict[str, int]] = {}
    for node, names in (("head", HEAD_PORTS), ("worker", WORKER_PORTS)):
        ray[node] = dict(zip(names, free_ports(len(names)), strict=True))
        first = free_ports(WORKER_RANGE, contiguous=True)[0]
        ray[node] |= {"min-worker-port": first, "max-worker-port": first + WORKER_RANGE - 1}
    return ports, ray


def _new_secrets() -> dict[str, str]:
    names = [n for n in secret_variables("production") if n not in NOT_SECRET] + list(EXTRA_SECRETS)
    return {name: secrets.token_urlsafe(32) for name in dict.fromkeys(names)}


def load_or_create(root: Path) -> State:
    """The run's state, made on first use (ports drawn free now, secrets generated) and reused."""
    root = root.resolve()
    path = state_file(root)
    if path.exists():
        saved = json.loads(path.read_text())
        return State(root, saved["ports"], saved["ray_ports"], saved["secrets"])
    root.mkdir(parents=True, exist_ok=True)
    ports, ray = _new_ports()
    state = State(root, ports, ray, _new_secrets())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"ports": ports, "ray_ports": ray, "secrets": state.secrets}, fh, indent=2)
    tmp.replace(path)
    return state


def sockets_dir(state: State) -> Path:
    """Where the stack's PostgreSQL listens (``tasks.platform.stack.database.layout``)."""
    from tasks.platform.stack.database import layout  # noqa: PLC0415 - psycopg: only when asked

    env = {**os.environ, **_profile_env(state)}
    return layout(read_config("production", env)).sockets


def database_url(state: State, role: str, database: str, driver: str = "postgresql+psycopg") -> str:
    """A role's URL to its database on the stack's PostgreSQL (unix socket, password login)."""
    password = state.secrets[f"{role.upper()}_DB_PASSWORD"]
    return f"{driver}://{role}:{password}@/{database}?host={sockets_dir(state)}"


def _addresses(state: State) -> dict[str, str]:
    """Where each service is on this machine, instead of the compose network's host names."""
    a = "AIRLOOP__"
    return {
        f"{a}AIRFLOW__HOME": str(state.root / "airflow"),
        f"{a}AIRFLOW__HOST": "127.0.0.1",
        f"{a}AIRFLOW__PORT": str(state.ports["airflow"]),
        f"{a}AIRFLOW__PASSWORD": state.secrets["AIRFLOW_ADMIN_PASSWORD"],
        f"{a}AIRFLOW__API_WORKERS": "1",
        f"{a}AIRFLOW__PARALLELISM": "3",
        f"{a}MLFLOW__TRACKING_URI": state.url("mlflow"),
        f"{a}MLFLOW__HOST": "127.0.0.1",
        f"{a}MLFLOW__PORT": str(state.ports["mlflow"]),
        f"{a}STORAGE__S3_ENDPOINT_URL": state.url("s3"),
        f"{a}FEAST__ONLINE_STORE__CONNECTION_STRING": (
            f"127.0.0.1:{state.ports['redis']},password={state.secrets['REDIS_PASSWORD']}"
        ),
        # serving.host stays the profile's 0.0.0.0: the head's HAProxy reaches the replicas on
        # the other node at the node's address (Ray gives both nodes the machine's), not loopback
        f"{a}SERVING__PROXY_LOCATION": "HeadOnly",
        f"{a}SERVING__PORT": str(state.ports["serving"]),
        f"{a}SERVING__CLIENT_URL": state.url("serving"),
        f"{a}SERVING__DASHBOARD_URL": state.url("ray_dashboard"),
        f"{a}SERVING__INFERENCE_LOG__WAL_DIR": str(state.root / "wal"),
    }


def _this_machine(state: State) -> dict[str, str]:
    """No Kubernetes, Prometheus or Pushgateway here; the simulator replays history."""
    a = "AIRLOOP__"
    return {
        f"{a}TRAINING_POD__RUNNER": "local",
        f"{a}ROLLOUT__METRICS_SOURCE": "serving",
        f"{a}ROLLOUT__PROMETHEUS_URL": "null",
        f"{a}MONITOR__PUSHGATEWAY_URL": "null",
        f"{a}MONITOR__CRON": "* * * * *",
        f"{a}INGEST__MAX_AGE_HOURS": "null",
        # `down` waits this long for running tasks (a deploy step holds for minutes): not 180 s
        f"{a}AIRFLOW__SCHEDULER_STOP_SECONDS": "20",
    }


def _profile_env(state: State) -> dict[str, str]:
    """The profile's environment without the URLs that name the database's socket."""
    s3, mlflow = state.url("s3"), state.url("mlflow")
    profile_secrets = {n: v for n, v in state.secrets.items() if n in secret_variables("production")}
    env = {
        "AIRLOOP_PROFILE": "production",
        "AIRLOOP_HOME": str(state.root),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3,
        "FEAST_S3_ENDPOINT_URL": s3,
        "MLFLOW_TRACKING_URI": mlflow,
        "MLFLOW_PUBLIC_URL": mlflow,
        "GX_ANALYTICS_ENABLED": "False",
        "RAY_USAGE_STATS_ENABLED": "0",
        **profile_secrets,
        **_addresses(state),
        **_this_machine(state),
        **SMALL_LOOP,
    }
    return env


def _pod_env(state: State) -> str:
    """``training_pod.env`` for this machine: what compose's ``train`` service holds (S3 and
    MLflow's ``training`` user; no serving, Ray or Redis secret; the registry without password)."""
    s3 = state.url("s3")
    registry = f"postgresql+psycopg://feast@/feast?host={sockets_dir(state)}"
    return (
        f"{{AWS_ENDPOINT_URL_S3: '{s3}', MLFLOW_S3_ENDPOINT_URL: '{s3}', AWS_ACCESS_KEY_ID: {PIPELINE_KEY}, "
        "MLFLOW_TRACKING_USERNAME: training, AIRLOOP__SERVING__ADMIN_TOKEN: '', "
        "AIRLOOP__SERVING__RAY_AUTH_TOKEN: '', AIRLOOP__FEAST__ONLINE_STORE__CONNECTION_STRING: '', "
        f"AIRLOOP__FEAST__REGISTRY: '{registry}'}}"
    )


def base_env(state: State) -> dict[str, str]:
    """What every process running airloop code gets (as compose's ``x-airloop-env`` plus the
    profile's own secrets and the ``feast`` role's registry): no per-component credentials."""
    return {
        **_profile_env(state),
        "AIRLOOP__FEAST__REGISTRY": database_url(state, "feast", "feast"),
        "AIRLOOP__TRAINING_POD__ENV": _pod_env(state),
    }


def pipeline_env(state: State) -> dict[str, str]:
    """The Airflow services' (and a user's shell's) credentials: S3's pipeline user, MLflow's
    ``training``, the ``airflow`` role's metadata database, the ``feast`` role's registry."""
    s3 = state.url("s3")
    key, secret = PIPELINE_KEY, state.secrets["S3_SECRET_KEY"]
    conn = database_url(state, "airflow", "airflow")
    aws = {"conn_type": "aws", "login": key, "password": secret}
    aws["extra"] = {"endpoint_url": s3, "region_name": "us-east-1"}  # type: ignore[assignment]
    return {
        **base_env(state),
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "MLFLOW_TRACKING_USERNAME": "training",
        "MLFLOW_TRACKING_PASSWORD": state.secrets["MLFLOW_TRAINING_PASSWORD"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": conn,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": conn,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
    }


def settings(state: State, *, check: bool = True) -> Settings:
    """The production settings of this run (``check``: refuse missing or example secrets, as
    ``load_config`` does in production)."""
    env = {**os.environ, **base_env(state)}
    return read_config("production", env, check_secrets=check)
