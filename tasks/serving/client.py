"""A small typed HTTP client of the serving application: scoring, labels and the control API.

This is what the deploy DAG, the traffic player and the tests use; it needs only ``requests``
(no Ray, no Feast), so it is cheap to import in an Airflow task.

    client = ServingClient(settings.serving.url, token=settings.serving.admin_token)
    client.load("challenger", version="7")          # zero downtime; ServingError(409) if refused
    client.set_traffic(shadow=True)                 # mirror to the challenger, logged only
    client.set_traffic(challenger_weight=0.1)       # canary 10 %
    client.set_traffic(challenger_weight=0.0, shadow=False)   # roll back
    client.load("champion", version="7")            # promote, then
    client.set_traffic(challenger_weight=0.0)
"""

from __future__ import annotations

from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families


class ServingError(RuntimeError):
    """A non-2xx answer: ``status`` and the decoded ``body`` (``body["error"]`` says why)."""

    def __init__(self, status: int, body: Any, url: str) -> None:
        message = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"{status} from {url}: {message or body}")
        self.status = status
        self.body = body

    @property
    def kind(self) -> str | None:
        return self.body.get("kind") if isinstance(self.body, dict) else None


class ServingClient:
    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> dict[str, Any]:
        """The decoded JSON object of a 2xx answer; ``ServingError`` for anything else."""
        url = f"{self.url}{path}"
        resp = self.session.request(method, url, json=body, timeout=timeout or self.timeout)
        try:
            data = resp.json()
        except ValueError:
            data = resp.text
        if resp.status_code >= 400 or not isinstance(data, dict):
            raise ServingError(resp.status_code, data, url)
        return data

    def _predictions(self, path: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        predictions: list[dict[str, Any]] = self._call("POST", path, {"rows": rows})["predictions"]
        return predictions

    # --- scoring ------------------------------------------------------------------------------

    def score(self, transaction: dict[str, Any]) -> dict[str, Any]:
        """One prediction: score, decision, threshold, model_version, route, request_id,
        transaction_id, unknown_entities, latency_ms."""
        return self._call("POST", "/score", transaction)

    def score_batch(self, transactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._predictions("/score/batch", transactions)

    def post_labels(self, labels: list[dict[str, Any]]) -> dict[str, Any]:
        """``[{"request_id" or "transaction_id": ..., "label": 0|1}, ...]``."""
        return self._call("POST", "/labels", {"labels": labels})

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def ready(self) -> bool:
        try:
            self.health()
        except (ServingError, requests.RequestException):
            return False
        return True

    def metrics_text(self) -> str:
        resp = self.session.get(f"{self.url}/metrics", timeout=self.timeout)
        resp.raise_for_status()
        return resp.text

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``: ``{(name, sorted label pairs): value}``."""
        out = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    # --- control API (what the deploy DAG calls) ----------------------------------------------

    def status(self) -> dict[str, Any]:
        """``{"challenger_weight", "shadow", "threshold", "slots": {"champion": {...}, "challenger":
        {...}}, "inference_log": {...}, "started_at", ...}``; a slot has ``loaded``, ``version``,
        ``source``, ``sha256``, ``loaded_at`` and ``last_error``."""
        return self._call("GET", "/admin/status")

    def set_traffic(
        self, challenger_weight: float | None = None, shadow: bool | None = None
    ) -> dict[str, Any]:
        """Route ``challenger_weight`` (0..1) of live requests to the challenger and/or switch
        shadow mirroring; returns the new status. 409 if the challenger slot is empty."""
        body = {
            k: v for k, v in (("challenger_weight", challenger_weight), ("shadow", shadow)) if v is not None
        }
        return self._call("PUT", "/admin/traffic", body)

    def load(
        self, slot: str, *, version: str | int | None = None, alias: str | None = None
    ) -> dict[str, Any]:
        """Load a registered version (or what an alias points to now) into ``champion`` or
        ``challenger``; the slot serves its current model until the new one is verified and
        loaded. Raises ``ServingError``: 404 unknown version/alias, 409 integrity or contract
        failure (``kind``), 502 download/load failure; the slot then keeps its model."""
        body = {"version": str(version)} if version is not None else {"alias": alias}
        return self._call("POST", f"/admin/slots/{slot}/load", body, timeout=max(self.timeout, 300.0))

    def unload(self, slot: str = "challenger") -> dict[str, Any]:
        """Empty the challenger slot (its traffic share and shadow mode go to 0 first)."""
        return self._call("POST", f"/admin/slots/{slot}/unload")

    def smoke(self, slot: str, transactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score rows on one slot only (logged with route ``smoke``), e.g. before any traffic."""
        return self._predictions(f"/admin/slots/{slot}/score", transactions)

    def flush(self) -> dict[str, Any]:
        """Write the buffered inference log now (the monitor reads files, not the buffer)."""
        return self._call("POST", "/admin/flush")
