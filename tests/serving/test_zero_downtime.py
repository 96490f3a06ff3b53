"""A concurrent client sees zero failures while models are swapped and the split changes.

Many concurrent clients score continuously (single requests, and every third one a small batch) while
the control API runs what a rollout and a rollback do: load a new challenger while shadow mode
mirrors to it, canary steps 10 % -> 50 % -> 100 %, promotion (the champion slot swaps under full
load), a refused load (nothing changes), another challenger at 50 % with shadow on, roll back,
and the old champion back. Every response must be a 200 from a version that was in a slot.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import aiohttp
import pytest

from tasks.serving.client import ServingError
from tests.serving.conftest import PLACEMENTS

# the session's Ray Serve apps take a minute or more to start; each test runs on both placements
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("client", PLACEMENTS, indirect=True)]

CLIENTS = 24
"""Concurrent connections (one asyncio loop in a thread, so the client itself stays cheap)."""
BATCH_ROWS = 5
MIN_REQUESTS = 2000
"""HTTP requests sent before the test ends (single transactions and batches of ``BATCH_ROWS``)."""


class Player:
    """Clients replaying transactions until stopped, counting every outcome."""

    def __init__(self, url: str, world) -> None:
        self.url = url
        self.bodies = [world.transaction(i % 300) for i in range(600)]
        self.stop = threading.Event()
        self.codes: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.scored = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._play()), daemon=True)

    @property
    def sent(self) -> int:
        return sum(self.codes.values())

    async def _client(self, session: aiohttp.ClientSession, worker: int) -> None:
        i = worker
        while not self.stop.is_set():
            i += CLIENTS
            batch = i % 3 == 0
            if batch:
                path, body = "/score/batch", {"rows": [self.bodies[(i + k) % 600] for k in range(BATCH_ROWS)]}
            else:
                path, body = "/score", self.bodies[i % 600]
            try:
                async with session.post(f"{self.url}{path}", json=body) as resp:
                    status, data = resp.status, await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            self.codes[str(status)] += 1
            if status != 200:
                self.failures.append(f"{status}: {str(data)[:200]}")
                continue
            preds = data["predictions"] if batch else [data]
            self.scored += len(preds)
            self.versions.update(p["model_version"] for p in preds)

    async def _play(self) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
            await asyncio.gather(*(self._client(session, w) for w in range(CLIENTS)))

    def __enter__(self) -> Player:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=90)


def test_swaps_and_split_changes_under_load_lose_no_request(client, serving_app):
    with Player(client.url, serving_app) as player:
        time.sleep(1.0)
        client.set_traffic(shadow=True)
        client.load("challenger", version="3")  # a new challenger while it is mirrored
        for weight in (0.1, 0.5, 1.0):  # canary steps
            client.set_traffic(challenger_weight=weight, shadow=False)
            time.sleep(0.7)
        client.load("champion", version="3")  # promotion: the champion slot swaps under full load
        client.set_traffic(challenger_weight=0.0)
        with pytest.raises(ServingError):
            client.load("champion", version="999")  # refused: nothing changes
        client.load("challenger", version="2")
        client.set_traffic(challenger_weight=0.5, shadow=True)
        time.sleep(0.7)
        client.set_traffic(challenger_weight=0.0, shadow=False)  # roll back
        client.load("champion", version="1")
        deadline = time.monotonic() + 120
        while player.sent < MIN_REQUESTS and time.monotonic() < deadline:
            time.sleep(0.2)

    assert not player.failures, f"{len(player.failures)} failures, first: {player.failures[:3]}"
    assert player.codes["200"] >= MIN_REQUESTS, player.codes
    assert player.scored > MIN_REQUESTS
    assert set(player.versions) <= {"1", "2", "3"} and {"1", "3"} <= set(player.versions), player.versions
