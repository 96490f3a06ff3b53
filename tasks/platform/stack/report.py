"""What ``airloop status`` says: each service's process, port, health and memory, then a verdict."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from config import Settings
from tasks.platform.stack.database import describe
from tasks.platform.stack.environment import airflow_home, api_url
from tasks.platform.stack.health import fetch_health, ready
from tasks.platform.stack.memory import Usage, by_service, mib, sum_usage
from tasks.platform.stack.processes import service_pid
from tasks.platform.stack.services import SERVICES, Service, enabled, service_log

MEMORY_GOAL_IDLE = 3 * 2**30
MEMORY_GOAL_PEAK = 4 * 2**30
"""The local stack's budget (issue 13.5): resident memory idle and at the demo's peak."""


def _health(settings: Settings, service: Service, pid: int | None, health: dict[str, Any] | None) -> Any:
    if service.health_key:
        return ((health or {}).get(service.health_key) or {}).get("status")
    if (service.ready_paths or service.probe) and pid is not None:
        return "healthy" if ready(settings, service, health, None) else "unhealthy"
    return None


def status(settings: Settings, *, services: Iterable[Service] | None = None) -> dict[str, Any]:
    """Per service: running, pid, port, health and memory (bytes, RSS and PSS of its process
    tree); plus Airflow's health JSON, the URLs and the whole stack's memory."""
    wanted = enabled(settings, list(SERVICES if services is None else services))
    health = fetch_health(settings)
    out: dict[str, Any] = {
        "url": api_url(settings),
        "mlflow_url": settings.mlflow.url,
        "home": str(airflow_home(settings)),
        "database": describe(settings),
        "services": {},
        "health": health,
    }
    pids = {s.name: pid for s in wanted if (pid := service_pid(settings, s)) is not None}
    usage = by_service(pids)
    for service in wanted:
        pid = pids.get(service.name)
        used = usage.get(service.name, Usage())
        out["services"][service.name] = {
            "running": pid is not None,
            "pid": pid,
            "port": service.port(settings),
            "log": str(service_log(settings, service)),
            "health": _health(settings, service, pid, health),
            "rss": used.rss,
            "pss": used.pss,
            "processes": used.processes,
        }
    total = sum_usage(list(usage.values()))
    out["memory"] = {"rss": total.rss, "pss": total.pss, "processes": total.processes}
    return out


def _memory_line(st: dict[str, Any]) -> str:
    mem = st.get("memory") or {}
    if not mem.get("processes"):
        return "memory: nothing running"
    goal = mib(MEMORY_GOAL_IDLE)
    return (
        f"memory: {mib(mem['rss'])} resident in {mem['processes']} processes "
        f"({mib(mem['pss'])} proportional: shared pages counted once); idle goal {goal}"
    )


def status_lines(st: dict[str, Any]) -> list[str]:
    """``status`` in words: one line per service (pid, port, health, memory), Airflow's own
    health, the stack's memory, then one verdict line that says what to do next."""
    lines = [f"airloop stack at {st['url']}, MLflow at {st['mlflow_url']} (home {st['home']})"]
    for name, s in st["services"].items():
        state = f"running pid {s['pid']}" if s["running"] else "stopped"
        port = f"port {s['port']}" if s["port"] else ""
        mem = f"{mib(s.get('rss', 0)):>10} in {s.get('processes', 0)} proc" if s["running"] else ""
        lines.append(f"  {name:<14} {state:<20} {port:<10} health: {s.get('health') or '-':<10} {mem}")
    health = st["health"] or {}
    parts = [f"{key} {entry.get('status')}" for key, entry in health.items() if isinstance(entry, dict)]
    lines.append(
        f"Airflow health: {', '.join(parts)}" if parts else "Airflow health: api-server not answering"
    )
    lines.append(f"metadata: {st.get('database', '-')}")
    lines.append(_memory_line(st))
    running = [s["running"] for s in st["services"].values()]
    if all(running):
        lines.append(f"running: every service is up (Airflow UI {st['url']}; stop with `airloop down`)")
    elif any(running):
        lines.append("partly running: start the rest with `airloop up`, or stop it with `airloop down`")
    else:
        lines.append("stopped: no service is running (start it with `airloop up`)")
    return lines
