"""JSON responses of the serving API, written directly (no response model on the request path)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tasks.serving import schemas


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), default=str).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def invalid(details: list[dict[str, Any]]) -> Response:
    """A 422 that names the bad fields (``rows.3.amount``) and says what is wrong with each."""
    fields = schemas.bad_fields(details)
    return json_response(
        {"error": f"invalid request: {', '.join(fields)}", "fields": fields, "detail": details}, 422
    )


async def validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own validation errors (path and body parameters) in the same 422 shape."""
    assert isinstance(exc, RequestValidationError)
    details = [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]} for e in exc.errors()]
    return invalid(details)


async def unparsable_body(request: Request, exc: Exception) -> Response:
    """FastAPI's 400 for a body it cannot decode (not JSON, or a form), naming the body."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code != 400:
        return await http_exception_handler(request, exc)
    return json_response({"error": f"the body could not be parsed: {exc.detail}", "fields": ["body"]}, 400)


def parse(model: type[BaseModel], body: bytes) -> BaseModel | Response:
    """``body`` validated as ``model``, or the 422 response that says why not."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        return invalid(schemas.error_details(exc))
