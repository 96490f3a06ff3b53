"""What every request to the serving application passes before any of its body is decoded:
the size limit, the credentials, the traffic mark.

- ``BodyLimit`` (ASGI middleware): a body over ``serving.max_request_bytes`` is a 413 naming the
  limit, known from ``Content-Length`` before a byte is read, or while reading a body sent
  without one (chunked); nothing is buffered beyond the limit;
- ``Credentials``: ``/admin/*`` and ``POST /labels`` need ``Authorization: Bearer <serving
  token>`` (``tasks.common.secrets.serving_token``) in every profile, scoring needs
  ``serving.scoring_token`` when one is set: 401 without credentials, 403 with wrong ones,
  compared in constant time;
- ``traffic``: ``X-Airloop-Traffic: synthetic`` marks load tests and benchmarks (``live`` when
  absent); anything else is a 422 naming the header.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasks.serving.logfiles import LIVE, SYNTHETIC
from tasks.serving.responses import json_response

TRAFFIC_HEADER = "X-Airloop-Traffic"
SOURCE_HEADER = "X-Airloop-Source"
LIMIT_NAME = "serving.max_request_bytes"


def too_large(limit: int) -> dict[str, Any]:
    return {
        "error": f"request body over {LIMIT_NAME} ({limit} bytes)",
        "kind": "too_large",
        "limit": limit,
        "limit_name": LIMIT_NAME,
    }


class BodyLimit:
    """ASGI middleware: request bodies over ``limit`` bytes are refused with a 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            body = {"error": "Content-Length is not a number", "fields": ["header.Content-Length"]}
            await _reply(send, 400, body)
            return
        if declared is not None and declared > self.limit:
            await _reply(send, 413, too_large(self.limit))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _reply(send, 413, too_large(self.limit))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, None, receive), send)


def _content_length(scope: Scope) -> int | None:
    """The declared body length; None when absent, -1 when not a number."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body read already, then the real one."""
    state = {"sent": False}

    async def replayed() -> Message:
        if not state["sent"]:
            state["sent"] = True
            if pending is not None:
                return pending
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await receive()

    return replayed


async def _reply(send: Send, status: int, body: dict[str, Any]) -> None:
    response = json_response(body, status, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class Denied(Exception):
    """A route dependency's refusal: the 401 or 403 of ``Credentials``, sent before the body is
    parsed (an unauthenticated caller learns nothing of what a valid body looks like)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def denied_response(request: Request, exc: Exception) -> Response:
    """The app's handler for ``Denied``."""
    assert isinstance(exc, Denied)
    return exc.response


class Credentials:
    """Bearer-token checks; each returns None when the request may go on, else the response."""

    def __init__(self, admin_token: str, scoring_token: str | None = None) -> None:
        if not admin_token:
            raise ValueError("the serving application needs its admin token (tasks.common.secrets)")
        self.admin_token, self.scoring_token = admin_token, scoring_token

    @staticmethod
    def check(request: Request, token: str, what: str) -> Response | None:
        header = request.headers.get("authorization")
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            body = {
                "error": f"{what} needs credentials: Authorization: Bearer <token>",
                "fields": ["header.Authorization"],
            }
            return json_response(body, 401, headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            body = {"error": f"{what}: the token is not the right one", "fields": ["header.Authorization"]}
            return json_response(body, 403)
        return None

    def admin(self, request: Request) -> Response | None:
        """``/admin/*`` and ``POST /labels``."""
        return self.check(request, self.admin_token, "the control API and label posts")

    def scoring(self, request: Request) -> Response | None:
        """Scoring: open unless ``serving.scoring_token`` is set."""
        if self.scoring_token is None:
            return None
        return self.check(request, self.scoring_token, "scoring")


def traffic(request: Request) -> str | Response:
    """The request's traffic mark, or the 422 for a value that is neither."""
    value = (request.headers.get(TRAFFIC_HEADER) or LIVE).strip().lower()
    if value in (LIVE, SYNTHETIC):
        return value
    field = f"header.{TRAFFIC_HEADER}"
    body = {
        "error": f"invalid request: {field} must be {LIVE!r} or {SYNTHETIC!r}",
        "fields": [field],
        "detail": [{"loc": ["header", TRAFFIC_HEADER], "type": "literal_error", "msg": "live or synthetic"}],
    }
    return json_response(body, 422)


def client_address(request: Request) -> str | None:
    """Who sent the request: the last ``X-Forwarded-For`` entry (the one our HAProxy added,
    a caller cannot forge it), else the connection's peer."""
    forwarded = request.headers.getlist("x-forwarded-for")
    if forwarded:
        last = forwarded[-1].split(",")[-1].strip()
        if last:
            return last
    return request.client.host if request.client else None
