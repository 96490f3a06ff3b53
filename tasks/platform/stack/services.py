"""The services of the local stack, as one table: how each starts, where it listens, when it is
ready, what it waits for. Adding a server to the stack is one more ``Service`` entry."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config import Settings
from tasks.common.secrets import (
    MLFLOW_SESSION_KEY,
    MLFLOW_USER,
    local_mlflow_auth,
    local_secret,
    mlflow_admin_password,
    secrets_dir,
)
from tasks.platform.airflow_client import HEALTH_PATH
from tasks.platform.stack.database import answers, mlflow_backend, postgres_enabled, run_as
from tasks.platform.stack.environment import log_dir, run_dir
from tasks.platform.stack.postgres import server_command

EXECUTION_HEALTH_PATH = "/execution/health"


def client_host(host: str) -> str:
    """The address to reach a server bound to ``host`` (a wildcard bind is reached on loopback)."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _no_port(settings: Settings) -> int | None:
    return None


def _airflow_host(settings: Settings) -> str:
    return settings.airflow.host


def _no_env(settings: Settings) -> dict[str, str]:
    return {}


def _always(settings: Settings) -> bool:
    return True


def _no_grace(settings: Settings) -> float:
    return 0.0


def _no_user(settings: Settings) -> str | None:
    return None


@dataclass(frozen=True)
class Service:
    """One long-running process of the stack.

    ``ready_paths`` are HTTP paths on ``host:port`` that must answer 200; ``health_key`` names
    its entry in Airflow's ``/api/v2/monitor/health`` JSON; ``after`` lists services that must be
    ready before this one is launched. A non-Airflow server (MLflow) is one more entry with its
    own command, host, port, ready path and environment, and ``airflow=False``.
    """

    name: str
    command: Callable[[Settings], list[str]]
    port: Callable[[Settings], int | None] = _no_port
    ready_paths: tuple[str, ...] = ()
    health_key: str | None = None
    after: tuple[str, ...] = ()
    match: str = "airflow"
    """A substring of the process command line, so a recycled pid is not taken for ours."""
    host: Callable[[Settings], str] = _airflow_host
    env: Callable[[Settings], dict[str, str]] = _no_env
    airflow: bool = True
    """An Airflow component: needs the migrated metadata DB before it starts."""
    port_setting: str = "AIRLOOP__AIRFLOW__PORT"
    term_group: bool = True
    """SIGTERM goes to the whole process group; ``False``: to the leader only, which stops its own
    children (Ray's processes must outlive the serving process's shutdown, which talks to them)."""
    stop_signal: signal.Signals = signal.SIGTERM
    """What asks it to stop (PostgreSQL: SIGINT, its fast shutdown; SIGTERM would wait for clients)."""
    probe: Callable[[Settings], bool] | None = None
    """Readiness besides HTTP paths (PostgreSQL: our login answers a query)."""
    enabled: Callable[[Settings], bool] = _always
    """Part of the stack under these settings (PostgreSQL: only with ``metadata_db.kind: postgres``)."""
    user: Callable[[Settings], str | None] = _no_user
    """The system user it runs as (None: ours)."""
    stop_grace: Callable[[Settings], float] = _no_grace
    """How long ``stop`` waits for it at least (the scheduler: its running tasks finish first)."""
    stop_note: str = ""
    """Why its stop may take that long, said while ``stop`` waits."""


def airflow_command(*args: str) -> list[str]:
    """``airflow ARGS`` from this interpreter's environment (its script, or ``-m airflow``)."""
    script = Path(sys.executable).parent / "airflow"
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "airflow", *args]


