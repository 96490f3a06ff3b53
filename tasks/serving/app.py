"""The Ray Serve application: an ingress router in front of two model slots.

    HTTP ─▶ Ingress (FastAPI) ─┬─▶ ModelSlot "champion"    (the model live traffic gets)
                               └─▶ ModelSlot "challenger"  (canary share, shadow mirror, smoke tests)

Ingress, per request: validate the transaction against the data contract (422 naming the field),
queue it for the next batch (``batching.MicroBatcher``), and for the batch: one online-store read
per feature view for every row's features (``tasks.features.store.online_columns``; the batch
stays columns of arrays, no DataFrame on the request path), unknown entities scored with
``serving.unknown_entity_defaults`` and flagged, a route drawn per row by the challenger weight,
one call per slot for its rows (up to ``serving.max_batches_in_flight`` batches' calls under
way at once), the challenger's rows falling back to the champion if it fails
(the caller never sees a challenger error), the champion's rows mirrored to the challenger when
shadow mode is on (logged, never returned), every prediction appended to the inference log
(``inference_log``) and counted in the Prometheus metrics (``metrics``).

Control API (``/admin``; what the deploy DAG drives, see ``client.ServingClient``): read status,
set the challenger weight and shadow mode, load a registered version or alias into a slot with
zero downtime (the slot keeps serving its current model until the new one is downloaded,
verified against its registered SHA-256 and loaded; a refused model leaves it as it was), empty
the challenger slot, smoke-test a slot, flush the inference log.

State (weights, shadow) lives in the single ingress replica; a restarted ingress comes back with
all traffic on the champion and shadow off, which is the safe side of any rollout. Each slot is
one replica; it loads its alias (``champion`` / ``challenger``) when it starts.

The graph is wired by ``build`` at the bottom and started by ``tasks.serving.process`` (``serve.run``);
``app_builder`` is the import path for Serve config files and the Serve REST API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from ray import serve

from tasks.common import registry
from tasks.serving import models, schemas
from tasks.serving.batching import MicroBatcher
from tasks.serving.inference_log import TIME, InferenceLogWriter
from tasks.serving.metrics import ServingMetrics

if TYPE_CHECKING:
    import numpy as np
    from ray.serve.deployment import Application
    from ray.serve.handle import DeploymentHandle

    from config import Settings

log = logging.getLogger("ray.serve")

CHAMPION, CHALLENGER = schemas.SLOTS
SHADOW_MAX_IN_FLIGHT = 8
"""Mirrored batches waiting on the challenger at once; beyond it, mirroring skips (and counts)."""
SLOT_REFRESH_SECONDS = 10.0

api = FastAPI(
    title="airloop serving",
    description="Fraud scoring: online features from Feast, champion/challenger routing, shadow "
    "mode, an inference log and Prometheus metrics. Control API under /admin.",
    version="1",
)


class Unavailable(RuntimeError):
    """Scoring cannot happen now (no champion model, feature store down): a 503."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), default=str).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _invalid(details: list[dict[str, Any]]) -> Response:
    fields = schemas.bad_fields(details)
    return _json({"error": f"invalid request: {', '.join(fields)}", "fields": fields, "detail": details}, 422)


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    details = [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]} for e in exc.errors()]
    return _invalid(details)


@dataclass
class Pending:
    """One transaction waiting for its batch."""

    request_id: str
    row: dict[str, Any]
    arrived: float
    endpoint: str
    transaction_id: str | None = None


Columns = dict[str, Any]
"""A batch as columns: the request's as lists, the features as float arrays (``_take`` subsets)."""


def _take(columns: Columns, rows: np.ndarray) -> Columns:
    """The ``rows`` of every column."""
    return {
        name: values[rows] if hasattr(values, "dtype") else [values[i] for i in rows]
        for name, values in columns.items()
    }


@dataclass
class Batch:
    """A batch after the feature lookup: the request rows joined with their features."""

    columns: Columns
    unknown: list[list[str]]
    started: float
    fields: list[str] = field(default_factory=list)


