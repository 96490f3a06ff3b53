"""The one environment every Airflow process of the local stack shares.

Home, metadata DB, executor, auth, ports and secrets come from ``Settings``; secrets are
generated once per home and reused, so every process and every restart agree on them.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from config import PROJECT_ROOT, Settings, airloop_home
from tasks.common.secrets import mlflow_credentials
from tasks.platform.stack.database import airflow_conn

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
SECRET_NAMES = ("jwt_secret", "api_secret_key", "fernet_key")


def airflow_home(settings: Settings) -> Path:
    return Path(settings.airflow.home)


def run_dir(settings: Settings) -> Path:
    """Pid files live here, one per service."""
    return airflow_home(settings) / "run"


def log_dir(settings: Settings) -> Path:
    """Service logs (stdout+stderr of each process); task logs go beside them in Airflow's tree."""
    return airflow_home(settings) / "logs"


def api_url(settings: Settings) -> str:
    return settings.airflow.url


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner reads, atomically (readers never see half of it)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def _secrets(home: Path) -> dict[str, str]:
    """Secrets generated once per home and reused, so every process and restart agree.

    The scheduler signs task JWTs that the api-server verifies: a per-process random secret (what
    Airflow does when none is set) makes every task fail authentication.
    """
    path = home / "airloop-secrets.json"
    if path.exists():
        stored = json.loads(path.read_text())
        return {name: str(stored[name]) for name in SECRET_NAMES}
    home.mkdir(parents=True, exist_ok=True)
    secrets = {
        "jwt_secret": base64.urlsafe_b64encode(os.urandom(64)).decode(),
        "api_secret_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    _write_private(path, json.dumps(secrets, indent=2) + "\n")
    return secrets


def passwords_file(settings: Settings) -> Path:
    return airflow_home(settings) / "simple_auth_manager_passwords.json"


def _write_passwords(settings: Settings) -> Path:
    """SimpleAuthManager reads ``{user: password}`` from this file; it only generates a random
    password for users missing from it, so writing ours pins the configured password."""
    path = passwords_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    wanted = {settings.airflow.username: settings.airflow.password}
    if not path.exists() or json.loads(path.read_text() or "{}") != wanted:
        _write_private(path, json.dumps(wanted) + "\n")
    return path


def _core_vars(settings: Settings, home: Path, dags: Path, secrets: dict[str, str]) -> dict[str, str]:
    """``[core]`` and ``[database]``: where DAGs and plugins are, the executor, auth, the DB."""
    a = "AIRFLOW__CORE__"
    return {
        f"{a}DAGS_FOLDER": str(dags),
        f"{a}PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        f"{a}LOAD_EXAMPLES": "False",
        f"{a}EXECUTOR": "LocalExecutor",
        f"{a}PARALLELISM": str(settings.airflow.workers),
        f"{a}DAGS_ARE_PAUSED_AT_CREATION": "False",
        f"{a}FERNET_KEY": secrets["fernet_key"],
        f"{a}AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        f"{a}SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow.username}:admin",
        f"{a}SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        f"{a}SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(_write_passwords(settings)),
        f"{a}EXECUTION_API_SERVER_URL": f"{api_url(settings)}/execution/",
        **airflow_conn(settings),
    }


def _server_vars(settings: Settings, home: Path, secrets: dict[str, str]) -> dict[str, str]:
    """The api-server's bind and secrets, and the dag-processor's and scheduler's pace."""
    a, airflow = "AIRFLOW__", settings.airflow
    return {
        f"{a}API__HOST": settings.airflow.host,
        f"{a}API__PORT": str(settings.airflow.port),
        f"{a}API__WORKERS": str(settings.airflow.api_workers),
        f"{a}API__SECRET_KEY": secrets["api_secret_key"],
        f"{a}API_AUTH__JWT_SECRET": secrets["jwt_secret"],
        # New DAG files are listed every refresh_interval, known ones re-parsed every
        # min_file_process_interval: seconds instead of the 5 min / 30 s defaults.
        f"{a}DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        f"{a}DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        f"{a}DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "2",
        f"{a}DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "dag_bundles"),
        f"{a}DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
        f"{a}SCHEDULER__CATCHUP_BY_DEFAULT": "False",
        f"{a}SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(airflow.task_heartbeat_timeout_seconds),
        f"{a}SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": f"{airflow.orphaned_tasks_check_seconds:g}",
    }


def _malloc_vars(settings: Settings) -> dict[str, str]:
    """glibc's malloc arenas (``airflow.malloc_arena_max``): every service gets this environment
    and passes it on to what it starts (task processes, the training child, Ray's workers)."""
    arenas = settings.airflow.malloc_arena_max
    return {"MALLOC_ARENA_MAX": str(arenas)} if arenas is not None else {}


def airflow_vars(settings: Settings, *, dags_folder: str | Path | None = None) -> dict[str, str]:
    """Only the variables airloop sets (what ``airloop env`` prints); ``airflow_env`` adds the rest."""
    home = airflow_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    dags = Path(dags_folder).resolve() if dags_folder else PROJECT_ROOT / "dags"
    secrets = _secrets(home)
    pythonpath = [str(PROJECT_ROOT)]
    pythonpath += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {
        "AIRFLOW_HOME": str(home),
        **_core_vars(settings, home, dags, secrets),
        **_server_vars(settings, home, secrets),
        "MLFLOW_TRACKING_URI": settings.mlflow.url,
        "MLFLOW_DISABLE_TELEMETRY": "true",  # nothing leaves the machine; its thread races os.environ
        **mlflow_credentials(settings),  # tasks, training and serving log in to the local MLflow
        "AIRLOOP_PROFILE": settings.profile,
        # the home these settings resolved, not the caller's: a restart from another shell (or a
        # test's own environment) must not point the services at another data dir
        "AIRLOOP_HOME": settings.home or str(airloop_home()),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(pythonpath)),
        **_malloc_vars(settings),
    }
    for name, value in os.environ.items():
        if name.startswith("AIRLOOP_") and name not in env:
            env[name] = value
    return env


PER_PROCESS_VARS = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")
"""Set by a library inside the process that starts the stack, naming its own temporary files:
importing Feast points them at a directory it deletes when that process exits. Services that
inherited them failed every later Feast import ("No such file ... feast_metrics_*") once the
``airloop demo`` that started the stack had ended."""


def airflow_env(settings: Settings, *, dags_folder: str | Path | None = None) -> dict[str, str]:
    """The full environment for every Airflow process of this stack (the caller's env + ours).

    Creates the home, its secrets and the passwords file on first use, so ``airflow ...`` run by
    hand with this environment (``eval "$(airloop env)"``) talks to the same stack. The caller's
    per-process variables (``PER_PROCESS_VARS``) are not passed on.
    """
    inherited = {k: v for k, v in os.environ.items() if k not in PER_PROCESS_VARS}
    return {**inherited, **airflow_vars(settings, dags_folder=dags_folder)}
