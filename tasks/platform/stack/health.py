"""Whether the stack's services are up: Airflow's health JSON and each service's ready paths."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests

from config import Settings
from tasks.common.clock import utc
from tasks.platform.airflow_client import HEALTH_PATH
from tasks.platform.stack.environment import api_url
from tasks.platform.stack.services import Service, client_host


def fetch_health(settings: Settings, timeout: float = 5.0) -> dict[str, Any] | None:
    """Airflow's health JSON from the api-server (no auth needed), or None when it is down."""
    try:
        resp = requests.get(api_url(settings) + HEALTH_PATH, timeout=timeout)
    except requests.RequestException:
        return None
    if resp.status_code != 200:
        return None
    health: dict[str, Any] = resp.json()
    return health


def _heartbeat(entry: dict[str, Any], key: str) -> datetime | None:
    value = entry.get(f"latest_{key}_heartbeat")
    return utc(value) if value else None


def _answers(settings: Settings, service: Service) -> bool:
    host = client_host(service.host(settings))
    for path in service.ready_paths:
        try:
            resp = requests.get(f"http://{host}:{service.port(settings)}{path}", timeout=5)
        except requests.RequestException:
            return False
        if resp.status_code != 200:
            return False
    return True


def ready(
    settings: Settings, service: Service, health: dict[str, Any] | None, since: datetime | None
) -> bool:
    """Ready = its HTTP paths answer, and its job is healthy with a heartbeat from this start
    (a job killed seconds ago still reads healthy until its heartbeat ages past the threshold)."""
    if not _answers(settings, service):
        return False
    if service.probe is not None and not service.probe(settings):
        return False
    if service.health_key:
        entry = (health or {}).get(service.health_key) or {}
        if entry.get("status") != "healthy":
            return False
        beat = _heartbeat(entry, service.health_key)
        if since is not None and (beat is None or beat < since):
            return False
    return True
