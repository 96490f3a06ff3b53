"""One ingress replica's side of the shared control state (``control_state``): write a change as
a new revision, apply revisions (its own and the others'), report back, wait for the others.

    admin call ─▶ ServingControl ─▶ ReplicaSync.change ─▶ store.put(revision n+1)   (compare-and-set)
                                                      ─▶ apply here ─▶ wait: every live replica reports n
    every control_poll_seconds, each replica: store.read ─▶ apply if newer ─▶ slots converge ─▶ report

Applying a revision sets the router's split and shadow mode, loads the version each slot should
hold (a slot that fails keeps its model and is tried again ``RETRY_LOAD_SECONDS`` later) and
compacts the inference log when a new flush was asked for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from tasks.serving.control_state import Desired, ReplicaReport, StateStore, lagging

if TYPE_CHECKING:
    from tasks.serving.durable_log import DurableInferenceLog
    from tasks.serving.lookup import FeatureLookup
    from tasks.serving.metrics import ServingMetrics
    from tasks.serving.router import Router
    from tasks.serving.slots import ModelSlot

log = logging.getLogger("ray.serve")

RETRY_LOAD_SECONDS = 10.0
CAS_TRIES = 20


class ControlBusy(RuntimeError):
    """The desired state kept changing under this replica's write (a 409)."""


