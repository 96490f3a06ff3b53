"""A small typed HTTP client of the serving application: scoring, labels and the control API.

This is what the deploy DAG, the traffic player, the demo and the tests use; it needs only
``requests`` (no Ray, no Feast), so it is cheap to import in an Airflow task.

    client = ServingClient.from_settings(settings)   # the serving token, retries, serving.url
    client.load("challenger", version="7")          # zero downtime; ServingError(409) if refused
    client.set_traffic(shadow=True)                 # mirror to the challenger, logged only
    client.set_traffic(challenger_weight=0.1)       # canary 10 %
    client.set_traffic(challenger_weight=0.0, shadow=False)   # roll back
    client.load("champion", version="7")            # promote, then
    client.set_traffic(challenger_weight=0.0)

Retries (``tasks.common.retry``, within ``serving.client_retry_seconds``, one log line each):

- reads and control calls (idempotent: setting a weight or loading a version twice is the same
  as once) on connection errors, timeouts, 429, 500, 503 and 504; a refused model load (502
  ``load``, 404, 409) is an answer, not retried;
- label posts likewise: a post repeated after a lost answer is a second version of the same label,
  which the monitor's "latest version" rule reads as the first;
- scoring only when the request was certainly not scored: the connection was refused (nothing
  sent), or the answer was 429 or a 503 that scored nothing (``retryable`` in its body, or
  HAProxy's own 503 when no replica was up). A lost answer after the request was sent (a reset
  connection, a timeout, a 502) is not retried: the server may have logged it, and a retry would
  log a second prediction for the same transaction.

``synthetic=True`` marks every request ``X-Airloop-Traffic: synthetic`` (load tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from prometheus_client.parser import text_string_to_metric_families
from urllib3.exceptions import MaxRetryError, NewConnectionError

from tasks.common.retry import RetryOn, call_with_retries, retry_statuses, status_of

if TYPE_CHECKING:
    from config import Settings

T = TypeVar("T")
TRAFFIC_HEADER = "X-Airloop-Traffic"
SAFE_STATUSES = frozenset({429, 500, 503, 504})
"""Statuses a control call or a read is retried on."""
retry_safe = retry_statuses(SAFE_STATUSES)


class ServingError(RuntimeError):
    """A non-2xx answer: ``status`` and the decoded ``body`` (``body["error"]`` says why)."""

    def __init__(self, status: int, body: Any, url: str) -> None:
        message = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"{status} from {url}: {message or str(body)[:200]}")
        self.status = status
        self.body = body

    @property
    def kind(self) -> str | None:
        return self.body.get("kind") if isinstance(self.body, dict) else None


def never_sent(exc: BaseException) -> bool:
    """A connection that was refused or never made: the server saw nothing."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    cause = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return isinstance(cause, NewConnectionError | ConnectionRefusedError)


def retry_scoring(exc: BaseException) -> str | None:
    """Why a scoring request is safe to send again (it was not scored), or None."""
    if never_sent(exc):
        return "connection refused (nothing sent)"
    status = status_of(exc)
    if status == 429:
        return "HTTP 429"
    if status == 503 and isinstance(exc, ServingError):
        body = exc.body
        if not isinstance(body, dict) or body.get("retryable"):
            return (
                f"HTTP 503 ({body.get('kind') if isinstance(body, dict) else 'no replica'}: nothing scored)"
            )
    return None


