"""Start, stop and inspect the local stack: what ``airloop up``, ``down`` and ``status`` do.

``start`` launches what is not running yet in dependency order and waits until every service
is healthy (a failed or interrupted start stops what it began); ``stop`` terminates services in
waves, dependents first; ``status`` reports each service's process and health.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from config import Settings
from tasks.platform.stack.environment import airflow_env, airflow_home, api_url, log_dir, run_dir
from tasks.platform.stack.health import fetch_health, ready
from tasks.platform.stack.processes import (
    alive,
    group_alive,
    launch,
    port_open,
    reap,
    service_pid,
    signal_group,
    tail,
    terminate,
)
from tasks.platform.stack.services import SERVE, SERVICES, Service, airflow_command, pid_file, service_log


class StackError(RuntimeError):
    """The stack could not be started or is unhealthy; the message says which part and why."""


def _say(msg: str, quiet: bool, end: str = "\n") -> None:
    if not quiet:
        print(msg, end=end, flush=True)


def _migrate(settings: Settings, env: dict[str, str], quiet: bool, timeout: float) -> None:
    """``airflow db migrate`` with its chatter sent to a log file; one progress line shown."""
    log = log_dir(settings) / "db-migrate.log"
    _say(f"  migrating the metadata DB ({airflow_home(settings) / 'airflow.db'}) ... ", quiet, end="")
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


def _refuse_taken_ports(settings: Settings, missing: list[Service]) -> None:
    for service in missing:
        port = service.port(settings)
        if port and port_open(service.host(settings), port):
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
    for folder in (airflow_home(settings), run_dir(settings), log_dir(settings)):
        folder.mkdir(parents=True, exist_ok=True)
    env = airflow_env(settings, dags_folder=dags_folder)
    _say(f"airloop stack ({settings.profile} profile), home {airflow_home(settings)}", quiet)
    running = {s.name: pid for s in services if (pid := service_pid(settings, s)) is not None}
    missing = [s for s in services if s.name not in running]
    if not missing:
        _say(f"  already running: {', '.join(f'{n} (pid {p})' for n, p in running.items())}", quiet)
        _banner(settings, quiet, serving=SERVE in services)
        return running
    _refuse_taken_ports(settings, missing)
    if any(s.airflow for s in missing):
        _migrate(settings, env, quiet, timeout=timeout)
    startup = _StartUp(settings, services, missing=missing, env=env, running=running, quiet=quiet)
    try:
        startup.run(timeout)
    except BaseException:
        # Leave nothing half-started behind (a failed or interrupted start stops what it began).
        stop(settings, quiet=True, services=[s for s in missing if s.name in startup.pids])
        raise
    _banner(settings, quiet, serving=SERVE in services)
    return startup.pids


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
        "stop with    airloop down   (or make down)",
        quiet,
    )


def _stop_wave(
    wave: list[str], targets: dict[str, int], by_name: dict[str, Service], timeout: float, quiet: bool
) -> None:
    """SIGTERM every service of the wave, wait for each group to exit, SIGKILL after ``timeout``."""
    t0 = time.monotonic()
    for name in wave:
        terminate(by_name[name], targets[name])
    deadline = t0 + timeout
    left = list(wave)
    while left:
        for name in list(left):
            pid = targets[name]
            if not (alive(pid) or group_alive(pid)):
                left.remove(name)
                reap(pid)
                _say(f"  stopped {name:<14} pid {pid:<7} after {time.monotonic() - t0:.1f}s", quiet)
        if left and time.monotonic() > deadline:
            for name in left:
                _say(f"  {name} (pid {targets[name]}) ignored SIGTERM for {timeout:.0f}s: killed", quiet)
                signal_group(targets[name], signal.SIGKILL)
                reap(targets[name])
            return
        if left:
            time.sleep(0.2)


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
    by_name = {s.name: s for s in services}
    for wave in ([n for n in targets if n not in needed], [n for n in targets if n in needed]):
        if wave:
            _stop_wave(wave, targets, by_name, timeout, quiet)
    for service in services:
        if service.name in targets:
            pid_file(settings, service).unlink(missing_ok=True)
    return list(targets)


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
            entry["health"] = "healthy" if ready(settings, service, health, None) else "unhealthy"
        out["services"][service.name] = entry
    return out


def status_lines(st: dict[str, Any]) -> list[str]:
    """``status`` in words: one line per service, Airflow's own health, then one verdict line
    (running, partly running or stopped) that says what to do next."""
    lines = [f"airloop stack at {st['url']}, MLflow at {st['mlflow_url']} (home {st['home']})"]
    for name, s in st["services"].items():
        state = f"running pid {s['pid']}" if s["running"] else "stopped"
        port = f"port {s['port']}" if s["port"] else ""
        lines.append(f"  {name:<14} {state:<20} {port:<10} health: {s.get('health') or '-'}")
    health = st["health"] or {}
    parts = [f"{key} {entry.get('status')}" for key, entry in health.items() if isinstance(entry, dict)]
    lines.append(
        f"Airflow health: {', '.join(parts)}" if parts else "Airflow health: api-server not answering"
    )
    running = [s["running"] for s in st["services"].values()]
    if all(running):
        lines.append(f"running: every service is up (Airflow UI {st['url']}; stop with `airloop down`)")
    elif any(running):
        lines.append("partly running: start the rest with `airloop up`, or stop it with `airloop down`")
    else:
        lines.append("stopped: no service is running (start it with `airloop up`)")
    return lines
