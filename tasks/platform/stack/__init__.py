"""The local stack of airloop: Airflow 3 (api-server, scheduler, dag-processor, triggerer), the
MLflow tracking server and, on request, the serving application.

``airflow standalone`` runs everything in one foreground process with settings we cannot pin
(random passwords, its own secrets); this package starts the same components as background
processes with one environment (``environment.airflow_env``) so the CLI, the tests and the demo
all see the same stack: PostgreSQL (or SQLite, by choice) and the LocalExecutor under
``settings.airflow.home``, SimpleAuthManager with the configured admin password, the project's
``dags/`` and ``plugins/``. MLflow runs as ``mlflow server`` with its backend on the same
PostgreSQL (a database of its own) and artifacts proxied by the server into a local folder under
the data dir. ``LOOP`` adds the serving application (``python -m tasks.serving``: Ray Serve on a
local Ray), which the deploy DAG rolls models out on.

    airloop up [--serve] | down | status | env

It never imports Airflow (``tasks/`` must stay importable without it): every Airflow process is a
subprocess, and health comes from the api-server's REST API.

Parts: ``environment`` (the Airflow processes' environment and secrets), ``database`` and
``postgres`` (the metadata database the stack starts itself), ``services`` (the table of
services), ``processes`` (pid files, signals, reaping), ``health`` (readiness), ``control``
(start, stop), ``report`` and ``memory`` (status, with each service's memory). This module
re-exports what callers use.
"""

from tasks.platform.stack.control import StackError, start
from tasks.platform.stack.environment import (
    airflow_env,
    airflow_home,
    airflow_vars,
    api_url,
    log_dir,
    run_dir,
)
from tasks.platform.stack.health import fetch_health
from tasks.platform.stack.processes import service_pid, tail
from tasks.platform.stack.report import status, status_lines
from tasks.platform.stack.services import (
    LOOP,
    MLFLOW,
    POSTGRES,
    SERVE,
    SERVICES,
    Service,
    pid_file,
    service_log,
)
from tasks.platform.stack.stopping import stop

__all__ = [
    "LOOP",
    "MLFLOW",
    "POSTGRES",
    "SERVE",
    "SERVICES",
    "Service",
    "StackError",
    "airflow_env",
    "airflow_home",
    "airflow_vars",
    "api_url",
    "fetch_health",
    "log_dir",
    "pid_file",
    "run_dir",
    "service_log",
    "service_pid",
    "start",
    "status",
    "status_lines",
    "stop",
    "tail",
]
