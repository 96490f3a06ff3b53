"""The candidates of a run: one per point of each configured family's grid, and how one is fitted.

``plan`` expands ``train.families`` with ``train.xgboost.grid`` and ``train.mlp.grid`` in a fixed
order; ``Candidate.fit`` trains one with its family (``tasks.training.families``) on the run's
train and validation splits (``FitContext``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tasks.training import scaleout
from tasks.training.families import Fitted, mlp, prior, xgb
from tasks.training.families.base import InputSpec, model_input

if TYPE_CHECKING:
    from config import Settings
    from tasks.training.evaluation import Split


DISTRIBUTED = ("xgboost", "mlp")
"""Families that train on ``train.workers`` Ray Train workers when that is more than 1, or on
every rank under torchrun (``tasks.training.scaleout``)."""


@dataclass
class FitContext:
    """Everything a family's ``fit`` needs, the same for every candidate of a run."""

    settings: Settings
    spec: InputSpec
    split: Split
    pos_weight: float
    seed: int
    device: str

    def arrays(self) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
        """Model input and labels of the train and validation splits."""
        label = self.settings.schema_.label
        s = self.split
        return (
            model_input(s.train, self.spec),
            s.train[label].to_numpy(),
            model_input(s.valid, self.spec),
            s.valid[label].to_numpy(),
        )


@dataclass
class Candidate:
    """One model to train: a family and one point of its hyper-parameter grid."""

    name: str
    family: str
    params: dict[str, Any] = field(default_factory=dict)

    def fit(self, ctx: FitContext) -> Fitted:
        data = ctx.arrays()
        common: dict[str, Any] = {"spec": ctx.spec, "params": self.params, "seed": ctx.seed}
        if self.family == "prior":
            return prior.fit(*data, **common, device="cpu")
        if self.family in DISTRIBUTED and scaleout.distributed(ctx.settings):
            return scaleout.fit(self.family, self.params, ctx)
        common |= {"pos_weight": ctx.pos_weight, "device": ctx.device}
        if self.family == "xgboost":
            return xgb.fit(*data, **common, family=ctx.settings.train.xgboost)
        if self.family == "mlp":
            return mlp.fit(*data, **common, family=ctx.settings.train.mlp)
        raise ValueError(f"unknown model family {self.family!r}")


def _grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def _name(family: str, params: dict[str, Any], grid: dict[str, list[Any]]) -> str:
    varying = [k for k, v in grid.items() if len(v) > 1]
    if not varying:
        return family
    return f"{family}(" + ",".join(f"{k}={params[k]}" for k in varying) + ")"


def plan(settings: Settings) -> list[Candidate]:
    """Every candidate of the configured families and grids, in a fixed order."""
    out: list[Candidate] = []
    for family in settings.train.families:
        if family == "prior":
            out.append(Candidate("prior", "prior"))
            continue
        grid = getattr(settings.train, family).grid.model_dump()
        out += [Candidate(_name(family, p, grid), family, p) for p in _grid(grid)]
    return out
