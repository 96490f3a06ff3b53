"""A batch on its way through the ingress, as plain data (no Ray, no HTTP): the requests waiting
for it, their columns once joined with their features, what a model slot answered, and the
scores in batch order with who made them. The parts of the ingress hand these to each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Columns = dict[str, Any]
"""A batch as columns: the request's as lists, the features as float arrays (``take`` subsets)."""


def take(columns: Columns, rows: np.ndarray) -> Columns:
    """The ``rows`` (indices) of every column."""
    return {
        name: values[rows] if isinstance(values, np.ndarray) else [values[i] for i in rows]
        for name, values in columns.items()
    }


@dataclass
class Pending:
    """One transaction waiting for its batch."""

    request_id: str
    row: dict[str, Any]
    arrived: float
    """``time.perf_counter()`` when its HTTP request arrived."""
    endpoint: str
    transaction_id: str | None = None
    traffic: str = "live"
    """``live``, or ``synthetic`` (``X-Airloop-Traffic: synthetic``): logged with the prediction."""


@dataclass
class Batch:
    """A batch after the feature lookup: the request rows joined with their features."""

    columns: Columns
    unknown: list[list[str]]
    """Per row, the entities the online store did not know."""
    started: float


@dataclass(frozen=True)
class SlotScores:
    """What a model slot answered for some rows: the version that scored them and their scores,
    or ``version=None`` when the slot holds no model. ``seconds``: the model's own time."""

    version: str | None
    scores: np.ndarray | None
    seconds: float = 0.0

    @classmethod
    def empty(cls) -> SlotScores:
        return cls(None, None, 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "scores": self.scores, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlotScores:
        return cls(data["version"], data["scores"], float(data.get("seconds") or 0.0))


@dataclass
class Scored:
    """Scores of a batch (or of some of its rows) in batch order, who made each, and when."""

    scores: np.ndarray
    versions: list[str | None]
    routes: np.ndarray
    """Per row: ``champion``, ``challenger``, ``shadow`` or ``smoke`` (an object array)."""
    done: float
