"""Shadow mode: the champion's rows scored by the challenger too, in the background.

A mirrored call never delays, fails or changes the answer the caller gets: it starts after the
answer is ready, its failures are counted, not raised, and its scores are only logged (route
``shadow``). At most ``max_in_flight`` mirrored calls are under way at once; beyond that a batch
is not mirrored (and counted as skipped), so a slow challenger cannot pile up work in the ingress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tasks.serving.shapes import SlotScores

log = logging.getLogger("ray.serve")


class ShadowMirror:
    """Bounded background calls whose answers go to ``on_scored`` and errors to ``on_failed``."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.mirrored = 0
        self.skipped = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def mirror(
        self,
        call: Callable[[], Awaitable[SlotScores]],
        on_scored: Callable[[SlotScores], None],
        on_failed: Callable[[BaseException], None],
    ) -> bool:
        """Start ``call`` in the background; False (counted in ``skipped``) when ``max_in_flight``
        mirrored calls are already under way. An empty answer (no model) is dropped."""
        if self.in_flight >= self.max_in_flight:
            self.skipped += 1
            return False
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(call, on_scored, on_failed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(
        self,
        call: Callable[[], Awaitable[SlotScores]],
        on_scored: Callable[[SlotScores], None],
        on_failed: Callable[[BaseException], None],
    ) -> None:
        try:
            answer = await call()
            if answer.version is not None:
                on_scored(answer)
                self.mirrored += 1
        except Exception as exc:  # noqa: BLE001 - shadow failures are counted, never raised
            self.failed += 1
            log.warning("shadow scoring failed: %s", exc)
            on_failed(exc)
        finally:
            self.in_flight -= 1

    async def drain(self) -> None:
        """Wait for the mirrored calls under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
