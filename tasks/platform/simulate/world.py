"""The simulated world: customers and merchants that stay fixed for a seed, so batches relate.

Each customer has a home region, a typical spend, an activity level and channel and category
preferences; each merchant a category, a popularity and a risk. Everything is drawn from the
configured seed alone, independent of any batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from config import DataSchema, Settings

# How popular each category is (merchants and purchases); unknown categories get 1.0.
_CATEGORY_WEIGHT = {
    "grocery": 3.0,
    "restaurant": 2.0,
    "fuel": 1.5,
    "travel": 0.5,
    "electronics": 0.6,
    "fashion": 1.0,
    "entertainment": 0.8,
    "health": 0.7,
    "online_services": 1.2,
    "cash_advance": 0.2,
}
# Channel preferences of legit customers (by name); missing names fall back to a small share.
_CHANNEL_BASE = {"in_store": 0.45, "online": 0.25, "contactless": 0.30}


def named_weights(names: Sequence[str], weights: dict[str, float], default: float) -> np.ndarray:
    """Weights aligned to ``names`` (the schema's allowed list), normalised to sum to one."""
    w = np.array([weights.get(n, default) for n in names], dtype=float)
    if w.sum() <= 0:
        w = np.ones(len(names))
    normalised: np.ndarray = w / w.sum()
    return normalised


@dataclass(frozen=True, eq=False)
class World:
    """Customers and merchants that stay fixed for a seed, so batches relate to each other.

    Arrays are indexed by position; ``customer_id``/``merchant_id`` hold the ids written out.
    """

    seed: int
    categories: tuple[str, ...]
    channels: tuple[str, ...]
    regions: tuple[str, ...]
    customer_id: np.ndarray
    home_region: np.ndarray
    typical_amount: np.ndarray
    activity: np.ndarray
    channel_pref: np.ndarray
    category_pref: np.ndarray
    merchant_id: np.ndarray
    merchant_category: np.ndarray
    merchant_risk: np.ndarray
    merchant_popularity: np.ndarray
    merchants_by_category: tuple[np.ndarray, ...] = field(repr=False)

    @property
    def n_customers(self) -> int:
        return len(self.customer_id)

    @classmethod
    def build(
        cls,
        seed: int,
        n_customers: int,
        n_merchants: int,
        *,
        categories: Sequence[str],
        channels: Sequence[str],
        regions: Sequence[str],
    ) -> World:
        """Draw the world from ``seed`` alone, independent of any batch."""
        if n_customers < 1 or n_merchants < len(categories):
            raise ValueError("need at least one customer and one merchant per category")
        rng = np.random.default_rng([seed, 0])
        n_cat, n_reg = len(categories), len(regions)
        cat_w = named_weights(categories, _CATEGORY_WEIGHT, 1.0)
        region_w = rng.dirichlet(np.full(n_reg, 20.0))
        activity = rng.lognormal(0.0, 0.35, n_customers)
        # Every category gets at least one merchant; the rest follow category popularity.
        m_cat = np.concatenate([np.arange(n_cat), rng.choice(n_cat, n_merchants - n_cat, p=cat_w)])
        risk = rng.beta(0.6, 10.0, n_merchants)
        return cls(
            seed=seed,
            categories=tuple(categories),
            channels=tuple(channels),
            regions=tuple(regions),
            customer_id=np.arange(1, n_customers + 1, dtype=np.int64),
            home_region=rng.choice(n_reg, n_customers, p=region_w),
            typical_amount=rng.lognormal(np.log(40.0), 0.6, n_customers),
            activity=activity / activity.sum(),
            channel_pref=rng.dirichlet(8.0 * named_weights(channels, _CHANNEL_BASE, 0.3), n_customers),
            category_pref=rng.dirichlet(6.0 * cat_w, n_customers),
            merchant_id=np.arange(1, n_merchants + 1, dtype=np.int64),
            merchant_category=m_cat,
            merchant_risk=risk,
            merchant_popularity=rng.lognormal(0.0, 1.0, n_merchants),
            merchants_by_category=tuple(np.flatnonzero(m_cat == c) for c in range(n_cat)),
        )


@functools.lru_cache(maxsize=8)
def _cached_world(
    seed: int,
    n_customers: int,
    n_merchants: int,
    *,
    categories: tuple[str, ...],
    channels: tuple[str, ...],
    regions: tuple[str, ...],
) -> World:
    return World.build(
        seed, n_customers, n_merchants, categories=categories, channels=channels, regions=regions
    )


def _allowed(schema: DataSchema, name: str) -> tuple[str, ...]:
    allowed = schema.column(name).allowed
    if not allowed:
        raise ValueError(f"schema column {name!r} needs an 'allowed' list for the simulator")
    return tuple(allowed)


def world_for(cfg: Settings) -> World:
    """The (cached) world of this configuration's seed and sizes."""
    sim = cfg.simulate
    return _cached_world(
        sim.seed,
        sim.n_customers,
        sim.n_merchants,
        categories=_allowed(cfg.schema_, "merchant_category"),
        channels=_allowed(cfg.schema_, "channel"),
        regions=_allowed(cfg.schema_, "region"),
    )
