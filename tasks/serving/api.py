"""The HTTP face of one ingress replica: the scoring routes, ``/health``, ``/metrics``, and the
control API (``admin``), in one FastAPI app built per replica (``create_app``).

| route | what | credentials |
|---|---|---|
| ``POST /score``, ``/score/batch`` | one transaction, or up to 1000 (config) | ``scoring_token`` if set |
| ``POST /labels`` | delayed labels by ``request_id`` or ``transaction_id`` | the serving token |
| ``GET /health`` | 200 when the champion, feature store and inference log are ready | none |
| ``GET /metrics`` | Prometheus text, summed over the replicas (``?scope=replicas``: per replica) | none |
| ``/admin/*`` | the control API (``admin``) | the serving token |

Before anything is decoded a body over ``serving.max_request_bytes`` is a 413 (``guards``). A
request that breaks the data contract is a 422 naming the field, counted and never scored; a
scoring that cannot happen now (no champion, feature store down, inference log not writable) is
a 503 with its ``kind``. A prediction is answered only once it is in the inference log's WAL,
and so is a label post. ``X-Airloop-Traffic: synthetic`` marks load tests (logged as such).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import pandas as pd
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from tasks.serving.admin import admin_router
from tasks.serving.control import ServingControl
from tasks.serving.durable_log import DurableInferenceLog
from tasks.serving.guards import (
    SOURCE_HEADER,
    TRAFFIC_HEADER,
    BodyLimit,
    Credentials,
    Denied,
    client_address,
    denied_response,
    traffic,
)
from tasks.serving.pipeline import ScoringPipeline
from tasks.serving.responses import json_response, parse, unparsable_body, validation_error
from tasks.serving.schemas import Contract, Unavailable
from tasks.serving.wal import WalUnavailable

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger("ray.serve")

TRAFFIC_PARAMETER = {
    "name": TRAFFIC_HEADER,
    "in": "header",
    "required": False,
    "description": "synthetic: a load test or benchmark (logged as such, left out of monitoring)",
    "schema": {"type": "string", "enum": ["live", "synthetic"]},
}
SOURCE_PARAMETER = {
    "name": SOURCE_HEADER,
    "in": "header",
    "required": False,
    "description": "who posts the labels (recorded with each label; the body's source wins)",
    "schema": {"type": "string", "maxLength": 100},
}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def body_doc(model: type[BaseModel], *parameters: dict[str, Any], secured: bool = False) -> dict[str, Any]:
    """OpenAPI of a route that parses its body itself: the body's schema, headers, security."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    doc: dict[str, Any] = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "parameters": list(parameters),
    }
    if secured:
        doc["security"] = BEARER
    return doc