class ReplicaSync:
    """Keeps one replica's router, slots and log in line with the desired state."""

    def __init__(
        self,
        store: StateStore,
        replica: str,
        *,
        router: Router,
        slots: dict[str, ModelSlot],
        lookup: FeatureLookup,
        writer: DurableInferenceLog,
        metrics: ServingMetrics,
        poll_s: float,
        wait_s: float,
    ) -> None:
        self.store, self.replica = store, replica
        self.router, self.slots, self.lookup, self.writer, self.metrics = (
            router,
            slots,
            lookup,
            writer,
            metrics,
        )
        self.poll_s, self.wait_s = poll_s, wait_s
        self.revision = 0
        self.flushed = 0
        self.error: str | None = None
        self._desired: Desired | None = None
        self._failed_at: dict[str, float] = {}
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None

    # -- the loop --

    def start(self) -> None:
        """Run the loop on the current event loop (once; again if it died)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def halt(self) -> None:
        """Stop the loop and remove this replica's report (at shutdown: its counters leave the
        merged metrics at once, as a restarted replica's always did)."""
        if self._task is not None:
            self._task.cancel()
        self.store.forget(self.replica)

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store or a slot hiccuped: next poll
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("control sync: %s", self.error)
            await asyncio.sleep(self.poll_s)

    async def step(self) -> None:
        """Read the desired state, apply it if newer, converge the slots, report."""
        desired = await asyncio.to_thread(self.store.read)
        if desired is not None:
            await self.apply(desired)
        await self.report()

    # -- applying --

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def exclusive(self) -> asyncio.Lock:
        """Held while this replica changes its slots or applies a revision: an admin call's
        load and the revision that records it are one step, never split by the poll loop
        (which would see the slot ahead of the stored state and put the old model back)."""
        return self._guard()

    async def apply(self, desired: Desired) -> None:
        """Make this replica match ``desired`` (no-op for what already does)."""
        async with self._guard():
            await self._apply(desired)

    async def _apply(self, desired: Desired) -> None:
        if desired.revision < self.revision:
            return  # read before a newer revision was applied here (the poll raced a change)
        if desired.revision > self.revision:
            self.router.challenger_weight = desired.challenger_weight
            self.router.shadow = desired.shadow
            self.metrics.record_traffic(desired.challenger_weight, desired.shadow)
            self._desired, self.revision = desired, desired.revision
        await self._converge_slots(desired)
        if desired.flush > self.flushed:
            await asyncio.to_thread(self.writer.flush)
            self.flushed = desired.flush

    async def _converge_slots(self, desired: Desired) -> None:
        for name, version in desired.slots.items():
            slot = self.slots.get(name)
            if slot is None:
                continue
            info = await slot.info() or {}
            if info.get("version") == version or (version is None and not info.get("loaded")):
                self._failed_at.pop(name, None)
                continue
            if time.monotonic() - self._failed_at.get(name, -RETRY_LOAD_SECONDS) < RETRY_LOAD_SECONDS:
                continue
            if version is None:
                await slot.unload()
                continue
            outcome = await slot.load(version=version, features=self.lookup.names)
            if outcome.ok:
                self._failed_at.pop(name, None)
                log.info(
                    "control sync: %s slot now version %s (revision %d)", name, version, desired.revision
                )
            else:
                self._failed_at[name] = time.monotonic()
                self.error = (
                    f"{name} slot could not load version {version}: {(outcome.error or {}).get('message')}"
                )
                log.warning("control sync: %s", self.error)

    # -- changing --

    async def current_slots(self) -> dict[str, str | None]:
        infos = await asyncio.gather(*(slot.info() for slot in self.slots.values()))
        return {name: (info or {}).get("version") for name, info in zip(self.slots, infos, strict=True)}

    async def change(self, *, flush_next: bool = False, **changes: Any) -> Desired:
        """Write ``changes`` (``Desired`` fields; ``slots`` merged into the current ones; with
        ``flush_next`` a new flush) as the next revision, apply it here, then wait until every
        live replica applied it."""
        async with self._guard():
            proposed = await self.write(flush_next=flush_next, **changes)
        await self.settle(proposed)
        return proposed

    async def write(self, *, flush_next: bool = False, **changes: Any) -> Desired:
        """The next revision with ``changes``, stored (compare-and-set) and applied here; the
        caller holds ``exclusive()``."""
        slot_changes: dict[str, str | None] = changes.pop("slots", {})
        for _ in range(CAS_TRIES):
            here = await self.current_slots()
            current = await asyncio.to_thread(self.store.read)
            if current is None:
                current = Desired(challenger_weight=self.router.challenger_weight, shadow=self.router.shadow)
            flush = {"flush": current.flush + 1} if flush_next else {}
            proposed = current.next(**changes, **flush, slots={**here, **current.slots, **slot_changes})
            if await asyncio.to_thread(self.store.put, proposed):
                break
        else:
            raise ControlBusy("the control state kept changing under this change; try again")
        await self._apply(proposed)
        return proposed

    async def settle(self, desired: Desired) -> None:
        """Report ``desired`` applied here and wait for the other replicas."""
        await self.report()
        await self.wait(desired)

    async def wait(self, desired: Desired) -> list[str]:
        """Until every live replica reports ``desired`` (at most ``wait_s``); those still behind."""
        deadline = time.monotonic() + self.wait_s
        while True:
            reports = await asyncio.to_thread(self.store.reports)
            behind = [r for r in lagging(reports, desired.revision, desired.flush) if r != self.replica]
            if not behind or time.monotonic() >= deadline:
                if behind:
                    log.warning("control: revision %d not applied by %s yet", desired.revision, behind)
                return behind
            await asyncio.sleep(min(self.poll_s / 2, 0.25))

    # -- reporting --

    async def report(self) -> None:
        report = ReplicaReport(
            replica=self.replica,
            revision=self.revision,
            flushed=self.flushed,
            challenger_weight=self.router.challenger_weight,
            shadow=self.router.shadow,
            slots=await self.current_slots(),
            at=time.time(),
            pid=os.getpid(),
            error=self.error,
            samples=self.metrics.samples(),
        )
        await asyncio.to_thread(self.store.report, report)

    async def replicas(self) -> list[dict[str, Any]]:
        """Every replica's last report (``/admin/status``), this one first."""
        reports = await asyncio.to_thread(self.store.reports)
        now = time.time()
        ordered = sorted(reports.values(), key=lambda r: (r.replica != self.replica, r.replica))
        return [r.summary(now) for r in ordered]

    async def others_samples(self) -> list[list[list[Any]]]:
        """The counters of every other live replica (for the merged ``/metrics``)."""
        reports = await asyncio.to_thread(self.store.reports)
        now = time.time()
        return [r.samples for r in reports.values() if r.replica != self.replica and r.fresh(now)]

    async def replicas_samples(self) -> dict[str, list[list[Any]]]:
        """Every live replica's counters as it last reported them, this one's included (for
        ``/metrics?scope=replicas``: reported values only grow, whichever replica answers)."""
        reports = await asyncio.to_thread(self.store.reports)
        now = time.time()
        return {r.replica: r.samples for r in reports.values() if r.fresh(now)}

    def desired_on_start(self, desired: Desired | None) -> None:
        """What the replica started with (the slots were loaded from it, see ``app``)."""
        if desired is not None:
            self.router.challenger_weight, self.router.shadow = desired.challenger_weight, desired.shadow
            self.metrics.record_traffic(desired.challenger_weight, desired.shadow)
            self._desired, self.revision, self.flushed = desired, desired.revision, desired.flush
