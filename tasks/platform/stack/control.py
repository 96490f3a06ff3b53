"""Start, stop and inspect the local stack: what ``airloop up``, ``down`` and ``status`` do.

``start`` launches what is not running yet in dependency order and waits until every service
is healthy (a failed or interrupted start stops what it began); ``stop`` terminates services in
waves, dependents first; ``status`` reports each service's process and health.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from config import Settings
from tasks.common.secrets import MLFLOW_PASSWORD, MLFLOW_USER, local_mlflow_auth, secrets_dir
from tasks.platform.stack.database import (
    DatabaseError,
    describe,
    ensure_databases,
    mlflow_on_stack_database,
    use_wal,
)
from tasks.platform.stack.environment import airflow_env, airflow_home, api_url, log_dir, run_dir
from tasks.platform.stack.health import fetch_health, ready
from tasks.platform.stack.processes import (
    alive,
    launch,
    port_open,
    service_pid,
    tail,
)
from tasks.platform.stack.services import (
    LOOP,
    POSTGRES,
    SERVE,
    SERVICES,
    Service,
    airflow_command,
    enabled,
    service_log,
)
from tasks.platform.stack.stopping import clean_leftovers, stop

DATABASE_TIMEOUT_S = 120.0


class StackError(RuntimeError):
    """The stack could not be started or is unhealthy; the message says which part and why."""


def _say(msg: str, quiet: bool, end: str = "\n") -> None:
    if not quiet:
        print(msg, end=end, flush=True)


def _migrate(settings: Settings, env: dict[str, str], quiet: bool, timeout: float) -> None:
    """``airflow db migrate`` with its chatter sent to a log file; one progress line shown."""
    log = log_dir(settings) / "db-migrate.log"
    _say(f"  migrating the metadata DB ({describe(settings)}) ... ", quiet, end="")
    t0 = time.monotonic()
    with log.open("wb") as fh:
        try:
            rc = subprocess.run(
                airflow_command("db", "migrate"),
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


PORT_RELEASE_SECONDS = 5.0
"""A process killed a moment ago may still hold its port: the kernel releases its memory (and its
command line, by which its pid is recognised) before it closes its sockets."""


def _port_stays_taken(host: str, port: int) -> bool:
    deadline = time.monotonic() + PORT_RELEASE_SECONDS
    while port_open(host, port):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)
    return False


def _refuse_taken_ports(settings: Settings, missing: list[Service]) -> None:
    for service in missing:
        port = service.port(settings)
        if port and _port_stays_taken(service.host(settings), port):
            raise StackError(
                f"port {port} for {service.name} is taken by another process; stop it or set "
                f"another port ({service.port_setting}=...)"
            )


class _StartUp:
    """One start: launches services once what they wait for is ready, until all are healthy."""

    def __init__(
        self,
        settings: Settings,
        services: list[Service],
        *,
        missing: list[Service],
        env: dict[str, str],
        running: dict[str, int],
        quiet: bool,
    ) -> None:
        self.settings, self.services, self.missing, self.env = settings, services, missing, env
        self.quiet = quiet
        self.pids = dict(running)
        self.ready: set[str] = set()
        self.names = {s.name for s in services}
        self.since = datetime.now().astimezone()
        self.t0 = time.monotonic()

    def launch_due(self) -> None:
        """Launch each missing service whose ``after`` services are ready."""
        for service in self.missing:
            waits = [d for d in service.after if d in self.names and d not in self.ready]
            if service.name not in self.pids and not waits:
                pid = self.pids[service.name] = launch(self.settings, service, self.env)
                log = service_log(self.settings, service)
                _say(f"  started {service.name:<14} pid {pid:<7} log {log}", self.quiet)

    def check_exits(self) -> None:
        for service in self.missing:
            pid = self.pids.get(service.name)
            if pid is not None and not alive(pid):
                log = service_log(self.settings, service)
                raise StackError(f"{service.name} exited during start-up; last lines of {log}:\n{tail(log)}")

    def mark_ready(self, health: dict[str, Any] | None) -> None:
        for service in self.services:
            if service.name in self.ready or service.name not in self.pids:
                continue
            since = self.since if service in self.missing else None
            if ready(self.settings, service, health, since):
                self.ready.add(service.name)
                if service in self.missing:
                    _say(f"  ready   {service.name:<14} after {time.monotonic() - self.t0:.1f}s", self.quiet)

    def timed_out(self, timeout: float, health: dict[str, Any] | None) -> StackError:
        waiting = [s for s in self.services if s.name not in self.ready]
        logs = "\n".join(
            f"--- {service_log(self.settings, s)} ---\n{tail(service_log(self.settings, s), 15)}"
            for s in waiting
        )
        return StackError(
            f"not healthy after {timeout:.0f}s: {', '.join(s.name for s in waiting)}; "
            f"health={json.dumps(health)}\n{logs}"
        )

    def run(self, timeout: float) -> None:
        deadline = self.t0 + timeout
        while True:
            self.launch_due()
            self.check_exits()
            health = fetch_health(self.settings)
            self.mark_ready(health)
            if len(self.ready) == len(self.services):
                return
            if time.monotonic() > deadline:
                raise self.timed_out(timeout, health)
            time.sleep(0.5)


def _enabled(settings: Settings, services: Iterable[Service] | None) -> list[Service]:
    """The services asked for, and the stack's services they start after (MLflow alone needs the
    database it keeps its runs in), dependencies first."""
    asked = list(SERVICES if services is None else services)
    names = {s.name for s in asked}
    needed = [s for s in LOOP if s.name not in names and any(s.name in _after(settings, a) for a in asked)]
    return enabled(settings, [*needed, *asked])


def _after(settings: Settings, service: Service) -> tuple[str, ...]:
    """What ``service`` needs started first here: MLflow with its store on a file does not need
    the database (starting it anyway left a server no ``stop`` of MLflow alone would stop)."""
    if service.name == "mlflow" and not mlflow_on_stack_database(settings):
        return tuple(a for a in service.after if a != "postgres")
    return service.after


def _database_first(
    settings: Settings,
    services: list[Service],
    *,
    missing: list[Service],
    env: dict[str, str],
    began: dict[str, int],
    quiet: bool,
) -> None:
    """Start the database (when it is part of the stack and not running), wait until it answers,
    and create the databases Airflow and MLflow need."""
    first = [s for s in missing if s.name == POSTGRES.name]
    if first:
        startup = _StartUp(settings, first, missing=first, env=env, running={}, quiet=quiet)
        try:
            startup.run(DATABASE_TIMEOUT_S)
        finally:
            began.update(startup.pids)
    if any(s.name == POSTGRES.name for s in services):
        for name in ensure_databases(settings):
            _say(f"  created database {name}", quiet)


def _start_all(
    settings: Settings,
    services: list[Service],
    *,
    running: dict[str, int],
    missing: list[Service],
    timeout: float,
    quiet: bool,
    began: dict[str, int],
    dags_folder: str | Path | None,
) -> dict[str, int]:
    env = airflow_env(settings, dags_folder=dags_folder)
    _database_first(settings, services, missing=missing, env=env, began=began, quiet=quiet)
    if any(s.airflow for s in missing):
        _migrate(settings, env, quiet, timeout=timeout)
        use_wal(settings)
    rest = [s for s in missing if s.name not in began]
    startup = _StartUp(settings, services, missing=rest, env=env, running={**running, **began}, quiet=quiet)
    try:
        startup.run(timeout)
    finally:
        began.update(startup.pids)
    return startup.pids


def start(
    settings: Settings,
    *,
    dags_folder: str | Path | None = None,
    timeout: float = 240.0,
    quiet: bool = False,
    services: Iterable[Service] | None = None,
) -> dict[str, int]:
    """Start the stack (what is not running yet) and wait until every service is healthy.

    Returns ``{service name: pid}``. Idempotent: a running service is left alone, one that died
    (a killed scheduler) is started again.
    """
    wanted = _enabled(settings, services)
    for folder in (airflow_home(settings), run_dir(settings), log_dir(settings)):
        folder.mkdir(parents=True, exist_ok=True)
    _say(f"airloop stack ({settings.profile} profile), home {airflow_home(settings)}", quiet)
    running = {s.name: pid for s in wanted if (pid := service_pid(settings, s)) is not None}
    missing = [s for s in wanted if s.name not in running]
    if not missing:
        _say(f"  already running: {', '.join(f'{n} (pid {p})' for n, p in running.items())}", quiet)
        _banner(settings, quiet, serving=SERVE in wanted)
        return running
    clean_leftovers(settings, missing, quiet)
    _refuse_taken_ports(settings, missing)
    began: dict[str, int] = {}
    try:
        pids = _start_all(
            settings,
            wanted,
            running=running,
            missing=missing,
            timeout=timeout,
            quiet=quiet,
            began=began,
            dags_folder=dags_folder,
        )
    except (DatabaseError, psycopg.Error) as exc:
        stop(settings, quiet=True, services=[s for s in missing if s.name in began])
        raise StackError(f"the metadata database: {exc}") from exc
    except BaseException:
        # Leave nothing half-started behind (a failed or interrupted start stops what it began).
        stop(settings, quiet=True, services=[s for s in missing if s.name in began])
        raise
    _banner(settings, quiet, serving=SERVE in wanted)
    return pids


def _mlflow_login(settings: Settings) -> str:
    if not local_mlflow_auth(settings):
        return ""
    where = (
        "mlflow.admin_password" if settings.mlflow.admin_password else secrets_dir(settings) / MLFLOW_PASSWORD
    )
    return f"  log in as  {MLFLOW_USER} / the password in {where}   (airloop env exports both)\n"


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
        f"{_mlflow_login(settings)}"
        f"{serve_line}"
        f"logs         {log_dir(settings)}/<service>.log\n"
        "stop with    airloop down   (or make down)",
        quiet,
    )
