"""Which model slot scores which row of a batch, what happens when a slot fails, and the scores
back in batch order.

Pure: no Ray, no HTTP, no I/O. The slot calls are passed in (``SlotCall``) and the random draws
come from an injectable generator, so each rule can be tested alone:

- each row goes to the challenger with probability ``challenger_weight``, only while the
  challenger slot holds a model (``assign``);
- a challenger that fails or turns out empty never fails a request: its rows are scored by the
  champion (``fallback_rows``), the error kept for the caller to count;
- an empty champion is a 503 (``Unavailable("no_model")``), so is one whose process is gone
  (``Unavailable("model_slot")``), a failing one a ``ChampionFailed``;
- the scores come back in batch order with, per row, the version and the route that made them
  (``merge``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from tasks.serving.schemas import SLOTS, Unavailable
from tasks.serving.shapes import SlotScores

CHAMPION, CHALLENGER = SLOTS

SlotCall = Callable[[str, np.ndarray], Awaitable[SlotScores]]
"""``call(slot, rows)``: what ``slot`` answers for the batch's ``rows`` (indices, in order)."""

Part = tuple[str, np.ndarray, SlotScores]
"""``(route, rows, answer)``: one slot's scores for some rows of a batch."""


class ChampionFailed(RuntimeError):
    """The champion raised: the batch cannot be answered (a 500; the cause is logged, not sent)."""


@dataclass
class Routed:
    """A batch's scores in batch order, and how they came to be."""

    scores: np.ndarray
    versions: list[str | None]
    routes: np.ndarray
    champion_rows: np.ndarray
    """Rows the champion answered (what shadow mode mirrors to the challenger)."""
    fallback_rows: np.ndarray
    """Rows drawn for the challenger that the champion answered because the challenger failed."""
    challenger_error: BaseException | None = None


def merge(n: int, parts: list[Part]) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    """Scores, versions and routes of ``n`` rows from each part's answer for its rows."""
    scores = np.full(n, np.nan)
    versions: list[str | None] = [None] * n
    routes = np.full(n, CHAMPION, dtype=object)
    for route, rows, answer in parts:
        if answer.scores is None or len(answer.scores) != len(rows):
            got = None if answer.scores is None else len(answer.scores)
            raise ValueError(f"the {route} slot answered {got} scores for {len(rows)} rows")
        scores[rows] = answer.scores
        routes[rows] = route
        for i in rows:
            versions[i] = answer.version
    return scores, versions, routes


def _usable(answer: SlotScores | BaseException) -> bool:
    return not isinstance(answer, BaseException) and answer.version is not None


def _champion_part(rows: np.ndarray, answer: SlotScores | BaseException) -> Part:
    if isinstance(answer, Unavailable):  # its process is gone: nothing scored, a 503
        raise answer
    if isinstance(answer, BaseException):
        raise ChampionFailed(f"the champion model failed: {type(answer).__name__}") from answer
    if answer.version is None:
        raise Unavailable("no_model", "no model is loaded in the champion slot")
    return (CHAMPION, rows, answer)


async def _answer(call: SlotCall, slot: str, rows: np.ndarray) -> SlotScores | BaseException:
    try:
        return await call(slot, rows)
    except Exception as exc:  # noqa: BLE001 - a slot's failure is an answer the rules handle
        return exc


class Router:
    """The traffic split (``challenger_weight``, ``shadow``) and the routing rules above."""

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng if rng is not None else np.random.default_rng()
        self.challenger_weight = 0.0
        self.shadow = False

    def assign(self, n: int, challenger_ready: bool) -> np.ndarray:
        """Per row: True = the challenger scores it."""
        if self.challenger_weight <= 0.0 or not challenger_ready:
            return np.zeros(n, dtype=bool)
        if self.challenger_weight >= 1.0:
            return np.ones(n, dtype=bool)
        return self.rng.random(n) < self.challenger_weight

    def mirrors(self, challenger_ready: bool) -> bool:
        """Whether the champion's rows are mirrored to the challenger now."""
        return self.shadow and challenger_ready

    async def route(self, n: int, call: SlotCall, *, challenger_ready: bool) -> Routed:
        """Score ``n`` rows: draw routes, call each slot once for its rows (at the same time),
        fall back to the champion for a failed challenger's rows, merge."""
        to_challenger = self.assign(n, challenger_ready)
        rows = {CHAMPION: np.flatnonzero(~to_challenger), CHALLENGER: np.flatnonzero(to_challenger)}
        wanted = [slot for slot in SLOTS if len(rows[slot])]
        if len(wanted) == 1:  # most batches: no task to gather
            answers = {wanted[0]: await _answer(call, wanted[0], rows[wanted[0]])}
        else:
            together = await asyncio.gather(*(_answer(call, s, rows[s]) for s in wanted))
            answers = dict(zip(wanted, together, strict=True))
        parts: list[Part] = []
        if CHAMPION in answers:
            parts.append(_champion_part(rows[CHAMPION], answers[CHAMPION]))
        fallback = np.empty(0, dtype=np.intp)
        error: BaseException | None = None
        if CHALLENGER in answers:
            challenger = answers[CHALLENGER]
            if _usable(challenger):
                assert not isinstance(challenger, BaseException)
                parts.append((CHALLENGER, rows[CHALLENGER], challenger))
            else:
                fallback = rows[CHALLENGER]
                error = challenger if isinstance(challenger, BaseException) else None
                parts.append(_champion_part(fallback, await _answer(call, CHAMPION, fallback)))
        scores, versions, routes = merge(n, parts)
        champion = [r for route, r, _ in parts if route == CHAMPION]
        champion_rows = champion[0] if len(champion) == 1 else np.sort(np.concatenate(champion or [fallback]))
        return Routed(scores, versions, routes, champion_rows, fallback, error)
