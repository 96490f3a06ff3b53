"""The shadow mirror on its own: bounded, never raising, empty answers dropped (no Ray)."""

from __future__ import annotations

import asyncio

import numpy as np

from tasks.serving.shadow import ShadowMirror
from tasks.serving.shapes import SlotScores


def test_mirrored_calls_beyond_the_bound_are_skipped_and_counted():
    async def scenario() -> tuple[list[bool], list[SlotScores], ShadowMirror]:
        mirror = ShadowMirror(max_in_flight=2)
        release = asyncio.Event()
        scored: list[SlotScores] = []

        async def call() -> SlotScores:
            await release.wait()
            return SlotScores("2", np.array([0.9]))

        started = [mirror.mirror(call, scored.append, lambda exc: None) for _ in range(5)]
        assert mirror.in_flight == 2
        release.set()
        await mirror.drain()
        assert mirror.mirror(call, scored.append, lambda exc: None), "room again once they finished"
        await mirror.drain()
        return started, scored, mirror

    started, scored, mirror = asyncio.run(scenario())
    assert started == [True, True, False, False, False]
    assert mirror.skipped == 3 and mirror.mirrored == 3 and len(scored) == 3 and mirror.in_flight == 0


def test_a_failing_mirror_is_reported_never_raised_and_an_empty_answer_is_dropped():
    async def scenario() -> tuple[list[BaseException], list[SlotScores], ShadowMirror]:
        mirror = ShadowMirror(max_in_flight=4)
        failures: list[BaseException] = []
        scored: list[SlotScores] = []

        async def broken() -> SlotScores:
            raise RuntimeError("challenger down")

        async def empty() -> SlotScores:
            return SlotScores.empty()

        mirror.mirror(broken, scored.append, failures.append)
        mirror.mirror(empty, scored.append, failures.append)
        await mirror.drain()
        return failures, scored, mirror

    failures, scored, mirror = asyncio.run(scenario())
    assert [str(f) for f in failures] == ["challenger down"] and scored == []
    assert mirror.failed == 1 and mirror.mirrored == 0 and mirror.in_flight == 0
