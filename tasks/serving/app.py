"""The Ray Serve application: an ingress deployment that composes the serving parts.

    HTTP ─▶ HAProxy ─▶ Ingress replica (serving.ingress_replicas of them) ─ ingress.IngressParts:
              api (FastAPI: scoring, /health, /metrics) + admin (APIRouter), behind guards
              │ pipeline: MicroBatcher ─▶ FeatureLookup ─▶ Router ─▶ PredictionRecorder ─▶ ShadowMirror
              │ inference log: durable_log (WAL, fsync'd before the answer) ─▶ compaction (Parquet)
              │ control: desired state in the cluster KV store (ray_state), every replica converges
              └ model slots: champion, challenger
                  serving.placement = ingress      LocalSlot x2 in this replica (no Ray hop per batch)
                  serving.placement = deployments  RemoteSlot x2 ─▶ SlotDeployment "champion", "challenger"

The placement is chosen once, in ``build``; the rest of the application does not know it. Each
slot loads what the desired state says it holds (its alias, ``champion`` / ``challenger``, when
nothing was changed yet). The graph is started by ``tasks.serving.process`` (``serve.run``);
``app_builder`` is the import path for Serve config files and the Serve REST API
(``tasks.serving.app:app_builder``).

This module stays light (Ray Serve and the config only): the process that deploys the graph
never loads Feast, MLflow or pandas; each replica imports them when it starts.
"""

from __future__ import annotations

import gc
import uuid
from typing import TYPE_CHECKING, Any

from ray import serve

from config import load_config
from tasks.common.secrets import serving_token

if TYPE_CHECKING:
    from fastapi import FastAPI
    from ray.serve.deployment import Application
    from ray.serve.handle import DeploymentHandle

    from config import Settings
    from tasks.serving.shapes import Columns, SlotScores
    from tasks.serving.slots import LoadOutcome, ModelSlot

CHAMPION, CHALLENGER = "champion", "challenger"


def freeze_startup_objects() -> None:
    """Leave what a replica built at startup (the imports of Feast, MLflow, pandas: hundreds of
    thousands of objects) out of the garbage collector's full passes: one such pass stalled
    every request in flight by ~0.3 s every few thousand requests."""
    gc.collect()
    gc.freeze()


def with_token(settings: Settings) -> Settings:
    """``settings`` with the serving token resolved (``tasks.common.secrets.serving_token``:
    configured, or the local generated one), so every replica checks the same one. The
    production profile raises here without one: serving does not start open."""
    token = serving_token(settings)
    return settings.model_copy(update={"serving": settings.serving.model_copy(update={"admin_token": token})})


class Ingress:
    """One ingress replica: the parts composed (``ingress.compose``), its FastAPI app built from them.

    ``champion`` / ``challenger``: handles of the slot deployments (``deployments`` placement);
    without them the slots live in this replica (``ingress`` placement)."""

    def __init__(
        self,
        settings: Settings,
        champion: DeploymentHandle[Any] | None = None,
        challenger: DeploymentHandle[Any] | None = None,
    ) -> None:
        from tasks.serving import ingress  # noqa: PLC0415 - Feast, MLflow, pandas: in the replica only
        from tasks.serving.ray_state import RayKVStore  # noqa: PLC0415 - as above
        from tasks.serving.slots import RemoteSlot  # noqa: PLC0415 - as above

        store = RayKVStore(settings.serving.app_name)
        desired = store.read()
        if champion is not None and challenger is not None:
            slots: dict[str, ModelSlot] = {
                CHAMPION: RemoteSlot(CHAMPION, champion),
                CHALLENGER: RemoteSlot(CHALLENGER, challenger),
            }
        else:
            slots = ingress.local_slots(settings, desired)
        self.parts = ingress.compose(settings, slots, store, f"ingress-{uuid.uuid4().hex[:8]}", desired)
        self._closed = False
        freeze_startup_objects()

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Called by Serve once the replica is constructed: this replica's app."""
        return self.parts.app()

    async def check_health(self) -> None:
        """Serve's periodic health check: keeps the control loop running (a dead replica is
        restarted by Serve; a read-only inference log is reported by ``/health``, not here)."""
        self.parts.start()

    def __del__(self) -> None:
        # Serve calls this once in-flight requests are done (graceful shutdown): leave the
        # merged metrics and compact the inference log (what is left stays in the WAL).
        parts = getattr(self, "parts", None)
        if parts is not None and not self._closed:
            self._closed = True
            parts.close()


class SlotReplica:
    """``deployments`` placement: one model slot in its own Serve deployment (its own replicas,
    resources, GPU), called by the ingress through ``slots.RemoteSlot``. It starts with what the
    desired state says the slot holds, so a restarted slot process comes back with it."""

    def __init__(self, settings: Settings, slot: str, alias: str | None) -> None:
        from tasks.serving.ray_state import RayKVStore  # noqa: PLC0415 - Ray's KV client, in the replica
        from tasks.serving.slots import LocalSlot  # noqa: PLC0415 - MLflow and the models' stack

        desired = RayKVStore(settings.serving.app_name).read()
        self.slot = LocalSlot(settings, slot)
        if desired is not None and slot in desired.slots:
            self.slot.start(version=desired.slots[slot])
        else:
            self.slot.start(alias=alias)
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
    """The application: the ingress (``serving.ingress_replicas`` of it), and for
    ``deployments`` placement the two slot deployments it is bound to."""
    settings = with_token(settings)
    cfg = settings.serving
    actor = {"num_cpus": cfg.replica_cpus}
    ingress = IngressDeployment.options(
        name="ingress",
        ray_actor_options=actor,
        max_ongoing_requests=cfg.max_ongoing_requests,
        num_replicas=cfg.ingress_replicas,
        graceful_shutdown_timeout_s=max(cfg.drain_seconds + 10.0, 15.0),
    )
    if cfg.placement == "ingress":
        return ingress.bind(settings)
    champion = SlotDeployment.options(name=CHAMPION, ray_actor_options=actor).bind(
        settings, CHAMPION, CHAMPION
    )
    challenger = SlotDeployment.options(name=CHALLENGER, ray_actor_options=actor).bind(
        settings, CHALLENGER, CHALLENGER
    )
    return ingress.bind(settings, champion, challenger)


def app_builder(args: dict[str, Any]) -> Application:
    """Import path for Serve config files and the Serve REST API (``tasks.serving.app:app_builder``):
    the settings of ``args["profile"]`` (default: ``AIRLOOP_PROFILE``) and the environment."""
    return build(load_config(args.get("profile") if args else None))
