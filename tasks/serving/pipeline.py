"""The scoring path of the ingress, batch by batch.

    requests ─▶ MicroBatcher ─▶ prepare: FeatureLookup (one online read for the batch)
                             ─▶ finish:  Router (one call per slot) ─▶ PredictionRecorder
                                         (inference log, awaited: on disk before any answer;
                                         then answers, metrics) ─▶ ShadowMirror

A batch is whatever queued while the previous batch's lookup ran (``batching``); up to
``serving.max_batches_in_flight`` batches are in ``finish`` at once. Where the models run is the
slots' business (``slots``): this module only calls ``ModelSlot.predict`` and times it
(``stage_latency``: ``model_<slot>`` round trip, ``compute_<slot>`` the model itself).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.serving.batching import MicroBatcher
from tasks.serving.logfiles import LIVE, SYNTHETIC
from tasks.serving.lookup import FeatureLookup
from tasks.serving.recorder import SHADOW, PredictionRecorder
from tasks.serving.router import CHALLENGER, CHAMPION, ChampionFailed, Router
from tasks.serving.schemas import Unavailable
from tasks.serving.shadow import ShadowMirror
from tasks.serving.shapes import Batch, Columns, Pending, Scored, SlotScores, take
from tasks.serving.slots import ModelSlot
from tasks.serving.wal import WalUnavailable

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger("ray.serve")

SMOKE = "smoke"


class SmokeFailed(RuntimeError):
    """A smoke test the slot could not pass: ``kind`` ``model`` (it raised) or ``no_model``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ScoringPipeline:
    """Scores request rows in batches: lookup, route, answer, log, mirror."""

    def __init__(
        self,
        settings: Settings,
        *,
        lookup: FeatureLookup,
        router: Router,
        slots: dict[str, ModelSlot],
        recorder: PredictionRecorder,
        mirror: ShadowMirror,
    ) -> None:
        cfg = settings.serving
        self.key = settings.schema_.key
        self.lookup, self.router, self.slots = lookup, router, slots
        self.recorder, self.mirror = recorder, mirror
        self.batcher: MicroBatcher[Pending, dict[str, Any]] = MicroBatcher(
            self.prepare,
            self.finish,
            max_batch_size=cfg.max_batch_size,
            wait_s=cfg.batch_wait_ms / 1000.0,
            max_in_flight=cfg.max_batches_in_flight,
            on_batch=recorder.batch,
        )

    def pending(
        self, endpoint: str, rows: list[dict[str, Any]], request_id: str, arrived: float, traffic: str = LIVE
    ) -> list[Pending]:
        """The rows as batch items; a single ``/score`` row keeps the request's id."""
        if len(rows) == 1 and endpoint == "score":
            return [Pending(request_id, rows[0], arrived, endpoint, rows[0].get(self.key), traffic)]
        return [
            Pending(f"{request_id}-{i}", row, arrived, endpoint, row.get(self.key), traffic)
            for i, row in enumerate(rows)
        ]

    async def score(
        self, endpoint: str, rows: list[dict[str, Any]], request_id: str, arrived: float, traffic: str = LIVE
    ) -> list[dict[str, Any]]:
        """The answers to ``rows``, in order. Raises ``Unavailable`` (503) or the batch's error."""
        items = self.pending(endpoint, rows, request_id, arrived, traffic)
        if len(items) == 1:
            return [await self.batcher.submit(items[0])]
        return await self.batcher.submit_many(items)

    async def prepare(self, items: list[Pending]) -> Batch:
        """The batch's feature lookup: on the event loop for an embedded store (SQLite: a read
        is a fraction of a millisecond of Python, which a thread would only make wait for the
        GIL), in a worker thread for a store over the network (Redis: the loop serves meanwhile)."""
        started = time.perf_counter()
        rows = [it.row for it in items]
        if self.lookup.remote:
            columns, unknown = await asyncio.to_thread(self.lookup.lookup, rows)
        else:
            columns, unknown = self.lookup.lookup(rows)
        self.recorder.stage("features", time.perf_counter() - started)
        return Batch(columns=columns, unknown=unknown, started=started)

    async def call(self, slot: str, columns: Columns) -> SlotScores:
        """``slot``'s scores of the columns, timed."""
        started = time.perf_counter()
        answer = await self.slots[slot].predict(columns)
        self.recorder.stage(f"model_{slot}", time.perf_counter() - started)
        self.recorder.stage(f"compute_{slot}", answer.seconds)
        return answer

    async def finish(self, items: list[Pending], batch: Batch) -> list[dict[str, Any] | BaseException]:
        """Route, answer, log and mirror one batch; a batch the champion cannot answer gets one
        error per item."""
        n = len(items)

        async def call(slot: str, rows: np.ndarray) -> SlotScores:
            return await self.call(slot, batch.columns if len(rows) == n else take(batch.columns, rows))

        challenger_ready = self.slots[CHALLENGER].loaded
        try:
            routed = await self.router.route(n, call, challenger_ready=challenger_ready)
        except Unavailable as exc:
            self.recorder.error(items, exc.kind, CHAMPION)
            return [exc] * n
        except ChampionFailed as exc:
            self.recorder.error(items, "model", CHAMPION)
            log.error("champion failed on %d rows: %s", n, exc.__cause__)
            return [exc] * n
        if len(routed.fallback_rows):
            # A failing or emptied challenger never fails a request: the champion answered.
            self.recorder.fallback(items, routed.fallback_rows, CHALLENGER)
            if routed.challenger_error is not None:
                rows, error = len(routed.fallback_rows), routed.challenger_error
                log.warning("challenger failed on %d rows, served by the champion: %s", rows, error)
        scored = Scored(routed.scores, routed.versions, routed.routes, time.perf_counter())
        logged = self.recorder.log(items, batch, scored)
        if len(routed.champion_rows) and self.router.mirrors(self.slots[CHALLENGER].loaded):
            self._mirror(items, batch, routed.champion_rows)
        try:
            await logged  # on disk before anyone is answered
        except WalUnavailable as exc:
            self.recorder.error(items, "inference_log", "")
            return [Unavailable("inference_log", f"{exc}; the request was not answered")] * n
        return list(self.recorder.answers(items, batch, scored))

    def _mirror(self, items: list[Pending], batch: Batch, rows: np.ndarray) -> None:
        """The champion's ``rows`` scored by the challenger in the background: logged only."""
        columns = take(batch.columns, rows)
        started = self.mirror.mirror(
            lambda: self.call(CHALLENGER, columns),
            lambda answer: self.recorder.shadow(items, batch, rows, answer, time.perf_counter()),
            lambda exc: self.recorder.error(items, SHADOW, SHADOW, len(rows)),
        )
        if not started:
            self.recorder.error(items, "shadow_skipped", SHADOW, len(rows))

    async def smoke(
        self, slot: str, rows: list[dict[str, Any]], request_id: str, arrived: float
    ) -> list[dict[str, Any]]:
        """Score ``rows`` on ``slot`` only, outside the batcher (route ``smoke``): what the
        rollout runs before a challenger sees traffic. Raises ``Unavailable`` or ``SmokeFailed``."""
        items = self.pending(SMOKE, rows, request_id, arrived, SYNTHETIC)
        batch = await self.prepare(items)
        try:
            answer = await self.call(slot, batch.columns)
        except Exception as exc:  # a smoke test reports the model's failure
            self.recorder.error(items, "model", slot)
            raise SmokeFailed("model", f"the {slot} model failed: {type(exc).__name__}: {exc}") from exc
        if answer.version is None or answer.scores is None:
            raise SmokeFailed("no_model", f"the {slot} slot is empty")
        n = len(items)
        routes = np.full(n, SMOKE, dtype=object)
        scored = Scored(answer.scores, [answer.version] * n, routes, time.perf_counter())
        try:
            await self.recorder.log(items, batch, scored)
        except WalUnavailable as exc:
            raise Unavailable("inference_log", str(exc)) from exc
        return self.recorder.answers(items, batch, scored)
