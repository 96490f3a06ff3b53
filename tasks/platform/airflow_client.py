"""A small typed client for Airflow 3's REST API, for tools, tests and upstream systems.

Authenticates with a JWT from ``POST /auth/token`` (SimpleAuthManager or any auth manager that
issues tokens), logs in again once on an expired token, and retries every call the way an
upstream system would (``tasks.common.retry``: connection errors, timeouts, 429 and 5xx, with
backoff and jitter for at most ``retry_s`` seconds, one log line per retry). Raises
``AirflowAPIError`` with the method, URL, status and body on any error status that is not
retried or outlasts the retries. No Airflow import: it only speaks HTTP.

A retried POST may reach Airflow twice when only its answer was lost: posting an asset event
twice runs its consumers twice, which ingest absorbs (a batch's rows are curated once).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from tasks.common.retry import call_with_retries, transient_http

if TYPE_CHECKING:
    from config import Settings

HEALTH_PATH = "/api/v2/monitor/health"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
RETRY_S = 60.0  # the default of `airflow.client_retry_seconds`
"""How long a call keeps retrying transient failures (a restarting api-server takes ~20 s)."""


Json = dict[str, Any]
"""A JSON object as the REST API answers it."""


def _object(value: Any) -> Json:
    """The answer as a JSON object (anything else is a broken contract, not a quiet ``None``)."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object from Airflow's REST API, got {type(value).__name__}")
    return value


def _objects(value: Any, key: str) -> list[Json]:
    """The list under ``key`` of a JSON object (a collection endpoint's answer)."""
    items = _object(value)[key]
    if not isinstance(items, list):
        raise TypeError(f"expected a list under {key!r} from Airflow's REST API")
    return items


class AirflowAPIError(RuntimeError):
    """A REST call answered with an error status; carries the status and body."""

    def __init__(self, method: str, url: str, status_code: int, body: str) -> None:
        super().__init__(f"{method} {url} failed: HTTP {status_code}: {body[:500]}")
        self.status_code = status_code
        self.body = body


