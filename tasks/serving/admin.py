"""The control API under ``/admin``, as its own ``APIRouter``: what the deploy DAG drives through
``client.ServingClient`` (its paths, status codes and bodies are that client's contract).

- ``GET /admin/status``: slots, traffic split, shadow mode, inference log;
- ``PUT /admin/traffic``: the challenger's share of traffic and/or shadow mode (409: the
  challenger slot is empty);
- ``POST /admin/slots/{slot}/load``: a registered version or alias into a slot, zero downtime
  (404 unknown, 409 integrity or contract, 502 download or load failed; the slot keeps its model);
- ``POST /admin/slots/{slot}/unload``: empty the challenger, its traffic and shadow off first
  (409 for the champion);
- ``POST /admin/slots/{slot}/score``: smoke test, rows scored on one slot with route ``smoke``
  (502 the model failed, 409 the slot is empty);
- ``POST /admin/flush``: compact the inference log now (every replica).

Every route needs ``Authorization: Bearer <serving token>`` (``guards.Credentials``): 401
without credentials, 403 with wrong ones. A change answers once every ingress replica applied it.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tasks.serving.control import Conflict, ServingControl
from tasks.serving.guards import Credentials, Denied
from tasks.serving.pipeline import ScoringPipeline, SmokeFailed
from tasks.serving.responses import json_response, parse
from tasks.serving.schemas import Contract, LoadModel, Slot, TrafficUpdate, Unavailable

LOAD_REFUSED_STATUS = {"not_found": 404, "integrity": 409, "contract": 409}
"""HTTP status of a refused load by its kind; any other kind (``load``) is a 502."""
SMOKE_FAILED_STATUS = {"model": 502, "no_model": 409}


class AdminAPI:
    """The ``/admin`` routes over one ingress's ``ServingControl`` and ``ScoringPipeline``."""

    def __init__(
        self, control: ServingControl, pipeline: ScoringPipeline, contract: Contract, credentials: Credentials
    ) -> None:
        self.control, self.pipeline, self.contract = control, pipeline, contract
        self.credentials = credentials

    def router(self) -> APIRouter:
        r = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(self.require)])
        r.add_api_route(
            "/status",
            self.status,
            methods=["GET"],
            summary="Slots, traffic split, shadow mode, inference log",
        )
        r.add_api_route(
            "/traffic",
            self.traffic,
            methods=["PUT"],
            summary="Set the challenger's share of traffic and/or shadow mode",
        )
        r.add_api_route(
            "/slots/{slot}/load",
            self.load,
            methods=["POST"],
            summary="Load a registered version or alias into a slot",
        )
        r.add_api_route(
            "/slots/{slot}/unload",
            self.unload,
            methods=["POST"],
            summary="Empty the challenger slot (traffic and shadow off first)",
        )
        r.add_api_route(
            "/slots/{slot}/score",
            self.smoke,
            methods=["POST"],
            summary="Smoke test: score rows on one slot (route 'smoke')",
        )
        r.add_api_route(
            "/flush", self.flush, methods=["POST"], summary="Compact the inference log now (every replica)"
        )
        return r

    def require(self, request: Request) -> None:
        """Every ``/admin`` route's first step: ``Denied`` (401 or 403) without the token."""
        if (refusal := self.credentials.admin(request)) is not None:
            raise Denied(refusal)

    async def status(self, request: Request) -> Response:
        return json_response(await self.control.status())

    async def traffic(self, request: Request, update: TrafficUpdate) -> Response:
        try:
            return json_response(await self.control.set_traffic(update.challenger_weight, update.shadow))
        except Conflict as exc:
            return json_response({"error": str(exc)}, 409)

    async def load(self, request: Request, slot: Slot, ref: LoadModel) -> Response:
        try:
            outcome = await self.control.load(slot, version=ref.version, alias=ref.alias)
        except Conflict as exc:
            return json_response({"error": str(exc)}, 409)
        if outcome.ok:
            return json_response(outcome.slot)
        error = outcome.error or {"kind": "load", "message": "refused"}
        kept = outcome.slot.get("version")
        body = {
            "error": error["message"],
            "kind": error["kind"],
            "slot": slot,
            "kept_version": kept,
            "detail": f"the {slot} slot keeps {'version ' + kept if kept else 'no model'}",
        }
        return json_response(body, LOAD_REFUSED_STATUS.get(error["kind"], 502))

    async def unload(self, request: Request, slot: Slot) -> Response:
        try:
            return json_response(await self.control.unload(slot))
        except Conflict as exc:
            return json_response({"error": str(exc)}, 409)

    async def smoke(self, request: Request, slot: Slot) -> Response:
        arrived = time.perf_counter()
        parsed = parse(self.contract.batch, await request.body())
        if isinstance(parsed, Response):
            self.control.metrics.errors.labels("smoke", "validation", "").inc()
            return parsed
        request_id = uuid.uuid4().hex
        rows = self.contract.batch_rows(parsed)
        try:
            predictions = await self.pipeline.smoke(slot, rows, request_id, arrived)
        except Unavailable as exc:
            return json_response({"error": str(exc), "kind": exc.kind}, 503)
        except Conflict as exc:
            return json_response({"error": str(exc)}, 409)
        except SmokeFailed as exc:
            return json_response({"error": str(exc), "kind": exc.kind}, SMOKE_FAILED_STATUS[exc.kind])
        body = {"request_id": request_id, "slot": slot, "count": len(rows), "predictions": predictions}
        return json_response(body)

    async def flush(self, request: Request) -> Response:
        try:
            return json_response(await self.control.flush())
        except Conflict as exc:
            return json_response({"error": str(exc)}, 409)
        except Exception as exc:  # noqa: BLE001 - storage down: the WAL keeps the rows, say so
            return json_response({"error": f"inference log not compacted: {exc}", "kind": "storage"}, 503)


def admin_router(
    control: ServingControl, pipeline: ScoringPipeline, contract: Contract, credentials: Credentials
) -> APIRouter:
    """The ``/admin`` routes of one ingress."""
    return AdminAPI(control, pipeline, contract, credentials).router()
