"""The Ray Serve application: an ingress deployment that composes the serving parts.

    HTTP ─▶ Ingress replica ─ api (FastAPI: scoring, /health, /metrics) + admin (APIRouter)
              │ pipeline: MicroBatcher ─▶ FeatureLookup ─▶ Router ─▶ PredictionRecorder ─▶ ShadowMirror
              └ model slots: champion, challenger
                  serving.placement = ingress      LocalSlot x2 in this replica (no Ray hop per batch)
                  serving.placement = deployments  RemoteSlot x2 ─▶ SlotDeployment "champion", "challenger"

The placement is chosen once, in ``build``; the rest of the application does not know it. Each
slot loads its alias (``champion`` / ``challenger``) when it starts. The graph is started by
``tasks.serving.process`` (``serve.run``); ``app_builder`` is the import path for Serve config
files and the Serve REST API (``tasks.serving.app:app_builder``).
"""

from __future__ import annotations

import gc
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from ray import serve

from config import load_config
from tasks.common import registry
from tasks.serving import api, schemas
from tasks.serving.control import ServingControl
from tasks.serving.inference_log import InferenceLogWriter
from tasks.serving.lookup import FeatureLookup
from tasks.serving.metrics import ServingMetrics
from tasks.serving.pipeline import ScoringPipeline
from tasks.serving.recorder import PredictionRecorder
from tasks.serving.router import CHALLENGER, CHAMPION, Router
from tasks.serving.shadow import ShadowMirror
from tasks.serving.shapes import Columns, SlotScores
from tasks.serving.slots import LoadOutcome, LocalSlot, ModelSlot, RemoteSlot

if TYPE_CHECKING:
    from ray.serve.deployment import Application
    from ray.serve.handle import DeploymentHandle

    from config import Settings

SHADOW_MAX_IN_FLIGHT = 8
"""Mirrored batches waiting on the challenger at once; beyond it, mirroring skips (and counts)."""
ALIASES = {CHAMPION: registry.CHAMPION, CHALLENGER: registry.CHALLENGER}
"""The registry alias each slot loads when it starts."""


def freeze_startup_objects() -> None:
    """Leave what a replica built at startup (the imports of Feast, MLflow, pandas: hundreds of
    thousands of objects) out of the garbage collector's full passes: one such pass stalled
    every request in flight by ~0.3 s every few thousand requests."""
    gc.collect()
    gc.freeze()


def local_slots(settings: Settings) -> dict[str, ModelSlot]:
    """``ingress`` placement: both slots in this process, each loaded with its alias."""
    slots: dict[str, ModelSlot] = {}
    for name, alias in ALIASES.items():
        slot = LocalSlot(settings, name)
        slot.start(alias)
        slots[name] = slot
    return slots


class Ingress:
    """One ingress replica: the parts composed, its FastAPI app built from them per replica.

    ``champion`` / ``challenger``: handles of the slot deployments (``deployments`` placement);
    without them the slots live in this replica (``ingress`` placement)."""

    def __init__(
        self,
        settings: Settings,
        champion: DeploymentHandle[Any] | None = None,
        challenger: DeploymentHandle[Any] | None = None,
    ) -> None:
        self.settings = settings
        self.contract = schemas.Contract(settings)
        if champion is not None and challenger is not None:
            slots: dict[str, ModelSlot] = {
                CHAMPION: RemoteSlot(CHAMPION, champion),
                CHALLENGER: RemoteSlot(CHALLENGER, challenger),
            }
        else:
            slots = local_slots(settings)
        metrics = ServingMetrics()
        self.writer = InferenceLogWriter(settings, writer_id=f"ingress-{uuid.uuid4().hex[:8]}")
        lookup = FeatureLookup(settings)
        lookup.warm()
        router = Router()
        self.pipeline = ScoringPipeline(
            settings,
            lookup=lookup,
            router=router,
            slots=slots,
            recorder=PredictionRecorder(settings.serving.threshold, metrics, self.writer),
            mirror=ShadowMirror(SHADOW_MAX_IN_FLIGHT),
        )
        self.control = ServingControl(
            settings, router=router, slots=slots, lookup=lookup, writer=self.writer, metrics=metrics
        )
        freeze_startup_objects()

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Called by Serve once the replica is constructed: this replica's app."""
        return api.create_app(self.settings, self.contract, self.pipeline, self.control)

    def __del__(self) -> None:
        # Serve calls this on graceful shutdown: write what is buffered.
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()


class SlotReplica:
    """``deployments`` placement: one model slot in its own Serve deployment (its own replicas,
    resources, GPU), called by the ingress through ``slots.RemoteSlot``."""

    def __init__(self, settings: Settings, slot: str, alias: str | None) -> None:
        self.slot = LocalSlot(settings, slot)
        self.slot.start(alias)
        freeze_startup_objects()

    async def predict(self, columns: Columns) -> SlotScores:
        """A coroutine on purpose: it runs on the replica's event loop (see ``slots``)."""
        return await self.slot.predict(columns)

    async def load(
        self, version: str | None = None, alias: str | None = None, features: list[str] | None = None
    ) -> LoadOutcome:
        return await self.slot.load(version=version, alias=alias, features=features)

    async def unload(self) -> dict[str, Any]:
        return await self.slot.unload()

    async def info(self) -> dict[str, Any] | None:
        return self.slot.describe()


IngressDeployment = serve.deployment(health_check_period_s=10, graceful_shutdown_timeout_s=20)(
    serve.ingress()(Ingress)
)
SlotDeployment = serve.deployment(max_ongoing_requests=32, health_check_period_s=10)(SlotReplica)


def build(settings: Settings) -> Application:
    """The application: the ingress, and for ``deployments`` placement the two slot deployments
    it is bound to."""
    cfg = settings.serving
    actor = {"num_cpus": cfg.replica_cpus}
    ingress = IngressDeployment.options(
        name="ingress", ray_actor_options=actor, max_ongoing_requests=cfg.max_ongoing_requests
    )
    if cfg.placement == "ingress":
        return ingress.bind(settings)
    champion = SlotDeployment.options(name=CHAMPION, ray_actor_options=actor).bind(
        settings, CHAMPION, ALIASES[CHAMPION]
    )
    challenger = SlotDeployment.options(name=CHALLENGER, ray_actor_options=actor).bind(
        settings, CHALLENGER, ALIASES[CHALLENGER]
    )
    return ingress.bind(settings, champion, challenger)


def app_builder(args: dict[str, Any]) -> Application:
    """Import path for Serve config files and the Serve REST API (``tasks.serving.app:app_builder``):
    the settings of ``args["profile"]`` (default: ``AIRLOOP_PROFILE``) and the environment."""
    return build(load_config(args.get("profile") if args else None))
