"""The router on its own: routes by weight, fallback, merge. No Ray, no HTTP, no I/O: slot calls
are plain coroutines that answer (or fail) the way a slot would."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest

from config import PROJECT_ROOT
from tasks.serving.router import CHALLENGER, CHAMPION, ChampionFailed, Router, merge
from tasks.serving.schemas import Unavailable
from tasks.serving.shapes import SlotScores

SCORE = {CHAMPION: 0.02, CHALLENGER: 0.9}
VERSION = {CHAMPION: "1", CHALLENGER: "2"}


class Slots:
    """Slot calls that record what they were asked; ``broken``/``empty`` slots fail or hold nothing."""

    def __init__(
        self, broken: set[str] | frozenset[str] = frozenset(), empty: set[str] | frozenset[str] = frozenset()
    ):
        self.broken, self.empty = broken, empty
        self.calls: list[tuple[str, list[int]]] = []

    async def __call__(self, slot: str, rows: np.ndarray) -> SlotScores:
        self.calls.append((slot, rows.tolist()))
        if slot in self.broken:
            raise RuntimeError(f"{slot} is broken")
        if slot in self.empty:
            return SlotScores.empty()
        return SlotScores(VERSION[slot], np.full(len(rows), SCORE[slot]), 0.001)


def route(router: Router, n: int, slots: Slots, ready: bool = True):
    return asyncio.run(router.route(n, slots, challenger_ready=ready))


def test_weight_zero_sends_everything_to_the_champion_in_one_call():
    slots = Slots()
    routed = route(Router(np.random.default_rng(0)), 5, slots)
    assert slots.calls == [(CHAMPION, [0, 1, 2, 3, 4])]
    assert list(routed.routes) == [CHAMPION] * 5 and routed.versions == ["1"] * 5
    assert routed.champion_rows.tolist() == [0, 1, 2, 3, 4] and len(routed.fallback_rows) == 0


@pytest.mark.parametrize("weight", [0.1, 0.5, 0.9])
def test_rows_go_to_the_challenger_at_its_weight(weight):
    router = Router(np.random.default_rng(7))
    router.challenger_weight = weight
    routed = route(router, 20_000, Slots())
    share = float(np.mean(routed.routes == CHALLENGER))
    assert share == pytest.approx(weight, abs=0.015)
    for slot in (CHAMPION, CHALLENGER):  # the route says who answered, and the score proves it
        mine = routed.routes == slot
        assert np.all(routed.scores[mine] == SCORE[slot])
        assert {v for v, m in zip(routed.versions, mine, strict=True) if m} == {VERSION[slot]}
    assert routed.champion_rows.tolist() == np.flatnonzero(routed.routes == CHAMPION).tolist()


def test_the_draw_comes_from_the_injected_generator():
    def draws(seed: int) -> list[str]:
        router = Router(np.random.default_rng(seed))
        router.challenger_weight = 0.5
        return list(route(router, 50, Slots()).routes)

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_full_weight_skips_the_champion_and_a_not_ready_challenger_gets_nothing():
    router = Router(np.random.default_rng(0))
    router.challenger_weight = 1.0
    slots = Slots()
    assert list(route(router, 3, slots).routes) == [CHALLENGER] * 3
    assert slots.calls == [(CHALLENGER, [0, 1, 2])]
    slots = Slots()
    assert list(route(router, 3, slots, ready=False).routes) == [CHAMPION] * 3
    assert slots.calls == [(CHAMPION, [0, 1, 2])]


@pytest.mark.parametrize("failure", ["broken", "empty"])
def test_a_failing_or_empty_challenger_falls_back_to_the_champion(failure):
    router = Router(np.random.default_rng(1))
    router.challenger_weight = 0.5
    slots = Slots(**{failure: {CHALLENGER}})
    routed = route(router, 40, slots)
    assert list(routed.routes) == [CHAMPION] * 40 and set(routed.versions) == {"1"}
    assert np.all(routed.scores == SCORE[CHAMPION])
    drawn = next(rows for slot, rows in slots.calls if slot == CHALLENGER)
    assert 0 < len(drawn) < 40 and routed.fallback_rows.tolist() == drawn
    # the champion was asked again for exactly the challenger's rows, not for the whole batch
    assert [rows for slot, rows in slots.calls if slot == CHAMPION][-1] == drawn
    assert routed.champion_rows.tolist() == list(range(40))
    assert isinstance(routed.challenger_error, RuntimeError) == (failure == "broken")


def test_an_empty_champion_is_unavailable_and_a_failing_one_fails_the_batch():
    with pytest.raises(Unavailable) as err:
        route(Router(), 2, Slots(empty={CHAMPION}))
    assert err.value.kind == "no_model"
    with pytest.raises(ChampionFailed, match="RuntimeError") as failed:
        route(Router(), 2, Slots(broken={CHAMPION}))
    assert "broken" in str(failed.value.__cause__)
    router = Router(np.random.default_rng(2))
    router.challenger_weight = 0.5
    with pytest.raises(ChampionFailed):  # the challenger fails, then its fallback does too
        route(router, 30, Slots(broken={CHAMPION, CHALLENGER}))


def test_merge_puts_each_part_back_in_batch_order():
    scores, versions, routes = merge(
        5,
        [
            (CHALLENGER, np.array([1, 3]), SlotScores("2", np.array([0.9, 0.8]))),
            (CHAMPION, np.array([0, 2, 4]), SlotScores("1", np.array([0.1, 0.2, 0.3]))),
        ],
    )
    assert scores.tolist() == [0.1, 0.9, 0.2, 0.8, 0.3]
    assert versions == ["1", "2", "1", "2", "1"]
    assert list(routes) == [CHAMPION, CHALLENGER, CHAMPION, CHALLENGER, CHAMPION]


def test_merge_refuses_an_answer_of_the_wrong_length():
    with pytest.raises(ValueError, match="1 scores for 2 rows"):
        merge(2, [(CHAMPION, np.array([0, 1]), SlotScores("1", np.array([0.5])))])


def test_shadow_mirrors_only_while_the_challenger_is_ready():
    router = Router()
    assert not router.mirrors(True)
    router.shadow = True
    assert router.mirrors(True) and not router.mirrors(False)


def test_the_router_imports_no_ray_no_http_and_no_io_stack():
    code = (
        "import sys, tasks.serving.router, tasks.serving.shadow, tasks.serving.shapes; "
        "print(sorted(m for m in ('ray', 'fastapi', 'starlette', 'mlflow', 'feast', 'pandas', 'requests') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == "[]"