def mlflow_command(settings: Settings) -> list[str]:
    """``mlflow server`` (through ``mlflow_exec``: no waiting parent) on the configured stores; a
    local SQLite file and artifact folder are created first (the server does not create the
    database's directory). The backend store URI goes in the environment (``MLFLOW_BACKEND_STORE_URI``)."""
    m = settings.mlflow
    backend = mlflow_backend(settings)
    for store in (backend, m.auth_store_uri):
        if store.startswith("sqlite:///"):
            Path(store.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if m.artifacts_destination.startswith("file://"):
        Path(m.artifacts_destination.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    return [
        sys.executable,
        "-m",
        "tasks.platform.stack.mlflow_exec",  # `mlflow server`, which becomes its uvicorn (exec)
        # the backend store (with its password) comes from the environment, not the command line
        "--artifacts-destination",
        m.artifacts_destination,
        "--serve-artifacts",
        "--host",
        m.host,
        "--port",
        str(m.port),
        "--workers",
        "1",
    ]


def mlflow_env(settings: Settings) -> dict[str, str]:
    """The server's stores, and its basic auth (``mlflow_exec`` turns it on) with the local
    secrets: every client logs in (``tasks.common.secrets.mlflow_credentials``)."""
    env = {
        # The server's job runner (GenAI evaluation jobs) starts half a dozen worker processes
        # that airloop never uses; without it the server starts in half the time on two cores.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_BACKEND_STORE_URI": mlflow_backend(settings),
    }
    if local_mlflow_auth(settings):
        env |= {
            "MLFLOW_AUTH_DATABASE_URI": settings.mlflow.auth_store_uri,
            "MLFLOW_AUTH_ADMIN_USERNAME": MLFLOW_USER,
            "MLFLOW_AUTH_ADMIN_PASSWORD": mlflow_admin_password(settings),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": local_secret(settings, MLFLOW_SESSION_KEY),
            "AIRLOOP_MLFLOW_AUTH_DIR": str(secrets_dir(settings)),
        }
    return env


MLFLOW = Service(
    "mlflow",
    mlflow_command,
    port=lambda s: s.mlflow.port,
    ready_paths=("/health",),
    match="mlflow",
    host=lambda s: s.mlflow.host,
    env=mlflow_env,
    after=("postgres",),
    airflow=False,
    port_setting="AIRLOOP__MLFLOW__PORT",
)

POSTGRES = Service(
    "postgres",
    server_command,
    probe=answers,
    match="postgres",
    host=lambda s: "",
    airflow=False,
    port_setting="",
    term_group=False,
    stop_signal=signal.SIGINT,
    enabled=postgres_enabled,
    user=run_as,
)
"""The metadata database (``metadata_db.kind: postgres``): unix socket only, so no port."""

SERVICES: list[Service] = [
    POSTGRES,
    Service(
        "api-server",
        lambda s: airflow_command("api-server", "--host", s.airflow.host, "--port", str(s.airflow.port)),
        port=lambda s: s.airflow.port,
        ready_paths=(HEALTH_PATH, EXECUTION_HEALTH_PATH),
        after=("postgres",),
    ),
    Service(
        "dag-processor",
        lambda s: airflow_command("dag-processor"),
        health_key="dag_processor",
        after=("postgres",),
    ),
    # The scheduler waits for the api-server: a task queued before the execution API answers
    # fails after the task supervisor's retries (the first scheduled run of a fresh stack did).
    # --skip-serve-logs: task logs are local files the api-server reads directly, and the log
    # servers' fixed ports (8793/8794) would collide between two stacks on one machine.
    Service(
        "scheduler",
        lambda s: airflow_command("scheduler", "--skip-serve-logs"),
        health_key="scheduler",
        after=("postgres", "api-server"),
        stop_grace=lambda s: s.airflow.scheduler_stop_seconds,
        stop_note="its running tasks finish first",
    ),
    Service(
        "triggerer",
        lambda s: airflow_command("triggerer", "--skip-serve-logs"),
        health_key="triggerer",
        after=("postgres", "api-server"),
    ),
    MLFLOW,
]
"""The database, Airflow and MLflow: what ``airloop up`` starts."""

SERVE = Service(
    "serve",
    # The serving application on a local Ray (serve.run): what the deploy DAG rolls models out on.
    lambda s: [sys.executable, "-m", "tasks.serving", "run"],
    port=lambda s: s.serving.port,
    ready_paths=("/-/healthz",),  # Ray Serve's proxy; the app itself may have no champion yet
    match="tasks.serving",
    host=lambda s: s.serving.host,
    env=lambda s: {"RAY_USAGE_STATS_ENABLED": "0"},
    airflow=False,
    port_setting="AIRLOOP__SERVING__PORT",
    term_group=False,
)
LOOP: list[Service] = [*SERVICES, SERVE]
"""The whole loop: ``airloop up --serve`` (the demo starts it too)."""


def enabled(settings: Settings, services: list[Service]) -> list[Service]:
    """The services that are part of the stack under these settings."""
    return [s for s in services if s.enabled(settings)]


def pid_file(settings: Settings, service: Service) -> Path:
    return run_dir(settings) / f"{service.name}.pid"


def service_log(settings: Settings, service: Service) -> Path:
    return log_dir(settings) / f"{service.name}.log"
