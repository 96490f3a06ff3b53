"""Model slots: the champion and the challenger, each one model at a time, swapped atomically.

One interface (``ModelSlot``), two implementations chosen once by ``serving.placement``:

- ``LocalSlot`` holds the model in this process: in the ingress replica (``ingress``, the
  default: a batch is scored without a Ray hop), or in a slot's own Serve deployment
  (``deployments``: a model that needs its own GPU or replicas; ``app.SlotDeployment`` wraps one);
- ``RemoteSlot`` is the ingress's side of such a deployment: the same calls over a Ray handle.

A swap never interrupts scoring: the slot keeps serving its model until the new one has been
downloaded, verified against its registered SHA-256 and loaded (in a worker thread), then
switches in one assignment; a refused model leaves the slot as it was, with ``last_error`` set.
A model is called on the event loop (a batch is scored in about a millisecond, less than a hop
to a thread and back); a model whose last call took longer than ``serving.inline_model_ms`` is
called from a worker thread instead, so that a slow model cannot stall the ingress.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tasks.common.clock import now_iso
from tasks.serving import models
from tasks.serving.schemas import Unavailable
from tasks.serving.shapes import Columns, SlotScores

if TYPE_CHECKING:
    import numpy as np
    from ray.serve.handle import DeploymentHandle

    from config import Settings

log = logging.getLogger("ray.serve")

GONE = frozenset({"ActorDiedError", "RayActorError", "ActorUnavailableError", "DeploymentUnavailableError"})
"""Ray's errors for a slot replica that died or is not there (named: this module imports no Ray)."""
REMOTE_REFRESH_SECONDS = 10.0
"""How often the ingress re-reads a remote slot's state (a slot replica that restarted reloads
its alias) while it scores."""


@dataclass(frozen=True)
class LoadOutcome:
    """What a load into a slot did: ``ok``, the slot as it is now, and why not (``error``:
    ``kind`` — ``not_found``, ``integrity``, ``contract``, ``load`` — and ``message``)."""

    ok: bool
    slot: dict[str, Any]
    error: dict[str, Any] | None = None


class ModelSlot(Protocol):
    """What the ingress needs of a slot, wherever its model runs."""

    slot: str

    @property
    def loaded(self) -> bool:
        """Whether the slot held a model when last seen (cheap: asks nothing)."""

    async def info(self) -> dict[str, Any] | None:
        """The slot now (``slot``, ``loaded``, ``version``, ``source``, ``sha256``, ``loaded_at``,
        ``last_error``); None when it cannot be reached."""

    async def predict(self, columns: Columns) -> SlotScores: ...

    async def load(
        self, *, version: str | None = None, alias: str | None = None, features: list[str] | None = None
    ) -> LoadOutcome: ...

    async def unload(self) -> dict[str, Any]: ...


def _error(exc: BaseException) -> dict[str, Any]:
    err = exc.as_dict() if isinstance(exc, models.ModelRefused) else {"kind": "load", "message": str(exc)}
    return {**err, "at": now_iso()}


def _timed(model: models.LoadedModel, columns: Columns) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    scores = model.predict(columns)
    return scores, time.perf_counter() - started


