"""The control state's convergence on one replica, without Ray: a poll that read the desired
state just before an admin call changed it must not undo that change."""

from __future__ import annotations

import asyncio
from typing import Any

from tasks.serving.control_state import Desired, MemoryStore
from tasks.serving.convergence import ReplicaSync
from tasks.serving.router import Router
from tasks.serving.slots import LoadOutcome


class _Slot:
    """A slot that holds a version number (loading takes a moment, as a real one does)."""

    def __init__(self, name: str, version: str | None = None) -> None:
        self.name, self.version = name, version

    async def info(self) -> dict[str, Any]:
        return {"slot": self.name, "loaded": self.version is not None, "version": self.version}

    async def load(self, *, version: str | None = None, **_: Any) -> LoadOutcome:
        await asyncio.sleep(0.01)
        self.version = version
        return LoadOutcome(True, await self.info())

    async def unload(self) -> dict[str, Any]:
        self.version = None
        return await self.info()


class _Counters:
    def record_traffic(self, weight: float, shadow: bool) -> None: ...

    def samples(self) -> list[list[Any]]:
        return []


class _Log:
    def flush(self) -> None: ...


class _Lookup:
    names: list[str] = []


def _sync(store: MemoryStore, slots: dict[str, _Slot]) -> ReplicaSync:
    return ReplicaSync(
        store,
        "r1",
        router=Router(),
        slots=slots,  # type: ignore[arg-type]
        lookup=_Lookup(),  # type: ignore[arg-type]
        writer=_Log(),  # type: ignore[arg-type]
        metrics=_Counters(),  # type: ignore[arg-type]
        poll_s=0.01,
        wait_s=0.1,
    )


def test_a_stale_poll_does_not_undo_a_load_that_was_written_after_it_read():
    async def scenario() -> tuple[str | None, int]:
        store = MemoryStore()
        slots = {"champion": _Slot("champion", "1"), "challenger": _Slot("challenger")}
        sync = _sync(store, slots)
        await sync.change(slots={"challenger": None})  # revision 1: the challenger empty
        stale = store.read()  # the poll loop read revision 1 ...
        async with sync.exclusive():  # ... while an admin call loaded version 7 and wrote it
            await slots["challenger"].load(version="7")
            desired = await sync.write(slots={"challenger": "7"})
        await sync.settle(desired)
        assert stale is not None
        await sync.apply(stale)  # ... and then applied what it had read
        return slots["challenger"].version, sync.revision

    version, revision = asyncio.run(scenario())
    assert version == "7" and revision == 2


def test_a_newer_revision_written_elsewhere_is_applied_by_the_poll():
    async def scenario() -> tuple[str | None, float]:
        store = MemoryStore()
        slots = {"champion": _Slot("champion", "1"), "challenger": _Slot("challenger", "2")}
        sync = _sync(store, slots)
        store.put(Desired(revision=1, challenger_weight=0.25, slots={"challenger": "3"}))
        await sync.step()
        return slots["challenger"].version, sync.router.challenger_weight

    assert asyncio.run(scenario()) == ("3", 0.25)