class ScoringAPI:
    """The scoring and label routes over one ingress's pipeline, log and control."""

    def __init__(
        self,
        settings: Settings,
        contract: Contract,
        pipeline: ScoringPipeline,
        control: ServingControl,
        credentials: Credentials,
    ) -> None:
        self.settings, self.contract, self.pipeline, self.control = settings, contract, pipeline, control
        self.credentials = credentials
        self.metrics = control.metrics
        self.writer: DurableInferenceLog = control.writer

    def router(self) -> APIRouter:
        r, c = APIRouter(), self.contract
        secured = self.credentials.scoring_token is not None
        r.add_api_route(
            "/score",
            self.score,
            methods=["POST"],
            summary="Score one transaction",
            openapi_extra=body_doc(c.transaction, TRAFFIC_PARAMETER, secured=secured),
        )
        r.add_api_route(
            "/score/batch",
            self.score_batch,
            methods=["POST"],
            summary="Score up to serving.max_request_rows transactions",
            openapi_extra=body_doc(c.batch, TRAFFIC_PARAMETER, secured=secured),
        )
        r.add_api_route(
            "/labels",
            self.labels,
            methods=["POST"],
            summary="Land delayed labels for logged predictions (each post a new version)",
            openapi_extra=body_doc(c.labels, SOURCE_PARAMETER, secured=True),
        )
        r.add_api_route("/health", self.health, methods=["GET"], summary="200 when ready to score")
        r.add_api_route("/metrics", self.prometheus, methods=["GET"], summary="Prometheus metrics")
        return r

    def _done(self, endpoint: str, arrived: float, response: Response) -> Response:
        self.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        self.metrics.request_latency.labels(endpoint).observe(time.perf_counter() - arrived)
        return response

    def _parse(self, endpoint: str, model: type[BaseModel], body: bytes) -> BaseModel | Response:
        parsed = parse(model, body)
        if isinstance(parsed, Response):
            self.metrics.errors.labels(endpoint, "validation", "").inc()
        return parsed

    async def _admit(
        self, endpoint: str, request: Request, model: type[BaseModel]
    ) -> tuple[BaseModel, str] | Response:
        """The parsed body and traffic mark of a scoring request, or the response refusing it."""
        denied = self.credentials.scoring(request)
        if denied is not None:
            return denied
        mark = traffic(request)
        if isinstance(mark, Response):
            self.metrics.errors.labels(endpoint, "validation", "").inc()
            return mark
        parsed = self._parse(endpoint, model, await request.body())
        return parsed if isinstance(parsed, Response) else (parsed, mark)

    async def _score(
        self, endpoint: str, rows: list[dict[str, Any]], request_id: str, arrived: float, mark: str
    ) -> list[dict[str, Any]] | Response:
        """The predictions of ``rows``, or the error response (503, 500), counted."""
        try:
            return await self.pipeline.score(endpoint, rows, request_id, arrived, mark)
        except Unavailable as exc:
            if exc.kind == "features":
                self.metrics.errors.labels(endpoint, "features", "").inc(len(rows))
            # nothing was scored nor logged: a client may send it again (``retryable``)
            body = {"error": str(exc), "kind": exc.kind, "request_id": request_id, "retryable": True}
            return json_response(body, 503)
        except Exception as exc:
            self.metrics.errors.labels(endpoint, "internal", "").inc(len(rows))
            log.exception("scoring failed (request %s)", request_id)
            body = {"error": f"scoring failed: {exc}", "kind": "internal", "request_id": request_id}
            return json_response(body, 500)

    async def score(self, request: Request) -> Response:
        arrived = time.perf_counter()
        admitted = await self._admit("score", request, self.contract.transaction)
        if isinstance(admitted, Response):
            return self._done("score", arrived, admitted)
        parsed, mark = admitted
        request_id = uuid.uuid4().hex
        out = await self._score("score", self.contract.rows([parsed]), request_id, arrived, mark)
        if isinstance(out, Response):
            return self._done("score", arrived, out)
        return self._done("score", arrived, json_response(out[0], headers={"X-Request-ID": request_id}))

    async def score_batch(self, request: Request) -> Response:
        arrived = time.perf_counter()
        admitted = await self._admit("score_batch", request, self.contract.batch)
        if isinstance(admitted, Response):
            return self._done("score_batch", arrived, admitted)
        parsed, mark = admitted
        request_id = uuid.uuid4().hex
        out = await self._score("score_batch", self.contract.batch_rows(parsed), request_id, arrived, mark)
        if isinstance(out, Response):
            return self._done("score_batch", arrived, out)
        body = {"request_id": request_id, "count": len(out), "predictions": out}
        return self._done("score_batch", arrived, json_response(body, headers={"X-Request-ID": request_id}))

    async def labels(self, request: Request) -> Response:
        arrived = time.perf_counter()
        if denied := self.credentials.admin(request):
            return self._done("labels", arrived, denied)
        parsed = self._parse("labels", self.contract.labels, await request.body())
        if isinstance(parsed, Response):
            return self._done("labels", arrived, parsed)
        rows = self.contract.label_rows(parsed)
        post = uuid.uuid4().hex
        source = getattr(parsed, "source", None) or request.headers.get(SOURCE_HEADER) or "api"
        meta = {
            "labeled_at": pd.Timestamp.now(tz="UTC"),
            "source": source[:100],
            "client": client_address(request),
        }
        rows = [{**row, **meta, "label_id": f"{post}-{i}"} for i, row in enumerate(rows)]
        try:
            await self.writer.labels(rows)
        except WalUnavailable as exc:
            self.metrics.errors.labels("labels", "inference_log", "").inc()
            self.metrics.log_failures.labels("labels").inc(len(rows))
            return self._done(
                "labels",
                arrived,
                json_response({"error": f"labels not stored: {exc}", "kind": "inference_log"}, 503),
            )
        body = {"accepted": len(rows), "post_id": post, "source": source, "versioned": True}
        return self._done("labels", arrived, json_response(body))

    async def health(self) -> Response:
        body = await self.control.health()
        return json_response(body, 200 if body["status"] == "ok" else 503)

    async def prometheus(self, request: Request) -> Response:
        scope = request.query_params.get("scope", "app")
        if scope not in ("app", "replicas"):
            return json_response({"error": f"scope must be app or replicas, not {scope[:40]!r}"}, 422)
        await self.control.slot_infos()  # the slot-version gauges as of this scrape
        text = await (self.control.replicas_text() if scope == "replicas" else self.control.metrics_text())
        return Response(text, media_type=self.metrics.content_type)


def create_app(
    settings: Settings,
    contract: Contract,
    pipeline: ScoringPipeline,
    control: ServingControl,
    credentials: Credentials,
) -> FastAPI:
    """The FastAPI app of one ingress replica: scoring routes and the control API, behind the
    body-size limit."""
    app = FastAPI(
        title="airloop serving",
        description="Fraud scoring: online features from Feast, champion/challenger routing, shadow "
        "mode, an inference log and Prometheus metrics. Control API under /admin (bearer token).",
        version="1",
    )
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Denied, denied_response)
    app.add_exception_handler(StarletteHTTPException, unparsable_body)
    app.include_router(ScoringAPI(settings, contract, pipeline, control, credentials).router())
    app.include_router(admin_router(control, pipeline, contract, credentials))
    app.add_middleware(BodyLimit, limit=settings.serving.max_request_bytes)
    _document(app, contract)
    return app


def _document(app: FastAPI, contract: Contract) -> None:
    """The request models' schemas and the bearer scheme in the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build()
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for model in (contract.transaction, contract.batch, contract.labels):
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas.setdefault(model.__name__, schema)
        components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
        for path, item in doc.get("paths", {}).items():
            if path.startswith("/admin"):
                for operation in item.values():
                    operation.setdefault("security", BEARER)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