@dataclass
class Scored:
    """Scores of a batch (or of a subset of its rows), who made them, and when."""

    scores: np.ndarray
    versions: list[str | None]
    routes: Any
    done: float


def _counts(items: list[Pending], routes: Any, versions: list[str | None]) -> dict[tuple[str, str, str], int]:
    counts: dict[tuple[str, str, str], int] = {}
    for it, route, version in zip(items, routes, versions, strict=True):
        key = (it.endpoint, str(route), version or "")
        counts[key] = counts.get(key, 0) + 1
    return counts


# --------------------------------------------------------------------------------------------
# Model slots
# --------------------------------------------------------------------------------------------


@serve.deployment(max_ongoing_requests=32, health_check_period_s=10)
class ModelSlot:
    """One model at a time, swapped atomically; loads ``alias`` at start (empty if it cannot)."""

    def __init__(self, settings: Settings, slot: str, alias: str | None) -> None:
        import tempfile

        self.settings = settings
        self.slot = slot
        self.model: models.LoadedModel | None = None
        self.last_error: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self._cache = tempfile.mkdtemp(prefix=f"airloop-slot-{slot}-")
        if alias:
            try:
                self.model = models.load(settings, alias=alias, cache_dir=self._cache)
                log.info("%s slot: loaded %s version %s", slot, self.model.name, self.model.version)
            except Exception as exc:  # noqa: BLE001 - an empty slot is a state, not a crash
                self.last_error = self._error(exc)
                log.warning("%s slot starts empty: %s", slot, exc)

    def _error(self, exc: BaseException) -> dict[str, Any]:
        err = exc.as_dict() if isinstance(exc, models.ModelRefused) else {"kind": "load", "message": str(exc)}
        return {**err, "at": datetime.now(UTC).isoformat()}

    async def predict(self, columns: dict[str, Any]) -> dict[str, Any]:
        """Scores of the rows and the version that made them (``None``: slot empty).

        A coroutine on purpose: it runs on the replica's event loop. A batch is scored in about
        a millisecond, less than a hop to Serve's thread pool and back would cost."""
        model = self.model  # one read: a swap during the call does not mix versions
        if model is None:
            return {"version": None, "scores": None, "seconds": 0.0}
        started = time.perf_counter()
        scores = model.predict(columns)
        return {"version": model.version, "scores": scores, "seconds": time.perf_counter() - started}

    async def load(
        self, version: str | None = None, alias: str | None = None, features: list[str] | None = None
    ) -> dict[str, Any]:
        """Load, verify and swap in a model; on any failure keep the current one."""
        async with self._lock:
            try:
                new = await asyncio.to_thread(
                    models.load,
                    self.settings,
                    version=version,
                    alias=alias,
                    features=features,
                    cache_dir=self._cache,
                )
            except Exception as exc:  # noqa: BLE001 - reported to the caller, model kept
                self.last_error = self._error(exc)
                log.warning("%s slot refused %s: %s", self.slot, version or alias, exc)
                return {"ok": False, "error": self.last_error, "slot": self.info()}
            old, self.model = self.model, new
            self.last_error = None
            if old is not None and old.path != new.path:
                old.discard()
            log.info("%s slot: now version %s (%s)", self.slot, new.version, new.source)
            return {"ok": True, "slot": self.info()}

    async def unload(self) -> dict[str, Any]:
        async with self._lock:
            old, self.model = self.model, None
            if old is not None:
                old.discard()
            return self.info()

    def info(self) -> dict[str, Any]:
        model = self.model
        base: dict[str, Any] = {"slot": self.slot, "loaded": model is not None, "last_error": self.last_error}
        if model is not None:
            base.update(model.info())
        return base


# --------------------------------------------------------------------------------------------
# Ingress
# --------------------------------------------------------------------------------------------


