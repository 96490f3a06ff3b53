"""What the control API does (``admin`` is its HTTP side): the status, the traffic split and
shadow mode, loading a registered version or alias into a slot, emptying the challenger,
flushing the inference log, the health check and the merged metrics.

Every change is a new revision of the application's desired state (``convergence``): applied
here at once, by every other ingress replica within ``serving.control_poll_seconds``, and the
call answers once all of them did. A replica that restarts reads the desired state before it
serves, so it comes back with the current split and versions. A restart still shows in
``/metrics`` (its counters leave the sums), which is what a rollout in progress rolls back on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tasks.common.clock import now_iso
from tasks.serving.control_state import Desired
from tasks.serving.convergence import ControlBusy, ReplicaSync
from tasks.serving.router import CHALLENGER, CHAMPION
from tasks.serving.slots import LoadOutcome

if TYPE_CHECKING:
    from config import Settings
    from tasks.serving.durable_log import DurableInferenceLog
    from tasks.serving.lookup import FeatureLookup
    from tasks.serving.metrics import ServingMetrics
    from tasks.serving.router import Router
    from tasks.serving.slots import ModelSlot

log = logging.getLogger("ray.serve")


class Conflict(RuntimeError):
    """A control request that contradicts the application's state (a 409): nothing was changed."""


class ServingControl:
    """The ingress's state changes and reports, shared by the admin API, ``/health`` and ``/metrics``."""

    def __init__(
        self,
        settings: Settings,
        *,
        router: Router,
        slots: dict[str, ModelSlot],
        lookup: FeatureLookup,
        writer: DurableInferenceLog,
        metrics: ServingMetrics,
        sync: ReplicaSync,
    ) -> None:
        self.cfg = settings.serving
        self.router, self.slots, self.lookup = router, slots, lookup
        self.writer, self.metrics, self.sync = writer, metrics, sync
        self.started_at = now_iso()
        self.stopping = False
        metrics.record_traffic(router.challenger_weight, router.shadow)

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
            "replica": self.sync.replica,
            "started_at": self.started_at,
            "revision": self.sync.revision,
            "challenger_weight": self.router.challenger_weight,
            "shadow": self.router.shadow,
            "threshold": self.cfg.threshold,
            "slots": {s: infos.get(s) or {"slot": s, "loaded": False} for s in self.slots},
            "inference_log": self.writer.stats(),
            "features_ready": self.lookup.ready,
            "replicas": await self.sync.replicas(),
        }

    async def _change(self, **changes: Any) -> None:
        with _as_conflict():
            await self.sync.change(**changes)

    async def _write(self, **changes: Any) -> Desired:
        """The next revision, written and applied here (the caller holds ``sync.exclusive()``)."""
        with _as_conflict():
            return await self.sync.write(**changes)

    async def set_traffic(self, challenger_weight: float | None, shadow: bool | None) -> dict[str, Any]:
        """Set the challenger's share of live traffic and/or shadow mode on every replica; the
        new status. ``Conflict`` when either would send rows to an empty challenger slot."""
        challenger = (await self.slots[CHALLENGER].info()) or {}
        if ((challenger_weight or 0.0) > 0.0 or bool(shadow)) and not challenger.get("loaded"):
            raise Conflict("the challenger slot is empty: load a model into it first")
        changes: dict[str, Any] = {}
        if challenger_weight is not None:
            changes["challenger_weight"] = float(challenger_weight)
        if shadow is not None:
            changes["shadow"] = shadow
        await self._change(**changes)
        log.info(
            "traffic: challenger weight %.3f, shadow %s", self.router.challenger_weight, self.router.shadow
        )
        return await self.status()

    async def load(self, slot: str, *, version: str | None, alias: str | None) -> LoadOutcome:
        """Load a registered version or alias into ``slot`` here, checked against the feature
        service's features (once the store has answered); then every replica holds that version.
        A refused model changes nothing anywhere."""
        async with self.sync.exclusive():
            outcome = await self.slots[slot].load(version=version, alias=alias, features=self.lookup.names)
            desired = await self._write(slots={slot: outcome.slot.get("version")}) if outcome.ok else None
        if desired is not None:
            await self.sync.settle(desired)
        await self.slot_infos()
        return outcome

    async def unload(self, slot: str) -> dict[str, Any]:
        """Empty the challenger slot everywhere, its traffic share and shadow mode off first; the
        new status. ``Conflict`` for the champion (load another version into it instead)."""
        if slot == CHAMPION:
            raise Conflict("the champion slot cannot be emptied: load another version instead")
        self.router.challenger_weight, self.router.shadow = 0.0, False
        await self._change(challenger_weight=0.0, shadow=False, slots={slot: None})
        return await self.status()

    async def flush(self) -> dict[str, Any]:
        """Compact the inference log now, on every replica."""
        before = self.writer.stats()["rows_written"]
        await self._change(flush_next=True)
        stats = self.writer.stats()
        return {**stats, "rows_written_now": stats["rows_written"] - before}

    async def health(self) -> dict[str, Any]:
        """``status`` ``ok`` when a champion model, the feature store and the inference log are
        ready, else ``unavailable`` with the ``problems``."""
        infos = await self.slot_infos()
        champion = infos.get(CHAMPION) or {}
        if not self.lookup.ready:
            await asyncio.to_thread(self.lookup.warm)
        problems = []
        if not champion.get("loaded"):
            problems.append("no model in the champion slot")
        if not self.lookup.ready:
            problems.append(f"feature store not ready: {self.lookup.error}")
        wal = await asyncio.to_thread(self.writer.probe)
        if wal:
            problems.append(wal)
        if self.stopping:
            problems.append("stopping")
        return {
            "status": "ok" if not problems else "unavailable",
            "problems": problems,
            "champion": champion.get("version"),
            "challenger": (infos.get(CHALLENGER) or {}).get("version"),
            "replica": self.sync.replica,
        }

    async def metrics_text(self) -> bytes:
        """This replica's metrics with every other live replica's counters added."""
        self.metrics.record_log(self.writer.stats())
        try:
            others = await self.sync.others_samples()
        except Exception as exc:  # noqa: BLE001 - the store is down: this replica's own numbers
            log.warning("metrics: other replicas unknown: %s", exc)
            others = []
        return self.metrics.render_merged(others)

    async def replicas_text(self) -> bytes:
        """Every live replica's counters, labelled by replica (what Prometheus scrapes)."""
        self.metrics.record_log(self.writer.stats())
        try:
            reports = await self.sync.replicas_samples()
        except Exception as exc:  # noqa: BLE001 - the store is down: this replica's own numbers
            log.warning("metrics: replicas unknown: %s", exc)
            reports = {}
        if self.sync.replica not in reports:  # not reported yet, or the store is down
            reports[self.sync.replica] = self.metrics.samples()
        return self.metrics.render_replicas(reports)


@contextmanager
def _as_conflict() -> Iterator[None]:
    """A desired state that kept changing under a change is a 409 (``Conflict``)."""
    try:
        yield
    except ControlBusy as exc:
        raise Conflict(str(exc)) from exc
