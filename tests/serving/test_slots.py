"""An in-process model slot on its own (no Ray): atomic swaps, and a slow model moved off the
event loop. The models are real ``LoadedModel`` objects with a simple scoring function; loading
from the registry (download, SHA-256, refusals) is covered over HTTP in ``test_control``."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tasks.serving.models import LoadedModel
from tasks.serving.slots import LocalSlot


def model(tmp_path: Path, version: str, score: float, seconds: float = 0.0, threads: list | None = None):
    path = tmp_path / f"v{version}"
    path.mkdir()

    def predict(inputs: dict[str, np.ndarray]) -> np.ndarray:
        if threads is not None:
            threads.append(threading.get_ident())
        time.sleep(seconds)
        return np.full(len(inputs["amount"]), score)

    return LoadedModel(
        name="fraud",
        version=version,
        source=f"version {version}",
        sha256="0" * 64,
        run_id=None,
        feature_service=None,
        columns=["amount"],
        numeric=["amount"],
        path=path,
        predict_fn=predict,
    )


@pytest.fixture
def slot(settings):
    return LocalSlot(settings, "champion")


def test_an_empty_slot_answers_no_version_and_a_swap_takes_effect_at_once(slot, tmp_path):
    assert asyncio.run(slot.predict({"amount": [1.0]})).version is None
    assert not slot.loaded and slot.describe() == {"slot": "champion", "loaded": False, "last_error": None}
    first = model(tmp_path, "1", 0.1)
    slot.swap(first)
    answer = asyncio.run(slot.predict({"amount": [1.0, 2.0]}))
    assert answer.version == "1" and answer.scores.tolist() == [0.1, 0.1] and answer.seconds >= 0
    slot.swap(model(tmp_path, "2", 0.2))
    assert asyncio.run(slot.predict({"amount": [1.0]})).version == "2"
    assert not first.path.exists(), "the replaced model's files are removed"
    info = slot.describe()
    assert info["loaded"] and info["version"] == "2" and info["source"] == "version 2"


def test_a_fast_model_runs_on_the_event_loop_a_slow_one_in_a_thread(settings, tmp_path):
    loop_thread = threading.get_ident()  # asyncio.run runs the loop in this thread
    fast_calls: list[int] = []
    fast = LocalSlot(settings, "champion")
    fast.swap(model(tmp_path, "1", 0.1, threads=fast_calls))
    for _ in range(3):
        asyncio.run(fast.predict({"amount": [1.0]}))
    assert fast_calls[0] != loop_thread, "a new model's first call is in a thread"
    assert fast_calls[1:] == [loop_thread, loop_thread], "then on the loop: it is fast"

    slow_calls: list[int] = []
    slow = LocalSlot(
        settings.model_copy(update={"serving": settings.serving.model_copy(update={"inline_model_ms": 5.0})}),
        "challenger",
    )
    slow.swap(model(tmp_path, "2", 0.9, seconds=0.05, threads=slow_calls))

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        for _ in range(3):
            await slow.predict({"amount": [1.0]})
        task.cancel()
        return ticks

    ticks = asyncio.run(scenario())
    assert loop_thread not in slow_calls, "a slow model never blocks the loop"
    assert ticks >= 10, "the loop kept running while the slow model scored"


def test_unload_empties_the_slot(slot, tmp_path):
    slot.swap(model(tmp_path, "1", 0.1))
    info = asyncio.run(slot.unload())
    assert info["loaded"] is False and asyncio.run(slot.predict({"amount": [1.0]})).version is None
