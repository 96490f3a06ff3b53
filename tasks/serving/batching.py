"""Adaptive micro-batching for the scoring path.

Why not ``@serve.batch``: it forms the next batch as soon as the previous one is handed off,
before that one has finished (its semaphore limits execution, not formation), so a batch is what
arrives within ``batch_wait_timeout_s``. A batch has a fixed cost whatever its rows (the online
store read, the hop to the model replica: milliseconds here), so a short timeout runs many
one-row batches and collapses under load, while a timeout near the fixed cost holds up under
load but makes every request wait it when traffic is light (``benchmarks/serving.py`` compares
both on a synthetic stage). Here a batch is
everything that queued while the previous batch's first stage ran: one row at once when idle (no
added wait), more under load (the fixed cost shared), with no timeout to tune. The second stage
(model calls, logging, replies) runs while the next batch's first stage does, so the online store
and the model replica work as a pipeline.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """``await submit(item)`` -> that item's result, computed in a batch with its neighbours.

    ``prepare(items) -> state`` runs one batch at a time; ``finish(items, state)`` returns one
    result (or an exception instance, raised to that caller only) per item and runs for up to
    ``max_in_flight`` batches at once. An exception from either stage fails the whole batch.
    """

    def __init__(
        self,
        prepare: Callable[[list[T]], Awaitable[Any]],
        finish: Callable[[list[T], Any], Awaitable[list[R | BaseException]]],
        *,
        max_batch_size: int,
        wait_s: float = 0.0,
        max_in_flight: int = 4,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._prepare = prepare
        self._finish = finish
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self._queue: deque[tuple[T, asyncio.Future[R], float]] = deque()
        self._ready: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: asyncio.Semaphore | None = None
        self._max_in_flight = max_in_flight
        self._on_batch = on_batch
        self._tasks: set[asyncio.Task[None]] = set()

    def _start(self) -> None:
        self._ready = asyncio.Event()
        self._in_flight = asyncio.Semaphore(self._max_in_flight)
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, item: T) -> R:
        if self._worker is None or self._worker.done():
            self._start()
        assert self._ready is not None
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future, time.perf_counter()))
        self._ready.set()
        return await future

    async def submit_many(self, items: list[T]) -> list[R]:
        """Each item's result, in order (queued together: one task, not one per item); the first
        item's error is raised if any failed."""
        if self._worker is None or self._worker.done():
            self._start()
        assert self._ready is not None
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            self._queue.append((item, future, now))
            futures.append(future)
        self._ready.set()
        out: list[R] = []
        for result in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
            out.append(result)
        return out

    async def _run(self) -> None:
        assert self._ready is not None and self._in_flight is not None
        while True:
            await self._ready.wait()
            if self.wait_s and len(self._queue) < self.max_batch_size:
                await asyncio.sleep(self.wait_s)
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch_size))]
            if not self._queue:
                self._ready.clear()
            batch = [b for b in batch if not b[1].done()]  # callers that went away
            if not batch:
                continue
            if self._on_batch:
                self._on_batch(len(batch), time.perf_counter() - batch[0][2])
            items = [b[0] for b in batch]
            futures = [b[1] for b in batch]
            try:
                state = await self._prepare(items)
            except BaseException as exc:
                _fail(futures, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            await self._in_flight.acquire()
            task = asyncio.get_running_loop().create_task(self._complete(items, futures, state))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _complete(self, items: list[T], futures: list[asyncio.Future[R]], state: Any) -> None:
        assert self._in_flight is not None
        try:
            results = await self._finish(items, state)
        except BaseException as exc:  # noqa: BLE001
            _fail(futures, exc)
            return
        finally:
            self._in_flight.release()
        for future, result in zip(futures, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def _fail(futures: list[asyncio.Future[Any]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)
