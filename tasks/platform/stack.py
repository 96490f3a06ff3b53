"""The local stack of airloop: Airflow 3 (api-server, scheduler, dag-processor, triggerer) and
the MLflow tracking server.

``airflow standalone`` runs everything in one foreground process with settings we cannot pin
(random passwords, its own secrets); this module starts the same components as background
processes with one environment (``airflow_env``) so the CLI, the tests and the demo all see the
same stack: SQLite and the LocalExecutor under ``cfg.airflow.home``, SimpleAuthManager with the
configured admin password, the project's ``dags/`` and ``plugins/``.

    python -m tasks.platform.stack start|stop|restart|status|env [--serve]

``--serve`` starts the serving application too (``python -m tasks.serving``: Ray Serve on a local
Ray, ``serve.run``), which the deploy DAG rolls models out on.

MLflow runs as ``mlflow server`` with a SQLite backend and artifacts proxied by the server
(``--serve-artifacts``) into a local folder, both under the data dir (``mlflow`` in config).

It never imports Airflow (``tasks/`` must stay importable without it): every Airflow process is a
subprocess, and health comes from the api-server's REST API. ``AirflowClient`` is the small typed
REST client that tests and tools use against a running stack.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from config import PROJECT_ROOT, Settings, airloop_home, load_config
from tasks.platform.airflow_client import HEALTH_PATH

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
EXECUTION_HEALTH_PATH = "/execution/health"


# --------------------------------------------------------------------------------------------
# Paths and the environment of every Airflow process
# --------------------------------------------------------------------------------------------


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


def _secrets(home: Path) -> dict[str, str]:
    """Secrets generated once per home and reused, so every process and restart agree.

    The scheduler signs task JWTs that the api-server verifies: a per-process random secret (what
    Airflow does when none is set) makes every task fail authentication.
    """
    path = home / "airloop-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    home.mkdir(parents=True, exist_ok=True)
    secrets = {
        "jwt_secret": base64.urlsafe_b64encode(os.urandom(64)).decode(),
        "api_secret_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(secrets, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
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
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(wanted) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)
    return path


def airflow_vars(settings: Settings, *, dags_folder: str | Path | None = None) -> dict[str, str]:
    """Only the variables airloop sets (what ``env`` prints); ``airflow_env`` adds the rest."""
    home = airflow_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    secrets = _secrets(home)
    pw_file = _write_passwords(settings)
    dags = Path(dags_folder).resolve() if dags_folder else PROJECT_ROOT / "dags"
    url = api_url(settings)
    pythonpath = [str(PROJECT_ROOT)]
    pythonpath += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    a = "AIRFLOW__"
    env = {
        "AIRFLOW_HOME": str(home),
        f"{a}CORE__DAGS_FOLDER": str(dags),
        f"{a}CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        f"{a}CORE__LOAD_EXAMPLES": "False",
        f"{a}CORE__EXECUTOR": "LocalExecutor",
        f"{a}CORE__PARALLELISM": str(settings.airflow.parallelism),
        f"{a}CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        f"{a}CORE__FERNET_KEY": secrets["fernet_key"],
        f"{a}CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        f"{a}CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow.username}:admin",
        f"{a}CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        f"{a}CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(pw_file),
        f"{a}CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        f"{a}DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        f"{a}API__HOST": settings.airflow.host,
        f"{a}API__PORT": str(settings.airflow.port),
        f"{a}API__WORKERS": "1",
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
        "MLFLOW_TRACKING_URI": settings.mlflow.url,
        "AIRLOOP_PROFILE": settings.profile,
        "AIRLOOP_HOME": str(airloop_home()),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(pythonpath)),
    }
    for name, value in os.environ.items():
        if name.startswith("AIRLOOP_") and name not in env:
            env[name] = value
    return env


def airflow_env(settings: Settings, *, dags_folder: str | Path | None = None) -> dict[str, str]:
    """The full environment for every Airflow process of this stack (the caller's env + ours).

    Creates the home, its secrets and the passwords file on first use, so ``airflow ...`` run by
    hand with this environment (``eval "$(python -m tasks.platform.stack env)"``) talks to the same stack.
    """
    return {**os.environ, **airflow_vars(settings, dags_folder=dags_folder)}


# --------------------------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------------------------


def _airflow_cmd(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "airflow"
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "airflow", *args]


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
    port: Callable[[Settings], int | None] = lambda s: None
    ready_paths: tuple[str, ...] = ()
    health_key: str | None = None
    after: tuple[str, ...] = ()
    match: str = "airflow"
    """A substring of the process command line, so a recycled pid is not taken for ours."""
    host: Callable[[Settings], str] = lambda s: s.airflow.host
    env: Callable[[Settings], dict[str, str]] = lambda s: {}
    airflow: bool = True
    """An Airflow component: needs the migrated metadata DB before it starts."""
    port_setting: str = "AIRLOOP__AIRFLOW__PORT"
    term_group: bool = True
    """SIGTERM goes to the whole process group; ``False``: to the leader only, which stops its own
    children (Ray's processes must outlive the serving process's shutdown, which talks to them)."""


def _client_host(host: str) -> str:
    """The address to reach a server bound to ``host`` (a wildcard bind is reached on loopback)."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _mlflow_cmd(settings: Settings) -> list[str]:
    """``mlflow server`` on the configured stores; a local SQLite file and artifact folder are
    created first (the server does not create the database's directory)."""
    m = settings.mlflow
    if m.backend_store_uri.startswith("sqlite:///"):
        Path(m.backend_store_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if m.artifacts_destination.startswith("file://"):
        Path(m.artifacts_destination.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    script = Path(sys.executable).parent / "mlflow"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]
    return [
        *base,
        "server",
        "--backend-store-uri",
        m.backend_store_uri,
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


MLFLOW = Service(
    "mlflow",
    _mlflow_cmd,
    port=lambda s: s.mlflow.port,
    ready_paths=("/health",),
    match="mlflow",
    host=lambda s: s.mlflow.host,
    # The server's job runner (GenAI evaluation jobs) starts half a dozen worker processes that
    # airloop never uses; without it the server starts in half the time on two cores.
    env=lambda s: {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    airflow=False,
    port_setting="AIRLOOP__MLFLOW__PORT",
)


SERVICES: list[Service] = [
    Service(
        "api-server",
        lambda s: _airflow_cmd("api-server", "--host", s.airflow.host, "--port", str(s.airflow.port)),
        port=lambda s: s.airflow.port,
        ready_paths=(HEALTH_PATH, EXECUTION_HEALTH_PATH),
    ),
    Service("dag-processor", lambda s: _airflow_cmd("dag-processor"), health_key="dag_processor"),
    # The scheduler waits for the api-server: a task queued before the execution API answers
    # fails after the task supervisor's retries (the first scheduled run of a fresh stack did).
    # --skip-serve-logs: task logs are local files the api-server reads directly, and the log
    # servers' fixed ports (8793/8794) would collide between two stacks on one machine.
    Service(
        "scheduler",
        lambda s: _airflow_cmd("scheduler", "--skip-serve-logs"),
        health_key="scheduler",
        after=("api-server",),
    ),
    Service(
        "triggerer",
        lambda s: _airflow_cmd("triggerer", "--skip-serve-logs"),
        health_key="triggerer",
        after=("api-server",),
    ),
]
SERVICES.append(MLFLOW)

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
"""The whole loop: ``python -m tasks.platform.stack start --serve`` (the demo starts it too)."""


def pid_file(settings: Settings, service: Service) -> Path:
    return run_dir(settings) / f"{service.name}.pid"


def service_log(settings: Settings, service: Service) -> Path:
    return log_dir(settings) / f"{service.name}.log"


_children: dict[int, subprocess.Popen[bytes]] = {}
"""Processes started by this interpreter: kept so they are reaped, not left as zombies."""


def _alive(pid: int, match: str | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, given ``match``, is still our command."""
    if pid in _children and _children[pid].poll() is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
            if match and match not in (proc / "cmdline").read_bytes().decode(errors="replace"):
                return False
        except (OSError, IndexError):
            return False
    return True


def service_pid(settings: Settings, service: Service) -> int | None:
    """The pid of the running service, or None (a stale pid file is removed)."""
    path = pid_file(settings, service)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if _alive(pid, service.match):
        return pid
    path.unlink(missing_ok=True)
    return None


def _port_open(host: str, port: int) -> bool:
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log, for error messages and test failure reports."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class StackError(RuntimeError):
    """The stack could not be started or is unhealthy; the message says which part and why."""


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def _migrate(settings: Settings, env: dict[str, str], quiet: bool, timeout: float) -> None:
    """``airflow db migrate`` with its chatter sent to a log file; one progress line shown."""
    log = log_dir(settings) / "db-migrate.log"
    if not quiet:
        print(
            f"  migrating the metadata DB ({airflow_home(settings) / 'airflow.db'}) ... ",
            end="",
            flush=True,
        )
    t0 = time.monotonic()
    with log.open("wb") as fh:
        try:
            rc = subprocess.run(
                _airflow_cmd("db", "migrate"),
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"airflow db migrate took over {timeout:.0f}s; see {log}") from exc
    if rc != 0:
        _say("failed", quiet)
        raise StackError(f"airflow db migrate failed (exit {rc}):\n{tail(log)}")
    _say(f"ok ({time.monotonic() - t0:.1f}s)", quiet)


def _launch(settings: Settings, service: Service, env: dict[str, str]) -> int:
    """Start one service in its own session (process group) with output to its log file."""
    log = service_log(settings, service)
    with log.open("ab") as fh:
        fh.write(f"\n--- airloop start {datetime.now().isoformat()} ---\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            service.command(settings),
            env={**env, **service.env(settings)},
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(airflow_home(settings)),
            start_new_session=True,
        )
    _children[proc.pid] = proc
    pid_file(settings, service).write_text(f"{proc.pid}\n")
    return proc.pid


def fetch_health(settings: Settings, timeout: float = 5.0) -> dict[str, Any] | None:
    """Airflow's health JSON from the api-server (no auth needed), or None when it is down."""
    try:
        resp = requests.get(api_url(settings) + HEALTH_PATH, timeout=timeout)
    except requests.RequestException:
        return None
    return resp.json() if resp.status_code == 200 else None


def _heartbeat(entry: dict[str, Any], key: str) -> datetime | None:
    value = entry.get(f"latest_{key}_heartbeat")
    return datetime.fromisoformat(value) if value else None


def _ready(
    settings: Settings, service: Service, health: dict[str, Any] | None, since: datetime | None
) -> bool:
    """Ready = its HTTP path answers, and its job is healthy with a heartbeat from this start
    (a job killed seconds ago still reads healthy until its heartbeat ages past the threshold)."""
    host = _client_host(service.host(settings))
    for path in service.ready_paths:
        try:
            resp = requests.get(f"http://{host}:{service.port(settings)}{path}", timeout=5)
        except requests.RequestException:
            return False
        if resp.status_code != 200:
            return False
    if service.health_key:
        entry = (health or {}).get(service.health_key) or {}
        if entry.get("status") != "healthy":
            return False
        beat = _heartbeat(entry, service.health_key)
        if since is not None and (beat is None or beat < since):
            return False
    return True


def start(
    settings: Settings,
    *,
    dags_folder: str | Path | None = None,
    timeout: float = 240.0,
    quiet: bool = False,
    services: Iterable[Service] | None = None,
) -> dict[str, int]:
    """Start the stack (what is not running yet) and wait until every service is healthy.

    Returns ``{service name: pid}``. Idempotent: a running service is left alone.
    """
    services = list(SERVICES if services is None else services)
    home = airflow_home(settings)
    for d in (home, run_dir(settings), log_dir(settings)):
        d.mkdir(parents=True, exist_ok=True)
    env = airflow_env(settings, dags_folder=dags_folder)
    _say(f"airloop stack ({settings.profile} profile), home {home}", quiet)

    running = {s.name: pid for s in services if (pid := service_pid(settings, s)) is not None}
    missing = [s for s in services if s.name not in running]
    if not missing:
        _say(f"  already running: {', '.join(f'{n} (pid {p})' for n, p in running.items())}", quiet)
        _banner(settings, quiet)
        return running
    for service in missing:
        port = service.port(settings)
        if port and _port_open(service.host(settings), port):
            raise StackError(
                f"port {port} for {service.name} is taken by another process; stop it or set "
                f"another port ({service.port_setting}=...)"
            )

    if any(s.airflow for s in missing):
        _migrate(settings, env, quiet, timeout=timeout)
    t0 = time.monotonic()
    deadline = t0 + timeout
    since = datetime.now().astimezone()
    names = {s.name for s in services}
    pids = dict(running)
    ready: set[str] = set()
    try:
        while len(ready) < len(services):
            for service in missing:
                if service.name not in pids and all(d in ready or d not in names for d in service.after):
                    pids[service.name] = _launch(settings, service, env)
                    _say(
                        f"  started {service.name:<14} pid {pids[service.name]:<7} "
                        f"log {service_log(settings, service)}",
                        quiet,
                    )
            for service in missing:
                pid = pids.get(service.name)
                if pid is not None and not _alive(pid):
                    raise StackError(
                        f"{service.name} exited during start-up; last lines of "
                        f"{service_log(settings, service)}:\n{tail(service_log(settings, service))}"
                    )
            health = fetch_health(settings)
            for service in services:
                if service.name in ready or service.name not in pids:
                    continue
                if _ready(settings, service, health, since if service in missing else None):
                    ready.add(service.name)
                    _say(f"  ready   {service.name:<14} after {time.monotonic() - t0:.1f}s", quiet)
            if len(ready) == len(services):
                break
            if time.monotonic() > deadline:
                waiting = [s for s in services if s.name not in ready]
                raise StackError(
                    f"not healthy after {timeout:.0f}s: {', '.join(s.name for s in waiting)}; "
                    f"health={json.dumps(health)}\n"
                    + "\n".join(
                        f"--- {service_log(settings, s)} ---\n{tail(service_log(settings, s), 15)}"
                        for s in waiting
                    )
                )
            time.sleep(0.5)
    except BaseException:
        # Leave nothing half-started behind (a failed or interrupted start stops what it began).
        stop(settings, quiet=True, services=[s for s in missing if s.name in pids])
        raise
    _banner(settings, quiet, serving=SERVE in services)
    return pids


def _banner(settings: Settings, quiet: bool, serving: bool = False) -> None:
    url = api_url(settings)
    serve_line = (
        f"Serving      {settings.serving.url}   (POST /score, /metrics, /admin/status)\n" if serving else ""
    )
    _say(
        f"\nAirflow UI   {url}\n"
        f"  log in as  {settings.airflow.username} / {settings.airflow.password}"
        "   (AIRLOOP__AIRFLOW__PASSWORD to change)\n"
        f"REST API     {url}/api/v2   (JWT: POST {url}/auth/token)\n"
        f"MLflow UI    {settings.mlflow.url}   (MLFLOW_TRACKING_URI; runs, registry, model cards)\n"
        f"{serve_line}"
        f"logs         {log_dir(settings)}/<service>.log\n"
        "stop with    python -m tasks.platform.stack stop",
        quiet,
    )


def stop(
    settings: Settings,
    *,
    timeout: float = 30.0,
    quiet: bool = False,
    services: Iterable[Service] | None = None,
) -> list[str]:
    """Terminate each service's process group, wait, then kill what is left after ``timeout``.

    Services others depend on (the api-server) go last, so tasks interrupted by the scheduler's
    shutdown can still report their state through the execution API. Returns the names of the
    services that were running.
    """
    services = list(SERVICES if services is None else services)
    targets = {s.name: pid for s in services if (pid := service_pid(settings, s)) is not None}
    if not targets:
        _say("airloop stack: nothing running", quiet)
        return []
    needed = {dep for s in services for dep in s.after}
    waves = [[n for n in targets if n not in needed], [n for n in targets if n in needed]]
    t0 = time.monotonic()
    for wave in filter(None, waves):
        by_name = {s.name: s for s in services}
        for name in wave:
            if by_name[name].term_group:
                _signal_group(targets[name], signal.SIGTERM)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(targets[name], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        left = list(wave)
        while left:
            for name in list(left):
                pid = targets[name]
                if not (_alive(pid) or _group_alive(pid)):
                    left.remove(name)
                    _reap(pid)
                    _say(f"  stopped {name:<14} pid {pid:<7} after {time.monotonic() - t0:.1f}s", quiet)
            if left and time.monotonic() > deadline:
                for name in left:
                    _say(f"  {name} (pid {targets[name]}) ignored SIGTERM for {timeout:.0f}s: killed", quiet)
                    _signal_group(targets[name], signal.SIGKILL)
                    _reap(targets[name])
                left = []
            elif left:
                time.sleep(0.2)
    for service in services:
        if service.name in targets:
            pid_file(settings, service).unlink(missing_ok=True)
    return list(targets)


def _reap(pid: int) -> None:
    proc = _children.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in the group (task processes, uvicorn workers)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def status(settings: Settings, *, services: Iterable[Service] | None = None) -> dict[str, Any]:
    """Per service: running, pid, port, health; plus Airflow's health JSON and the URL."""
    services = list(SERVICES if services is None else services)
    health = fetch_health(settings)
    out: dict[str, Any] = {
        "url": api_url(settings),
        "mlflow_url": settings.mlflow.url,
        "home": str(airflow_home(settings)),
        "services": {},
        "health": health,
    }
    for service in services:
        pid = service_pid(settings, service)
        entry: dict[str, Any] = {
            "running": pid is not None,
            "pid": pid,
            "port": service.port(settings),
            "log": str(service_log(settings, service)),
        }
        if service.health_key:
            entry["health"] = ((health or {}).get(service.health_key) or {}).get("status")
        elif service.ready_paths and pid is not None:
            entry["health"] = "healthy" if _ready(settings, service, health, None) else "unhealthy"
        out["services"][service.name] = entry
    return out


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _print_status(settings: Settings) -> int:
    serving = service_pid(settings, SERVE) is not None
    st = status(settings, services=LOOP if serving else SERVICES)
    print(f"airloop stack at {st['url']}, MLflow at {st['mlflow_url']} (home {st['home']})")
    for name, s in st["services"].items():
        state = f"running pid {s['pid']}" if s["running"] else "stopped"
        port = f"port {s['port']}" if s["port"] else ""
        print(f"  {name:<14} {state:<20} {port:<10} health: {s.get('health') or '-'}")
    print(
        "health:",
        json.dumps(st["health"], indent=2) if st["health"] else "api-server not answering",
    )
    return 0 if all(s["running"] for s in st["services"].values()) else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.platform.stack", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["start", "stop", "restart", "status", "env"])
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for health")
    parser.add_argument("--serve", action="store_true", help="start the serving application (Ray Serve) too")
    args = parser.parse_args(argv)
    settings = load_config()
    try:
        if args.command in ("stop", "restart"):
            stop(settings, services=LOOP)
        if args.command in ("start", "restart"):
            start(settings, timeout=args.timeout, services=LOOP if args.serve else SERVICES)
        elif args.command == "status":
            return _print_status(settings)
        elif args.command == "env":
            for name, value in airflow_vars(settings).items():
                print(f"export {name}={shlex.quote(value)}")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