class ServingClient:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retry_seconds: float = 0.0,
        synthetic: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        if synthetic:
            self.session.headers[TRAFFIC_HEADER] = "synthetic"

    @classmethod
    def from_settings(
        cls, settings: Settings, *, url: str | None = None, synthetic: bool = False, timeout: float = 30.0
    ) -> ServingClient:
        """The client the rest of airloop uses: ``serving.url`` (or ``url``), the serving token
        (``tasks.common.secrets.serving_token``), retries within ``serving.client_retry_seconds``."""
        from tasks.common.secrets import serving_token  # noqa: PLC0415 - config only when asked

        return cls(
            url or settings.serving.url,
            token=serving_token(settings),
            timeout=timeout,
            retry_seconds=settings.serving.client_retry_seconds,
            synthetic=synthetic,
        )

    def _retried(self, what: str, fn: Callable[[], T], retry_on: RetryOn) -> T:
        if self.retry_seconds <= 0:
            return fn()
        return call_with_retries(fn, what=what, retry_on=retry_on, deadline_s=self.retry_seconds)

    def _once(self, method: str, path: str, body: Any, timeout: float | None) -> dict[str, Any]:
        """One request: the decoded JSON object of a 2xx answer; ``ServingError`` for anything else."""
        url = f"{self.url}{path}"
        resp = self.session.request(method, url, json=body, timeout=timeout or self.timeout)
        try:
            data = resp.json()
        except ValueError:
            data = resp.text
        if resp.status_code >= 400 or not isinstance(data, dict):
            raise ServingError(resp.status_code, data, url)
        return data

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        timeout: float | None = None,
        retry_on: RetryOn = retry_safe,
    ) -> dict[str, Any]:
        return self._retried(
            f"{method} {self.url}{path}", lambda: self._once(method, path, body, timeout), retry_on
        )

    def _predictions(self, path: str, rows: list[dict[str, Any]], retry_on: RetryOn) -> list[dict[str, Any]]:
        predictions: list[dict[str, Any]] = self._call("POST", path, {"rows": rows}, retry_on=retry_on)[
            "predictions"
        ]
        return predictions

    # --- scoring ------------------------------------------------------------------------------

    def score(self, transaction: dict[str, Any]) -> dict[str, Any]:
        """One prediction: score, decision, threshold, model_version, route, request_id,
        transaction_id, unknown_entities, latency_ms."""
        return self._call("POST", "/score", transaction, retry_on=retry_scoring)

    def score_batch(self, transactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._predictions("/score/batch", transactions, retry_scoring)

    def post_labels(self, labels: list[dict[str, Any]], source: str | None = None) -> dict[str, Any]:
        """``[{"request_id" or "transaction_id": ..., "label": 0|1}, ...]``; each is kept as a new
        version of its key's label, ``source`` saying who posted it."""
        body: dict[str, Any] = {"labels": labels}
        if source:
            body["source"] = source
        return self._call("POST", "/labels", body, retry_on=retry_safe)

    def health(self) -> dict[str, Any]:
        return self._once("GET", "/health", None, None)

    def ready(self) -> bool:
        try:
            self.health()
        except (ServingError, requests.RequestException):
            return False
        return True

    def metrics_text(self) -> str:
        def fetch() -> str:
            resp = self.session.get(f"{self.url}/metrics", timeout=self.timeout)
            if resp.status_code >= 400:
                raise ServingError(resp.status_code, resp.text, f"{self.url}/metrics")
            return resp.text

        return self._retried(f"GET {self.url}/metrics", fetch, retry_safe)

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
        {...}}, "inference_log": {...}, "replicas": [...], "revision", "started_at", ...}``; a slot
        has ``loaded``, ``version``, ``source``, ``sha256``, ``loaded_at`` and ``last_error``."""
        return self._call("GET", "/admin/status")

    def set_traffic(
        self, challenger_weight: float | None = None, shadow: bool | None = None
    ) -> dict[str, Any]:
        """Route ``challenger_weight`` (0..1) of live requests to the challenger and/or switch
        shadow mirroring, on every replica; returns the new status. 409 if the challenger slot
        is empty."""
        body = {
            k: v for k, v in (("challenger_weight", challenger_weight), ("shadow", shadow)) if v is not None
        }
        return self._call("PUT", "/admin/traffic", body)

    def load(
        self, slot: str, *, version: str | int | None = None, alias: str | None = None
    ) -> dict[str, Any]:
        """Load a registered version (or what an alias points to now) into ``champion`` or
        ``challenger`` on every replica; the slot serves its current model until the new one is
        verified and loaded. Raises ``ServingError``: 404 unknown version/alias, 409 integrity or
        contract failure (``kind``), 502 download/load failure; the slot then keeps its model."""
        body = {"version": str(version)} if version is not None else {"alias": alias}
        return self._call("POST", f"/admin/slots/{slot}/load", body, timeout=max(self.timeout, 300.0))

    def unload(self, slot: str = "challenger") -> dict[str, Any]:
        """Empty the challenger slot (its traffic share and shadow mode go to 0 first)."""
        return self._call("POST", f"/admin/slots/{slot}/unload")

    def smoke(self, slot: str, transactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score rows on one slot only (logged with route ``smoke``), e.g. before any traffic."""
        return self._predictions(f"/admin/slots/{slot}/score", transactions, retry_safe)

    def flush(self) -> dict[str, Any]:
        """Compact the inference log now on every replica (the monitor reads files, not the WAL)."""
        return self._call("POST", "/admin/flush", timeout=max(self.timeout, 120.0))