class AirflowClient:
    """A small typed client for Airflow 3's REST API (``/api/v2``) with SimpleAuthManager JWTs."""

    def __init__(
        self, base_url: str, username: str, password: str, timeout: float = 30.0, retry_s: float = RETRY_S
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self.retry_s = retry_s
        """Seconds each call keeps retrying transient failures (0: one try)."""
        self.session = requests.Session()
        self._token: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, base_url: str | None = None) -> AirflowClient:
        airflow = settings.airflow
        if airflow.password is None:  # production: no default password (config/production.yaml)
            raise ValueError("airflow.password is not set: pass it as AIRLOOP__AIRFLOW__PASSWORD")
        return cls(
            base_url or airflow.url, airflow.username, airflow.password, retry_s=airflow.client_retry_seconds
        )

    # -- plumbing ----------------------------------------------------------------------------

    def _retrying(self, what: str, fn: Callable[[], Any]) -> Any:
        return call_with_retries(fn, what=what, retry_on=transient_http, deadline_s=self.retry_s)

    def _login_once(self) -> str:
        url = f"{self.base_url}/auth/token"
        resp = self.session.post(
            url, json={"username": self.username, "password": self.password}, timeout=self.timeout
        )
        if resp.status_code not in (200, 201):
            raise AirflowAPIError("POST", url, resp.status_code, resp.text)
        token: str = resp.json()["access_token"]
        self._token = token
        return token

    def login(self) -> str:
        """A fresh access token; raises ``AirflowAPIError`` (401) on wrong credentials."""
        token: str = self._retrying("POST /auth/token", self._login_once)
        return token

    def _request_once(self, method: str, url: str, **kwargs: Any) -> Any:
        """One call (and one more after a fresh login when the token expired)."""
        for attempt in (1, 2):
            token = self._token or self._login_once()
            resp = self.session.request(
                method,
                url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout,
                **kwargs,
            )
            if resp.status_code == 401 and attempt == 1:
                self._token = None
                continue
            break
        if resp.status_code >= 400:
            raise AirflowAPIError(method, url, resp.status_code, resp.text)
        return resp.json() if resp.content else None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Authenticated call to ``/api/v2`` + ``path`` (or an absolute path); JSON back.

        Logs in on first use and once more on a 401 (tokens expire); transient failures are
        retried for ``retry_s`` seconds.
        """
        url = self.base_url + (path if path.startswith("/api/") else "/api/v2" + path)
        return self._retrying(f"{method} {url}", lambda: self._request_once(method, url, **kwargs))

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, json: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=json if json is not None else {})

    def patch(self, path: str, json: dict[str, Any]) -> Any:
        return self.request("PATCH", path, json=json)

    def health(self) -> dict[str, Any]:
        def once() -> Any:
            resp = self.session.get(self.base_url + HEALTH_PATH, timeout=self.timeout)
            resp.raise_for_status()
            return resp.json()

        return _object(self._retrying(f"GET {self.base_url}{HEALTH_PATH}", once))

    # -- DAGs and runs -----------------------------------------------------------------------

    def dag(self, dag_id: str) -> dict[str, Any]:
        return _object(self.get(f"/dags/{dag_id}"))

    def import_errors(self) -> list[dict[str, Any]]:
        return _objects(self.get("/importErrors", limit=100), "import_errors")

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0, poll: float = 1.0) -> dict[str, Any]:
        """The DAG once the dag-processor has parsed it; fails early on an import error of a
        file named after the DAG, with Airflow's traceback."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.dag(dag_id)
            except AirflowAPIError as exc:
                if exc.status_code != 404:
                    raise
            errors = [e for e in self.import_errors() if Path(e.get("filename", "")).stem == dag_id]
            if errors:
                raise AirflowAPIError(
                    "GET",
                    f"/dags/{dag_id}",
                    404,
                    f"import error in {errors[0]['filename']}:\n{errors[0]['stack_trace']}",
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAG {dag_id!r} not parsed after {timeout:.0f}s")
            time.sleep(poll)

    def unpause(self, dag_id: str) -> dict[str, Any]:
        return _object(self.patch(f"/dags/{dag_id}", {"is_paused": False}))

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        """A manual run now (``logical_date`` null, as Airflow 3 expects) under a run id chosen
        here: a POST retried after a lost answer gets 409 for the run the first one created, and
        that run is returned, instead of a second run (two trainings of the same data)."""
        run_id = f"manual__{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}_{secrets.token_hex(4)}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        try:
            return _object(self.post(f"/dags/{dag_id}/dagRuns", body))
        except AirflowAPIError as exc:
            if exc.status_code != 409:
                raise
            return self.dag_run(dag_id, run_id)

    def dag_runs(self, dag_id: str, **filters: Any) -> list[dict[str, Any]]:
        """Runs of a DAG, newest first (filters: run_type, state, ... as query parameters)."""
        params = {"order_by": "-id", "limit": 100, **filters}
        return _objects(self.get(f"/dags/{dag_id}/dagRuns", **params), "dag_runs")

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return _object(self.get(f"/dags/{dag_id}/dagRuns/{run_id}"))

    def wait_for_run(
        self,
        dag_id: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        timeout: float = 120.0,
        finished: bool = False,
        poll: float = 1.0,
    ) -> dict[str, Any]:
        """The newest run matching ``predicate`` (and in a terminal state if ``finished``)."""
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while True:
            last = self.dag_runs(dag_id)
            for run in last:
                if (predicate is None or predicate(run)) and (
                    not finished or run["state"] in TERMINAL_RUN_STATES
                ):
                    return run
            if time.monotonic() > deadline:
                seen = [(r["dag_run_id"], r["run_type"], r["state"]) for r in last[:10]]
                raise TimeoutError(
                    f"no matching {'finished ' if finished else ''}run of {dag_id!r} after "
                    f"{timeout:.0f}s; latest runs: {seen}"
                )
            time.sleep(poll)

    def wait_for_run_state(
        self, dag_id: str, run_id: str, *, timeout: float = 120.0, poll: float = 1.0
    ) -> dict[str, Any]:
        """The run once it reached success or failed."""
        return self.wait_for_run(
            dag_id, lambda r: r["dag_run_id"] == run_id, timeout=timeout, finished=True, poll=poll
        )

    def upstream_asset_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The asset events that triggered an asset-triggered run."""
        return _objects(self.get(f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents"), "asset_events")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return _objects(self.get(path, limit=100), "task_instances")

    # -- assets ------------------------------------------------------------------------------

    def asset(self, name: str) -> dict[str, Any]:
        """The asset with exactly this name (``name_pattern`` is a substring search)."""
        assets = _objects(self.get("/assets", name_pattern=name, limit=100), "assets")
        found = [a for a in assets if a["name"] == name]
        if not found:
            raise AirflowAPIError(
                "GET",
                f"/assets?name_pattern={name}",
                404,
                f"no asset named {name!r} (is the DAG using it parsed?)",
            )
        return found[0]

    def post_asset_event(self, name: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record an event for the asset, as an upstream system would (triggers its consumers)."""
        asset_id = self.asset(name)["id"]
        return _object(self.post("/assets/events", {"asset_id": asset_id, "extra": extra or {}}))

    def asset_events(self, name: str, **filters: Any) -> list[dict[str, Any]]:
        """Events of the asset, newest first (filters: source_dag_id, source_run_id, ...)."""
        asset_id = self.asset(name)["id"]
        params = {"asset_id": asset_id, "order_by": "-timestamp", "limit": 100, **filters}
        return _objects(self.get("/assets/events", **params), "asset_events")
