"""The serving application as the rollout sees it: its control API, whether it answers, and
putting it on the cluster when it is missing.

Every step talks to the application through ``ServingClient`` (plain HTTP, the same in both
profiles and for both ``serving.placement`` modes): load a version into a slot, set the traffic
split, read ``/metrics``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import requests

from tasks.serving.client import ServingClient, ServingError
from tasks.serving.process import serve_config

if TYPE_CHECKING:
    from config import Settings


def say(msg: str) -> None:
    """One line in the task's log."""
    print(f"[rollout] {msg}", flush=True)


def client_for(settings: Settings) -> ServingClient:
    """The control API's client: the serving token, and retries of connection errors and 5xx."""
    return ServingClient.from_settings(settings)


def status_or_none(client: ServingClient) -> dict[str, Any] | None:
    """The control API's status, or None while the application does not answer. (Not
    ``/health``: an application without a champion yet is unhealthy, and it is what a first
    rollout starts from.)"""
    try:
        return client.status()
    except (ServingError, requests.RequestException):
        return None


def slot_version(status: dict[str, Any], slot: str) -> str | None:
    """The version a slot (``champion``, ``challenger``) serves, from a status (None: empty)."""
    version = (status["slots"].get(slot) or {}).get("version")
    return None if version is None else str(version)


def wait_ready(settings: Settings, client: ServingClient) -> dict[str, Any]:
    """Wait for the application; in production put it on the cluster first when it is missing."""
    if status_or_none(client) is None and settings.serving.dashboard_url:
        put_application(settings)
    deadline = time.monotonic() + settings.rollout.ready_timeout_seconds
    while (status := status_or_none(client)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the serving application at {client.url} did not answer within "
                f"{settings.rollout.ready_timeout_seconds:.0f} s; start it with `python -m tasks.serving` "
                "(local) or check the Ray cluster (production)"
            )
        time.sleep(1.0)
    return status


def put_application(settings: Settings) -> None:
    """Deploy the application through the Ray Serve REST API (what KubeRay does from a
    RayService's ``serveConfigV2``), with the cluster's token (Ray's token authentication:
    ``Authorization: Bearer <serving.ray_auth_token>``) when one is configured."""
    dashboard = settings.serving.dashboard_url
    if not dashboard:
        raise RuntimeError(
            "serving.dashboard_url is not set: there is no Ray cluster to put the application on"
        )
    url = f"{dashboard.rstrip('/')}/api/serve/applications/"
    token = settings.serving.ray_auth_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    say(f"the application is not answering: PUT {url} ({'with' if token else 'without'} a Ray token)")
    resp = requests.put(url, json=serve_config(settings), headers=headers, timeout=60)
    if resp.status_code in (401, 403):
        raise RuntimeError(
            f"PUT {url} was refused (HTTP {resp.status_code}): the Ray cluster wants its token; set "
            "serving.ray_auth_token (RAY_AUTH_TOKEN in production) to the cluster's"
        )
    if resp.status_code >= 400:
        raise RuntimeError(f"PUT {url} failed: HTTP {resp.status_code}: {resp.text[:500]}")
