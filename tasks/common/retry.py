"""Retries the way upstream systems do them: backoff with jitter, a bounded total time, one line each.

    from tasks.common.retry import call_with_retries, transient_http

    event = call_with_retries(
        lambda: client.post_asset_event("landing", extra),
        what="POST /api/v2/assets/events (landing)",
        retry_on=transient_http,          # connection errors, timeouts, 429 and 5xx
        deadline_s=60.0,
    )

``retry_on`` says, for an exception, why it is worth another try (a short reason) or ``None``
(not transient: raised at once). Delays grow ``first_delay_s * 2**n`` up to ``max_delay_s``, each
with up to ``jitter`` of itself added at random (so many clients do not retry in step); a retry
that would start after ``deadline_s`` is not made and the last error is raised. Each retry logs
one WARNING line naming what failed, why, and when the next try is. Clock, sleeper and random
source are injectable, so tests run without waiting.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import requests

T = TypeVar("T")

RetryOn = Callable[[BaseException], str | None]
"""Why an error is worth another try (a short reason), or None when it is not."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses a client retries: too many requests and the server-side failures that pass."""

log = logging.getLogger("airloop.retry")


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an error carries (``status_code``/``status`` attributes, or a requests
    ``HTTPError``'s response), or None."""
    for attr in ("status_code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def transient_http(exc: BaseException) -> str | None:
    """Connection errors, timeouts, 429 and 5xx (502/503/504/500) are transient; nothing else."""
    if isinstance(exc, requests.ConnectionError | ConnectionError):
        return f"connection error ({type(exc).__name__})"
    if isinstance(exc, requests.Timeout | TimeoutError):
        return f"timed out ({type(exc).__name__})"
    status = status_of(exc)
    if status in RETRY_STATUSES:
        return f"HTTP {status}"
    return None


def retry_statuses(statuses: frozenset[int]) -> RetryOn:
    """Like ``transient_http`` but for another set of statuses (connection errors always count)."""

    def retry_on(exc: BaseException) -> str | None:
        status = status_of(exc)
        if status is not None:
            return f"HTTP {status}" if status in statuses else None
        return transient_http(exc)

    return retry_on


def backoff_delay(
    attempt: int, *, first_delay_s: float, max_delay_s: float, jitter: float, draw: float
) -> float:
    """The pause after failed try number ``attempt`` (1-based), with ``draw`` in [0, 1) of jitter."""
    base = min(max_delay_s, first_delay_s * 2.0 ** (attempt - 1))
    return float(base * (1.0 + jitter * draw))


def call_with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    retry_on: RetryOn,
    deadline_s: float,
    first_delay_s: float = 0.25,
    max_delay_s: float = 5.0,
    jitter: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
    logger: logging.Logger | None = None,
) -> T:
    """``fn()``, tried again after transient errors until it succeeds or ``deadline_s`` is spent.

    The error of the last try is raised unchanged (a non-transient one at once); nothing sleeps
    past the deadline.
    """
    if deadline_s < 0 or first_delay_s < 0 or max_delay_s < 0 or jitter < 0:
        raise ValueError("deadline_s, first_delay_s, max_delay_s and jitter must be >= 0")
    out = logger or log
    give_up_at = clock() + deadline_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            why = retry_on(exc)
            if why is None:
                raise
            delay = backoff_delay(
                attempt, first_delay_s=first_delay_s, max_delay_s=max_delay_s, jitter=jitter, draw=rand()
            )
            left = give_up_at - clock()
            if delay > left:
                out.warning("%s failed (%s) on try %d; giving up after %.1fs", what, why, attempt, deadline_s)
                raise
            out.warning("%s failed (%s) on try %d; retrying in %.2fs", what, why, attempt, delay)
            sleep(delay)