@serve.deployment(health_check_period_s=10, graceful_shutdown_timeout_s=20)
@serve.ingress(api)
class Ingress:
    def __init__(self, settings: Settings, champion: DeploymentHandle, challenger: DeploymentHandle) -> None:
        import numpy as np

        self.settings = settings
        self.cfg = settings.serving
        self.contract = schemas.Contract(settings)
        self.slots = {CHAMPION: champion, CHALLENGER: challenger}
        self.slot_info: dict[str, dict[str, Any] | None] = {CHAMPION: None, CHALLENGER: None}
        self.challenger_weight = 0.0
        self.shadow = False
        self.started_at = datetime.now(UTC).isoformat()
        self.metrics = ServingMetrics()
        self.metrics.challenger_weight.set(0.0)
        self.metrics.shadow.set(0)
        self.writer = InferenceLogWriter(settings, writer_id=f"ingress-{uuid.uuid4().hex[:8]}")
        self.rng = np.random.default_rng()
        self.batcher: MicroBatcher[Pending, dict[str, Any]] = MicroBatcher(
            self._prepare,
            self._finish,
            max_batch_size=self.cfg.max_batch_size,
            wait_s=self.cfg.batch_wait_ms / 1000.0,
            max_in_flight=self.cfg.max_batches_in_flight,
            on_batch=self._on_batch,
        )
        self._shadow_slots = asyncio.Semaphore(SHADOW_MAX_IN_FLIGHT)
        self._background: set[asyncio.Task[Any]] = set()
        self._refreshed = 0.0
        self._features: list[str] | None = None
        self._entity_of: dict[str, str | None] = {}
        self.features_error: str | None = None
        self._warm_features()

    # --- features ---------------------------------------------------------------------------

    def _warm_features(self) -> None:
        """Open the feature store and run one lookup now, so the first request does not pay
        Feast's imports and registry load (seconds). A store that is not ready yet (no features
        applied) is retried on each request until it is."""
        try:
            from tasks.features import store as feature_store
            from tasks.features.tables import TABLES

            names = feature_store.feature_names(self.settings)
            now = datetime.now(UTC)
            probe = {"customer_id": [0], "merchant_id": [0], "amount": [1.0], self.contract.timestamp: [now]}
            feature_store.online_columns(self.settings, probe)
            stored = {f: t.entity for t in TABLES for f in t.features}
            self._entity_of = {f: stored.get(f) for f in names}
            self._features = names
            self.features_error = None
        except Exception as exc:  # noqa: BLE001 - reported by /health and in 503s
            self.features_error = f"{type(exc).__name__}: {exc}"
            log.warning("feature store not ready: %s", self.features_error)

    def _lookup(self, rows: list[dict[str, Any]]) -> tuple[Columns, list[list[str]]]:
        """The batch's request rows joined with their online features; unknown entities per row."""
        import numpy as np

        from tasks.features import store as feature_store
        from tasks.features.tables import TABLES

        if self._features is None:
            self._warm_features()
            if self._features is None:
                raise Unavailable("features", f"online features unavailable: {self.features_error}")
        request = {name: [row[name] for row in rows] for name in rows[0]}
        try:
            feats = feature_store.online_columns(self.settings, request)
        except Exception as exc:
            raise Unavailable(
                "features", f"online feature lookup failed: {type(exc).__name__}: {exc}"
            ) from exc
        found = {t.entity: feats[f"{t.entity}_found"] for t in TABLES}
        any_unknown = ~np.logical_and.reduce(list(found.values()))
        for name, value in self.cfg.unknown_entity_defaults.items():
            if name not in feats:
                continue
            entity = self._entity_of.get(name)
            rows_unknown = ~found[entity] if entity else any_unknown
            feats[name][rows_unknown & np.isnan(feats[name])] = float(value)
        unknown = [[e for e in found if not found[e][i]] for i in range(len(rows))]
        return {**request, **feats}, unknown

    # --- the batch pipeline -----------------------------------------------------------------

    def _on_batch(self, rows: int, queued_s: float) -> None:
        self.metrics.batch_size.observe(rows)
        self.metrics.stage_latency.labels("queue").observe(queued_s)

    async def _prepare(self, items: list[Pending]) -> Batch:
        started = time.perf_counter()
        columns, unknown = await asyncio.to_thread(self._lookup, [it.row for it in items])
        self.metrics.stage_latency.labels("features").observe(time.perf_counter() - started)
        return Batch(columns=columns, unknown=unknown, started=started)

    async def _call_slot(self, slot: str, columns: Columns) -> tuple[str | None, np.ndarray | None]:
        started = time.perf_counter()
        out = await self.slots[slot].predict.remote(columns)
        self.metrics.stage_latency.labels(f"model_{slot}").observe(time.perf_counter() - started)
        self.metrics.stage_latency.labels(f"compute_{slot}").observe(out["seconds"])
        return out["version"], out["scores"]

    def _assign(self, n: int) -> np.ndarray:
        """Per row: True = challenger. Only when the challenger slot holds a model."""
        import numpy as np

        info = self.slot_info.get(CHALLENGER)
        if self.challenger_weight <= 0.0 or not (info and info.get("loaded")):
            return np.zeros(n, dtype=bool)
        return self.rng.random(n) < self.challenger_weight

    async def _finish(self, items: list[Pending], batch: Batch) -> list[dict[str, Any] | BaseException]:
        import numpy as np

        n = len(items)
        to_challenger = self._assign(n)
        scores = np.full(n, np.nan)
        versions: list[str | None] = [None] * n
        routes = np.where(to_challenger, CHALLENGER, CHAMPION).astype(object)
        idx = {CHAMPION: np.flatnonzero(~to_challenger), CHALLENGER: np.flatnonzero(to_challenger)}
        calls = {
            s: self._call_slot(s, batch.columns if len(i) == n else _take(batch.columns, i))
            for s, i in idx.items()
            if len(i)
        }
        outcomes = dict(
            zip(calls, await asyncio.gather(*calls.values(), return_exceptions=True), strict=True)
        )

        challenger = outcomes.get(CHALLENGER)
        if challenger is not None and (isinstance(challenger, BaseException) or challenger[0] is None):
            # A failing or emptied challenger never fails a request: its rows go to the champion.
            for i in idx[CHALLENGER]:
                self.metrics.errors.labels(items[i].endpoint, "fallback", CHALLENGER).inc()
            if isinstance(challenger, BaseException):
                log.warning(
                    "challenger failed on %d rows, served by the champion: %s",
                    len(idx[CHALLENGER]),
                    challenger,
                )
            idx[CHAMPION] = np.arange(n)
            routes[:] = CHAMPION
            outcomes[CHAMPION] = await asyncio.gather(
                self._call_slot(CHAMPION, batch.columns), return_exceptions=True
            )
            outcomes[CHAMPION] = outcomes[CHAMPION][0]
            outcomes.pop(CHALLENGER)

        for slot, out in outcomes.items():
            if isinstance(out, BaseException) or out[0] is None:
                if slot == CHAMPION:
                    return self._champion_failed(items, out)
                continue
            version, slot_scores = out
            for j, i in enumerate(idx[slot]):
                scores[i] = slot_scores[j]
                versions[i] = version

        done = time.perf_counter()
        scored = Scored(scores, versions, routes, done)
        results = self._results(items, batch, scored)
        self._record(items, batch, scored)
        if self.shadow and len(idx[CHAMPION]) and (self.slot_info.get(CHALLENGER) or {}).get("loaded"):
            self._mirror(items, batch, idx[CHAMPION])
        return results

    def _champion_failed(self, items: list[Pending], out: Any) -> list[BaseException]:
        if not isinstance(out, BaseException):
            self.metrics.errors.labels(items[0].endpoint, "no_model", CHAMPION).inc(len(items))
            err: BaseException = Unavailable("no_model", "no model is loaded in the champion slot")
        else:
            self.metrics.errors.labels(items[0].endpoint, "model", CHAMPION).inc(len(items))
            log.error("champion failed on %d rows: %s", len(items), out)
            err = RuntimeError(f"the champion model failed: {type(out).__name__}")
        return [err] * len(items)

    def _results(self, items: list[Pending], batch: Batch, scored: Scored) -> list[dict[str, Any]]:
        """The answers to the callers, counted in the metrics."""
        scores, versions, routes, done = scored.scores, scored.versions, scored.routes, scored.done
        threshold = self.cfg.threshold
        out = []
        m = self.metrics
        for i, it in enumerate(items):
            score, version, route = float(scores[i]), versions[i] or "", routes[i]
            latency = done - it.arrived
            m.prediction_latency.labels(it.endpoint, route, version).observe(latency)
            m.scores.labels(route, version).observe(score)
            out.append(
                {
                    "request_id": it.request_id,
                    "transaction_id": it.transaction_id,
                    "score": score,
                    "decision": "fraud" if score >= threshold else "legit",
                    "threshold": threshold,
                    "model_version": version,
                    "route": route,
                    "unknown_entities": batch.unknown[i],
                    "latency_ms": round(latency * 1000.0, 3),
                }
            )
        for (endpoint, route, version), count in _counts(items, routes, versions).items():
            m.predictions.labels(endpoint, route, version).inc(count)
        for entities in batch.unknown:
            for entity in entities:
                m.unknown_entities.labels(entity).inc()
        return out

    def _record(
        self, items: list[Pending], batch: Batch, scored: Scored, rows: np.ndarray | None = None
    ) -> None:
        """Append the batch's predictions (or those of the ``rows`` subset) to the inference log."""
        import numpy as np
        import pandas as pd

        scores, done = scored.scores, scored.done

        columns = batch.columns if rows is None else _take(batch.columns, rows)
        chosen = items if rows is None else [items[i] for i in rows]
        first = {
            "request_id": [it.request_id for it in chosen],
            TIME: pd.Timestamp.now(tz="UTC"),
            "endpoint": [it.endpoint for it in chosen],
            "route": list(scored.routes),
            "model_version": scored.versions,
            "score": scores,
            "decision": np.where(scores >= self.cfg.threshold, "fraud", "legit"),
            "threshold": self.cfg.threshold,
            "latency_ms": [(done - it.arrived) * 1000.0 for it in chosen],
        }
        self.writer.append(columns, first)

    def _mirror(self, items: list[Pending], batch: Batch, rows: np.ndarray) -> None:
        """Score the champion's rows on the challenger too, in the background: logged, never returned."""
        if self._shadow_slots.locked():
            self.metrics.errors.labels(items[0].endpoint, "shadow_skipped", "shadow").inc(len(rows))
            return

        async def mirror() -> None:
            async with self._shadow_slots:
                try:
                    version, scores = await self._call_slot(CHALLENGER, _take(batch.columns, rows))
                except Exception as exc:  # noqa: BLE001 - shadow failures are counted, never raised
                    self.metrics.errors.labels(items[0].endpoint, "shadow", "shadow").inc(len(rows))
                    log.warning("shadow scoring failed: %s", exc)
                    return
                if version is None:
                    return
                done = time.perf_counter()
                m = self.metrics
                for j, i in enumerate(rows):
                    m.prediction_latency.labels(items[i].endpoint, "shadow", version).observe(
                        done - items[i].arrived
                    )
                    m.scores.labels("shadow", version).observe(float(scores[j]))
                m.predictions.labels(items[0].endpoint, "shadow", version).inc(len(rows))
                shadow = Scored(scores, [version] * len(rows), ["shadow"] * len(rows), done)
                self._record(items, batch, shadow, rows)

        self._spawn(mirror())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- slots --------------------------------------------------------------------------------

    async def _refresh_slots(self, force: bool = False) -> dict[str, dict[str, Any] | None]:
        if force or time.monotonic() - self._refreshed > SLOT_REFRESH_SECONDS:
            self._refreshed = time.monotonic()
            infos = await asyncio.gather(
                *(h.info.remote() for h in self.slots.values()), return_exceptions=True
            )
            for slot, info in zip(self.slots, infos, strict=True):
                self.slot_info[slot] = None if isinstance(info, BaseException) else info
                version = (info or {}).get("version") if not isinstance(info, BaseException) else None
                self.metrics.slot_version.labels(slot).set(float(version) if version else 0.0)
        return self.slot_info

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._refreshed > SLOT_REFRESH_SECONDS:
            self._refreshed = time.monotonic()  # one refresh in flight at a time
            self._spawn(self._refresh_slots(force=True))

    # --- scoring routes -------------------------------------------------------------------------

    async def _score_rows(
        self, endpoint: str, rows: list[dict[str, Any]], request_id: str, arrived: float
    ) -> Any:
        """Submit rows to the batcher; a list of predictions, or an error response."""
        self._maybe_refresh()
        key = self.contract.key
        ids = (
            [request_id]
            if len(rows) == 1 and endpoint == "score"
            else [f"{request_id}-{i}" for i in range(len(rows))]
        )
        pending = [
            Pending(rid, row, arrived, endpoint, row.get(key)) for rid, row in zip(ids, rows, strict=True)
        ]
        try:
            return await asyncio.gather(*(self.batcher.submit(p) for p in pending))
        except Unavailable as exc:
            if exc.kind == "features":
                self.metrics.errors.labels(endpoint, "features", "").inc(len(rows))
            return _json({"error": str(exc), "kind": exc.kind, "request_id": request_id}, 503)
        except Exception as exc:
            self.metrics.errors.labels(endpoint, "internal", "").inc(len(rows))
            log.exception("scoring failed (request %s)", request_id)
            return _json(
                {"error": f"scoring failed: {exc}", "kind": "internal", "request_id": request_id}, 500
            )

    def _done(self, endpoint: str, arrived: float, response: Response) -> Response:
        self.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        self.metrics.request_latency.labels(endpoint).observe(time.perf_counter() - arrived)
        return response

    def _parse(self, endpoint: str, model: Any, body: bytes) -> Any:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            self.metrics.errors.labels(endpoint, "validation", "").inc()
            return _invalid(schemas.error_details(exc))

    @api.post("/score", summary="Score one transaction")
    async def score(self, request: Request) -> Response:
        arrived = time.perf_counter()
        parsed = self._parse("score", self.contract.transaction, await request.body())
        if isinstance(parsed, Response):
            return self._done("score", arrived, parsed)
        request_id = uuid.uuid4().hex
        out = await self._score_rows("score", self.contract.rows([parsed]), request_id, arrived)
        if isinstance(out, Response):
            return self._done("score", arrived, out)
        return self._done("score", arrived, _json(out[0], headers={"X-Request-ID": request_id}))

    @api.post("/score/batch", summary="Score up to serving.max_request_rows transactions")
    async def score_batch(self, request: Request) -> Response:
        arrived = time.perf_counter()
        parsed = self._parse("score_batch", self.contract.batch, await request.body())
        if isinstance(parsed, Response):
            return self._done("score_batch", arrived, parsed)
        request_id = uuid.uuid4().hex
        out = await self._score_rows("score_batch", self.contract.rows(parsed.rows), request_id, arrived)
        if isinstance(out, Response):
            return self._done("score_batch", arrived, out)
        body = {"request_id": request_id, "count": len(out), "predictions": out}
        return self._done("score_batch", arrived, _json(body, headers={"X-Request-ID": request_id}))

    @api.post("/labels", summary="Land delayed labels for logged predictions")
    async def labels(self, request: Request) -> Response:
        from tasks.serving import inference_log

        arrived = time.perf_counter()
        parsed = self._parse("labels", self.contract.labels, await request.body())
        if isinstance(parsed, Response):
            return self._done("labels", arrived, parsed)
        rows = [label.model_dump() for label in parsed.labels]
        try:
            uris = await asyncio.to_thread(inference_log.write_labels, self.settings, rows)
        except Exception as exc:  # noqa: BLE001 - storage down: the caller must retry, nothing half-written
            self.metrics.errors.labels("labels", "storage", "").inc()
            return self._done("labels", arrived, _json({"error": f"labels not stored: {exc}"}, 503))
        return self._done("labels", arrived, _json({"accepted": len(rows), "files": uris}))

    @api.get("/health", summary="200 when a champion model and the feature store are ready")
    async def health(self) -> Response:
        await self._refresh_slots(force=True)
        champion = self.slot_info.get(CHAMPION) or {}
        if self._features is None:
            await asyncio.to_thread(self._warm_features)
        problems = []
        if not champion.get("loaded"):
            problems.append("no model in the champion slot")
        if self._features is None:
            problems.append(f"feature store not ready: {self.features_error}")
        body = {
            "status": "ok" if not problems else "unavailable",
            "problems": problems,
            "champion": champion.get("version"),
            "challenger": (self.slot_info.get(CHALLENGER) or {}).get("version"),
        }
        return _json(body, 200 if not problems else 503)

    @api.get("/metrics", summary="Prometheus metrics")
    async def prometheus(self) -> Response:
        self.metrics.record_log(self.writer.stats())
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    # --- control API ------------------------------------------------------------------------

    def _authorize(self, request: Request) -> Response | None:
        token = self.cfg.admin_token
        if token and request.headers.get("authorization") != f"Bearer {token}":
            return _json({"error": "admin token required (Authorization: Bearer ...)"}, 401)
        return None

    async def _status(self) -> dict[str, Any]:
        await self._refresh_slots(force=True)
        return {
            "app": self.cfg.app_name,
            "started_at": self.started_at,
            "challenger_weight": self.challenger_weight,
            "shadow": self.shadow,
            "threshold": self.cfg.threshold,
            "slots": {s: self.slot_info.get(s) or {"slot": s, "loaded": False} for s in self.slots},
            "inference_log": self.writer.stats(),
            "features_ready": self._features is not None,
        }

    @api.get("/admin/status", summary="Slots, traffic split, shadow mode, inference log")
    async def status(self, request: Request) -> Response:
        return self._authorize(request) or _json(await self._status())

    @api.put("/admin/traffic", summary="Set the challenger's share of traffic and/or shadow mode")
    async def traffic(self, request: Request, update: schemas.TrafficUpdate) -> Response:
        if denied := self._authorize(request):
            return denied
        challenger = (await self._refresh_slots(force=True)).get(CHALLENGER) or {}
        wants_challenger = (update.challenger_weight or 0.0) > 0.0 or bool(update.shadow)
        if wants_challenger and not challenger.get("loaded"):
            return _json({"error": "the challenger slot is empty: load a model into it first"}, 409)
        if update.challenger_weight is not None:
            self.challenger_weight = float(update.challenger_weight)
            self.metrics.challenger_weight.set(self.challenger_weight)
        if update.shadow is not None:
            self.shadow = update.shadow
            self.metrics.shadow.set(1 if update.shadow else 0)
        log.info("traffic: challenger weight %.3f, shadow %s", self.challenger_weight, self.shadow)
        return _json(await self._status())

    @api.post("/admin/slots/{slot}/load", summary="Load a registered version or alias into a slot")
    async def load(self, request: Request, slot: schemas.Slot, ref: schemas.LoadModel) -> Response:
        if denied := self._authorize(request):
            return denied
        features = self._features
        result = await self.slots[slot].load.remote(version=ref.version, alias=ref.alias, features=features)
        await self._refresh_slots(force=True)
        if result["ok"]:
            return _json(result["slot"])
        error = result["error"]
        code = {"not_found": 404, "integrity": 409, "contract": 409}.get(error["kind"], 502)
        kept = result["slot"].get("version")
        body = {
            "error": error["message"],
            "kind": error["kind"],
            "slot": slot,
            "kept_version": kept,
            "detail": f"the {slot} slot keeps {'version ' + kept if kept else 'no model'}",
        }
        return _json(body, code)

    @api.post(
        "/admin/slots/{slot}/unload", summary="Empty the challenger slot (traffic and shadow off first)"
    )
    async def unload(self, request: Request, slot: schemas.Slot) -> Response:
        if denied := self._authorize(request):
            return denied
        if slot == CHAMPION:
            return _json({"error": "the champion slot cannot be emptied: load another version instead"}, 409)
        self.challenger_weight, self.shadow = 0.0, False
        self.metrics.challenger_weight.set(0.0)
        self.metrics.shadow.set(0)
        await self.slots[slot].unload.remote()
        return _json(await self._status())

    @api.post("/admin/slots/{slot}/score", summary="Smoke test: score rows on one slot (route 'smoke')")
    async def smoke(self, request: Request, slot: schemas.Slot) -> Response:
        if denied := self._authorize(request):
            return denied
        arrived = time.perf_counter()
        parsed = self._parse("smoke", self.contract.batch, await request.body())
        if isinstance(parsed, Response):
            return parsed
        request_id = uuid.uuid4().hex
        rows = self.contract.rows(parsed.rows)
        items = [
            Pending(f"{request_id}-{i}", row, arrived, "smoke", row.get(self.contract.key))
            for i, row in enumerate(rows)
        ]
        try:
            batch = await self._prepare(items)
        except Unavailable as exc:
            return _json({"error": str(exc), "kind": exc.kind}, 503)
        try:
            version, scores = await self._call_slot(slot, batch.columns)
        except Exception as exc:  # noqa: BLE001 - a smoke test reports the model's failure
            self.metrics.errors.labels("smoke", "model", slot).inc(len(rows))
            return _json(
                {"error": f"the {slot} model failed: {type(exc).__name__}: {exc}", "kind": "model"}, 502
            )
        if version is None:
            return _json({"error": f"the {slot} slot is empty", "kind": "no_model"}, 409)
        import numpy as np

        routes = np.array(["smoke"] * len(rows), dtype=object)
        done = time.perf_counter()
        versions: list[str | None] = [version] * len(rows)
        scored = Scored(scores, versions, routes, done)
        self._record(items, batch, scored)
        predictions = self._results(items, batch, scored)
        return _json({"request_id": request_id, "slot": slot, "count": len(rows), "predictions": predictions})

    @api.post("/admin/flush", summary="Write the buffered inference log now")
    async def flush(self, request: Request) -> Response:
        if denied := self._authorize(request):
            return denied
        rows = await asyncio.to_thread(self.writer.flush)
        return _json({"rows_written": rows, **self.writer.stats()})

    def __del__(self) -> None:
        # Serve calls this on graceful shutdown: write what is buffered.
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()


# --------------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------------


def build(settings: Settings) -> Application:
    """The application: an ingress bound to the champion and challenger slots."""
    cfg = settings.serving
    actor = {"num_cpus": cfg.replica_cpus}
    champion = ModelSlot.options(name="champion", ray_actor_options=actor).bind(
        settings, CHAMPION, registry.CHAMPION
    )
    challenger = ModelSlot.options(name="challenger", ray_actor_options=actor).bind(
        settings, CHALLENGER, registry.CHALLENGER
    )
    return Ingress.options(
        name="ingress", ray_actor_options=actor, max_ongoing_requests=cfg.max_ongoing_requests
    ).bind(settings, champion, challenger)


def app_builder(args: dict[str, Any]) -> Application:
    """Import path for Serve config files and the Serve REST API (``tasks.serving.app:app_builder``):
    the settings of ``args["profile"]`` (default: ``AIRLOOP_PROFILE``) and the environment."""
    from config import load_config

    return build(load_config(args.get("profile") if args else None))