class LocalSlot:
    """A slot whose model lives in this process."""

    def __init__(self, settings: Settings, slot: str) -> None:
        self.settings = settings
        self.slot = slot
        self.inline_s = settings.serving.inline_model_ms / 1000.0
        self.model: models.LoadedModel | None = None
        self.last_error: dict[str, Any] | None = None
        self._threaded = True
        """Call the model from a worker thread: a new model until its first call shows it fast."""
        self._lock = asyncio.Lock()
        self._cache = tempfile.mkdtemp(prefix=f"airloop-slot-{slot}-")

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def start(self, alias: str | None = None, version: str | None = None) -> None:
        """Load ``version`` (what the application's desired state says the slot holds), else
        ``alias``, when the slot starts; the slot starts empty if it cannot."""
        if not alias and not version:
            return
        try:
            ref = {"version": version} if version else {"alias": alias}
            self.swap(models.load(self.settings, cache_dir=self._cache, **ref))
        except Exception as exc:  # noqa: BLE001 - an empty slot is a state, not a crash
            self.last_error = _error(exc)
            log.warning("%s slot starts empty: %s", self.slot, exc)

    def describe(self) -> dict[str, Any]:
        model = self.model
        base: dict[str, Any] = {"slot": self.slot, "loaded": model is not None, "last_error": self.last_error}
        if model is not None:
            base.update(model.info())
        return base

    async def info(self) -> dict[str, Any] | None:
        return self.describe()

    async def predict(self, columns: Columns) -> SlotScores:
        """Scores of the rows and the version that made them (``version=None``: slot empty)."""
        model = self.model  # one read: a swap during the call does not mix versions
        if model is None:
            return SlotScores.empty()
        if self._threaded:
            scores, seconds = await asyncio.to_thread(_timed, model, columns)
        else:
            scores, seconds = _timed(model, columns)
        if model is self.model:
            self._threaded = seconds > self.inline_s
        return SlotScores(model.version, scores, seconds)

    async def load(
        self, *, version: str | None = None, alias: str | None = None, features: list[str] | None = None
    ) -> LoadOutcome:
        """Load, verify and swap in a model (in a worker thread); on any failure keep the current one."""
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
                self.last_error = _error(exc)
                log.warning("%s slot refused %s: %s", self.slot, version or alias, exc)
                return LoadOutcome(False, self.describe(), self.last_error)
            self.swap(new)
            return LoadOutcome(True, self.describe())

    async def unload(self) -> dict[str, Any]:
        async with self._lock:
            old, self.model = self.model, None
            if old is not None:
                old.discard()
            return self.describe()

    def swap(self, new: models.LoadedModel) -> None:
        """Put a loaded (verified) model in the slot, in one assignment; the old one's files go."""
        old = self.model
        self._threaded = True
        self.model, self.last_error = new, None
        if old is not None and old.path != new.path:
            old.discard()
        log.info("%s slot: now version %s (%s)", self.slot, new.version, new.source)


class RemoteSlot:
    """A slot in its own Serve deployment, called over a Ray handle (``app.SlotDeployment``)."""

    def __init__(self, slot: str, handle: DeploymentHandle[Any]) -> None:
        self.slot = slot
        self.handle = handle
        self._info: dict[str, Any] | None = None
        self._checked = 0.0
        self._refreshing: asyncio.Task[Any] | None = None

    @property
    def loaded(self) -> bool:
        """As last seen; re-read in the background when older than ``REMOTE_REFRESH_SECONDS``."""
        stale = time.monotonic() - self._checked > REMOTE_REFRESH_SECONDS
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.get_running_loop().create_task(self.info())
        return bool(self._info and self._info.get("loaded"))

    async def info(self) -> dict[str, Any] | None:
        self._checked = time.monotonic()
        try:
            self._info = await self.handle.info.remote()
        except Exception as exc:  # noqa: BLE001 - an unreachable slot shows as unknown
            log.warning("%s slot unreachable: %s", self.slot, exc)
            self._info = None
        return self._info

    async def predict(self, columns: Columns) -> SlotScores:
        """The slot replica's answer; ``Unavailable("model_slot")`` when its process is gone
        (nothing was scored: a 503 the client may retry while Serve restarts it)."""
        try:
            answer: SlotScores = await self.handle.predict.remote(columns)
        except Exception as exc:
            if type(exc).__name__ in GONE:
                raise Unavailable(
                    "model_slot", f"the {self.slot} slot's process is gone ({exc!s:.200})"
                ) from exc
            raise
        return answer

    async def load(
        self, *, version: str | None = None, alias: str | None = None, features: list[str] | None = None
    ) -> LoadOutcome:
        outcome: LoadOutcome = await self.handle.load.remote(version=version, alias=alias, features=features)
        self._info = outcome.slot
        return outcome

    async def unload(self) -> dict[str, Any]:
        info: dict[str, Any] = await self.handle.unload.remote()
        self._info = info
        return info
