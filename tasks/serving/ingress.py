"""One ingress replica's parts, composed (no Ray here: ``app`` hands in the slots and the store).

    IngressParts: contract, credentials, lookup, router, slots, inference log (WAL),
                  pipeline (batcher ─▶ lookup ─▶ router ─▶ recorder ─▶ shadow), control, sync

``local_slots`` builds the ``ingress`` placement's in-process slots from what the desired
control state says each slot holds (its alias when nothing was ever changed), so a replica that
restarts serves what the others serve.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI

from tasks.common import registry
from tasks.serving import api, schemas
from tasks.serving.control import ServingControl
from tasks.serving.control_state import Desired, StateStore
from tasks.serving.convergence import ReplicaSync
from tasks.serving.durable_log import DurableInferenceLog
from tasks.serving.guards import Credentials
from tasks.serving.lookup import FeatureLookup
from tasks.serving.metrics import ServingMetrics
from tasks.serving.pipeline import ScoringPipeline
from tasks.serving.recorder import PredictionRecorder
from tasks.serving.router import CHALLENGER, CHAMPION, Router
from tasks.serving.shadow import ShadowMirror
from tasks.serving.slots import LocalSlot, ModelSlot

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger("ray.serve")

SHADOW_MAX_IN_FLIGHT = 8
"""Mirrored batches waiting on the challenger at once; beyond it, mirroring skips (and counts)."""
ALIASES = {CHAMPION: registry.CHAMPION, CHALLENGER: registry.CHALLENGER}
"""The registry alias each slot loads when it starts and the desired state names no version."""


def start_slot(slot: LocalSlot, desired: Desired | None) -> None:
    """Load what ``desired`` says the slot holds (an empty slot stays empty), else its alias."""
    if desired is not None and slot.slot in desired.slots:
        slot.start(version=desired.slots[slot.slot])
    else:
        slot.start(alias=ALIASES[slot.slot])


def local_slots(settings: Settings, desired: Desired | None) -> dict[str, ModelSlot]:
    """``ingress`` placement: both slots in this process."""
    slots: dict[str, ModelSlot] = {}
    for name in ALIASES:
        slot = LocalSlot(settings, name)
        start_slot(slot, desired)
        slots[name] = slot
    return slots


@dataclass
class IngressParts:
    settings: Settings
    contract: schemas.Contract
    credentials: Credentials
    writer: DurableInferenceLog
    pipeline: ScoringPipeline
    control: ServingControl
    sync: ReplicaSync

    def app(self) -> FastAPI:
        return api.create_app(self.settings, self.contract, self.pipeline, self.control, self.credentials)

    def start(self) -> None:
        """Start the control loop on the running event loop (a no-op when one runs already)."""
        self.sync.start()

    def close(self) -> None:
        """Stop reporting (this replica leaves the merged counters), then write what the
        inference log holds; whatever cannot be compacted now stays in the WAL for the next replica."""
        self.control.stopping = True
        try:
            self.sync.halt()
        except Exception as exc:  # noqa: BLE001 - the cluster is going away too
            log.warning("control: could not remove this replica's report: %s", exc)
        self.writer.close()


def compose(
    settings: Settings, slots: dict[str, ModelSlot], store: StateStore, replica: str, desired: Desired | None
) -> IngressParts:
    """The parts of one ingress replica around ``slots``, sharing ``store`` with the others."""
    cfg = settings.serving
    if not cfg.admin_token:
        raise ValueError("serving.admin_token must be resolved before the ingress starts (app.with_token)")
    metrics, router = ServingMetrics(), Router()
    writer = DurableInferenceLog(settings, writer_id=replica)
    lookup = FeatureLookup(settings)
    lookup.warm()
    recorder = PredictionRecorder(cfg.threshold, metrics, writer)
    pipeline = ScoringPipeline(
        settings,
        lookup=lookup,
        router=router,
        slots=slots,
        recorder=recorder,
        mirror=ShadowMirror(SHADOW_MAX_IN_FLIGHT),
    )
    sync = ReplicaSync(
        store,
        replica,
        router=router,
        slots=slots,
        lookup=lookup,
        writer=writer,
        metrics=metrics,
        poll_s=cfg.control_poll_seconds,
        wait_s=cfg.control_wait_seconds,
    )
    sync.desired_on_start(desired)
    control = ServingControl(
        settings, router=router, slots=slots, lookup=lookup, writer=writer, metrics=metrics, sync=sync
    )
    parts = IngressParts(
        settings,
        schemas.Contract(settings),
        Credentials(cfg.admin_token, cfg.scoring_token),
        writer,
        pipeline,
        control,
        sync,
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return parts  # started by the first request or health check
    parts.start()
    return parts
