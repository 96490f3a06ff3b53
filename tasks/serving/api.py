"""The HTTP face of one ingress replica: the scoring routes, ``/health``, ``/metrics``, and the
control API (``admin``), in one FastAPI app built per replica (``create_app``).

| route | what |
|---|---|
| ``POST /score``, ``POST /score/batch`` | score one transaction, or up to ``serving.max_request_rows`` |
| ``POST /labels`` | delayed labels by ``request_id`` or ``transaction_id`` (the inference log) |
| ``GET /health`` | 200 when a champion model and the feature store are ready, else 503 |
| ``GET /metrics`` | Prometheus text |

A request that breaks the data contract is a 422 naming the field, counted and never scored; a
scoring that cannot happen now (no champion, feature store down) is a 503 with its ``kind``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel

from tasks.serving import inference_log
from tasks.serving.admin import admin_router
from tasks.serving.control import ServingControl
from tasks.serving.pipeline import ScoringPipeline
from tasks.serving.responses import json_response, parse, validation_error
from tasks.serving.schemas import Contract, Unavailable

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger("ray.serve")


class ScoringAPI:
    """The scoring routes over one ingress's pipeline and control."""

    def __init__(
        self, settings: Settings, contract: Contract, pipeline: ScoringPipeline, control: ServingControl
    ) -> None:
        self.settings, self.contract, self.pipeline, self.control = settings, contract, pipeline, control
        self.metrics = control.metrics

    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route("/score", self.score, methods=["POST"], summary="Score one transaction")
        r.add_api_route(
            "/score/batch",
            self.score_batch,
            methods=["POST"],
            summary="Score up to serving.max_request_rows transactions",
        )
        r.add_api_route(
            "/labels", self.labels, methods=["POST"], summary="Land delayed labels for logged predictions"
        )
        r.add_api_route(
            "/health",
            self.health,
            methods=["GET"],
            summary="200 when a champion model and the feature store are ready",
        )
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

    async def _score(
        self, endpoint: str, rows: list[dict[str, Any]], request_id: str, arrived: float
    ) -> list[dict[str, Any]] | Response:
        """The predictions of ``rows``, or the error response (503, 500), counted."""
        try:
            return await self.pipeline.score(endpoint, rows, request_id, arrived)
        except Unavailable as exc:
            if exc.kind == "features":
                self.metrics.errors.labels(endpoint, "features", "").inc(len(rows))
            return json_response({"error": str(exc), "kind": exc.kind, "request_id": request_id}, 503)
        except Exception as exc:
            self.metrics.errors.labels(endpoint, "internal", "").inc(len(rows))
            log.exception("scoring failed (request %s)", request_id)
            body = {"error": f"scoring failed: {exc}", "kind": "internal", "request_id": request_id}
            return json_response(body, 500)

    async def score(self, request: Request) -> Response:
        arrived = time.perf_counter()
        parsed = self._parse("score", self.contract.transaction, await request.body())
        if isinstance(parsed, Response):
            return self._done("score", arrived, parsed)
        request_id = uuid.uuid4().hex
        out = await self._score("score", self.contract.rows([parsed]), request_id, arrived)
        if isinstance(out, Response):
            return self._done("score", arrived, out)
        return self._done("score", arrived, json_response(out[0], headers={"X-Request-ID": request_id}))

    async def score_batch(self, request: Request) -> Response:
        arrived = time.perf_counter()
        parsed = self._parse("score_batch", self.contract.batch, await request.body())
        if isinstance(parsed, Response):
            return self._done("score_batch", arrived, parsed)
        request_id = uuid.uuid4().hex
        out = await self._score("score_batch", self.contract.batch_rows(parsed), request_id, arrived)
        if isinstance(out, Response):
            return self._done("score_batch", arrived, out)
        body = {"request_id": request_id, "count": len(out), "predictions": out}
        return self._done("score_batch", arrived, json_response(body, headers={"X-Request-ID": request_id}))

    async def labels(self, request: Request) -> Response:
        arrived = time.perf_counter()
        parsed = self._parse("labels", self.contract.labels, await request.body())
        if isinstance(parsed, Response):
            return self._done("labels", arrived, parsed)
        rows = self.contract.label_rows(parsed)
        try:
            uris = await asyncio.to_thread(inference_log.write_labels, self.settings, rows)
        except Exception as exc:  # noqa: BLE001 - storage down: the caller must retry, nothing half-written
            self.metrics.errors.labels("labels", "storage", "").inc()
            return self._done("labels", arrived, json_response({"error": f"labels not stored: {exc}"}, 503))
        return self._done("labels", arrived, json_response({"accepted": len(rows), "files": uris}))

    async def health(self) -> Response:
        body = await self.control.health()
        return json_response(body, 200 if body["status"] == "ok" else 503)

    async def prometheus(self) -> Response:
        await self.control.slot_infos()  # the slot-version gauges as of this scrape
        return Response(self.control.metrics_text(), media_type=self.metrics.content_type)


def create_app(
    settings: Settings, contract: Contract, pipeline: ScoringPipeline, control: ServingControl
) -> FastAPI:
    """The FastAPI app of one ingress replica: scoring routes and the control API."""
    app = FastAPI(
        title="airloop serving",
        description="Fraud scoring: online features from Feast, champion/challenger routing, shadow "
        "mode, an inference log and Prometheus metrics. Control API under /admin.",
        version="1",
    )
    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(ScoringAPI(settings, contract, pipeline, control).router())
    app.include_router(admin_router(control, pipeline, contract, settings.serving.admin_token))
    return app
