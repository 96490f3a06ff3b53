"""What the control API does to the ingress (``admin`` is its HTTP side): the status, the
traffic split and shadow mode, loading a registered version or alias into a slot, emptying the
challenger, flushing the inference log, and the health check.

State (weights, shadow) lives in the single ingress replica; a restarted ingress comes back with
all traffic on the champion and shadow off, which is the safe side of any rollout.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from tasks.common.clock import now_iso
from tasks.serving.inference_log import InferenceLogWriter
from tasks.serving.lookup import FeatureLookup
from tasks.serving.metrics import ServingMetrics
from tasks.serving.router import CHALLENGER, CHAMPION, Router
from tasks.serving.slots import LoadOutcome, ModelSlot

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger("ray.serve")


class Conflict(RuntimeError):
    """A control request that contradicts the ingress's state (a 409): nothing was changed."""


class ServingControl:
    """The ingress's state changes and reports, shared by the admin API and ``/health``."""

    def __init__(
        self,
        settings: Settings,
        *,
        router: Router,
        slots: dict[str, ModelSlot],
        lookup: FeatureLookup,
        writer: InferenceLogWriter,
        metrics: ServingMetrics,
    ) -> None:
        self.cfg = settings.serving
        self.router, self.slots, self.lookup = router, slots, lookup
        self.writer, self.metrics = writer, metrics
        self.started_at = now_iso()
        metrics.record_traffic(0.0, False)

    async def slot_infos(self) -> dict[str, dict[str, Any] | None]:
        """Every slot as it is now (None: unreachable); the slot-version gauges follow."""
        infos = await asyncio.gather(*(slot.info() for slot in self.slots.values()))
        for name, info in zip(self.slots, infos, strict=True):
            self.metrics.record_slot(name, (info or {}).get("version"))
        return dict(zip(self.slots, infos, strict=True))

    async def status(self) -> dict[str, Any]:
        infos = await self.slot_infos()
        return {
            "app": self.cfg.app_name,
            "started_at": self.started_at,
            "challenger_weight": self.router.challenger_weight,
            "shadow": self.router.shadow,
            "threshold": self.cfg.threshold,
            "slots": {s: infos.get(s) or {"slot": s, "loaded": False} for s in self.slots},
            "inference_log": self.writer.stats(),
            "features_ready": self.lookup.ready,
        }

    async def set_traffic(self, challenger_weight: float | None, shadow: bool | None) -> dict[str, Any]:
        """Set the challenger's share of live traffic and/or shadow mode; the new status.
        ``Conflict`` when either would send rows to an empty challenger slot."""
        challenger = (await self.slots[CHALLENGER].info()) or {}
        if ((challenger_weight or 0.0) > 0.0 or bool(shadow)) and not challenger.get("loaded"):
            raise Conflict("the challenger slot is empty: load a model into it first")
        if challenger_weight is not None:
            self.router.challenger_weight = float(challenger_weight)
        if shadow is not None:
            self.router.shadow = shadow
        self.metrics.record_traffic(self.router.challenger_weight, self.router.shadow)
        log.info(
            "traffic: challenger weight %.3f, shadow %s", self.router.challenger_weight, self.router.shadow
        )
        return await self.status()

    async def load(self, slot: str, *, version: str | None, alias: str | None) -> LoadOutcome:
        """Load a registered version or alias into ``slot``, checked against the feature
        service's features (once the store has answered); a refused model changes nothing."""
        outcome = await self.slots[slot].load(version=version, alias=alias, features=self.lookup.names)
        await self.slot_infos()
        return outcome

    async def unload(self, slot: str) -> dict[str, Any]:
        """Empty the challenger slot, its traffic share and shadow mode off first; the new status.
        ``Conflict`` for the champion (load another version into it instead)."""
        if slot == CHAMPION:
            raise Conflict("the champion slot cannot be emptied: load another version instead")
        self.router.challenger_weight, self.router.shadow = 0.0, False
        self.metrics.record_traffic(0.0, False)
        await self.slots[slot].unload()
        return await self.status()

    async def flush(self) -> dict[str, Any]:
        """Write the buffered inference log now."""
        rows = await asyncio.to_thread(self.writer.flush)
        return {"rows_written": rows, **self.writer.stats()}

    async def health(self) -> dict[str, Any]:
        """``status`` ``ok`` when a champion model and the feature store are ready, else
        ``unavailable`` with the ``problems``."""
        infos = await self.slot_infos()
        champion = infos.get(CHAMPION) or {}
        if not self.lookup.ready:
            await asyncio.to_thread(self.lookup.warm)
        problems = []
        if not champion.get("loaded"):
            problems.append("no model in the champion slot")
        if not self.lookup.ready:
            problems.append(f"feature store not ready: {self.lookup.error}")
        return {
            "status": "ok" if not problems else "unavailable",
            "problems": problems,
            "champion": champion.get("version"),
            "challenger": (infos.get(CHALLENGER) or {}).get("version"),
        }

    def metrics_text(self) -> bytes:
        self.metrics.record_log(self.writer.stats())
        return self.metrics.render()
