"""A seeded simulator of card transactions that plays the upstream systems of airloop.

It builds a fixed world (customers, merchants) from the configured seed and produces hourly (or
``batch_minutes``) batches that honour the configured schema, so the whole loop can be exercised
without real data: stable traffic, covariate drift, concept drift and deliberately bad batches
that validation must quarantine. ``notify_airflow`` posts the asset event an upstream system would.

Fraud is learnable on purpose: compromised cards produce bursts of high-amount online purchases
within an hour (signal that lives in per-customer time windows), and background fraud is more
likely at night, for amounts far above the customer's usual spend, at risky merchants.

Run as a module: ``python -m tasks.platform.simulate --scenario stable --batches 3``.
"""

from __future__ import annotations

import argparse
import functools
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tasks.common import storage

if TYPE_CHECKING:
    from config import DataSchema, Settings

SCENARIOS: tuple[str, ...] = ("stable", "covariate_drift", "concept_drift")
BAD_KINDS: tuple[str, ...] = (
    "wrong_schema",
    "missing_column",
    "nulls",
    "duplicate_ids",
    "out_of_range",
    "wrong_types",
    "empty",
    "corrupt",
)
FORMATS: tuple[str, ...] = ("parquet", "csv")

# Short codes keep transaction ids unique across scenarios (and bad batches) of one seed.
_SCENARIO_CODES = {"stable": "st", "covariate_drift": "cv", "concept_drift": "cc"}
_BAD_CODES = {kind: f"x{i}" for i, kind in enumerate(BAD_KINDS)}

# Columns whose meaning the generator knows; the schema supplies key, timestamp and label names.
_ROLE_COLUMNS = ("customer_id", "merchant_id", "amount", "merchant_category", "channel", "region")

# Typical spend multiplier and popularity per category; unknown categories get 1.0.
_CATEGORY_AMOUNT = {
    "grocery": 1.0,
    "restaurant": 0.8,
    "fuel": 1.1,
    "travel": 4.0,
    "electronics": 3.0,
    "fashion": 1.6,
    "entertainment": 0.9,
    "health": 1.2,
    "online_services": 0.5,
    "cash_advance": 3.0,
}
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
# Categories a stolen card is used for, and (concept drift) the ones fraud moves to.
_FRAUD_CATEGORIES = {
    "electronics": 0.35,
    "cash_advance": 0.2,
    "online_services": 0.15,
    "travel": 0.15,
    "fashion": 0.15,
}
_DRIFTED_FRAUD_CATEGORIES = {"grocery": 0.6, "fuel": 0.4}

# Channel mixes (by name); missing names fall back to a uniform share.
_CHANNEL_BASE = {"in_store": 0.45, "online": 0.25, "contactless": 0.30}
_CHANNEL_ONLINE_HEAVY = {"in_store": 0.10, "online": 0.75, "contactless": 0.15}
_CHANNEL_BURST_FRAUD = {"in_store": 0.15, "online": 0.75, "contactless": 0.10}
_CHANNEL_BG_FRAUD = {"in_store": 0.30, "online": 0.55, "contactless": 0.15}
_CHANNEL_DRIFTED_FRAUD = {"in_store": 0.20, "online": 0.0, "contactless": 0.80}
# How a category tilts the channel (fuel is rarely bought online, online services always are).
_CATEGORY_CHANNEL_TILT = {
    "fuel": {"online": 0.05},
    "grocery": {"contactless": 1.5, "online": 0.4},
    "online_services": {"online": 8.0, "in_store": 0.1, "contactless": 0.1},
    "travel": {"online": 2.5},
    "cash_advance": {"in_store": 3.0, "online": 0.3},
}

# Legit activity by hour of day (UTC), and how much likelier background fraud is per hour
# (mean 1.0 over a day, so hourly batches average to the configured fraud rate).
_LEGIT_BY_HOUR = np.concatenate(
    [
        [0.3, 0.2, 0.15, 0.15, 0.2, 0.35, 0.6, 0.9, 1.1, 1.2, 1.25, 1.3],  # 00-11 h
        [1.4, 1.3, 1.25, 1.25, 1.3, 1.4, 1.5, 1.45, 1.3, 1.0, 0.7, 0.45],  # 12-23 h
    ]
)
_FRAUD_NIGHT_FACTOR = np.array([2.2] * 6 + [0.6] * 18)

_BURST_SHARE = 0.55  # of fraud rows that come from compromised-card bursts; the rest background
_BURST_SIZE = (4, 10)  # inclusive bounds of transactions per compromised card and hour
_DRIFTED_BURST_SIZE = (2, 5)
_LEGIT_HOME_SHARE = 0.92


def _named_weights(names: Sequence[str], weights: dict[str, float], default: float) -> np.ndarray:
    """Weights aligned to ``names`` (the schema's allowed list), normalised to sum to one."""
    w = np.array([weights.get(n, default) for n in names], dtype=float)
    if w.sum() <= 0:
        w = np.ones(len(names))
    return w / w.sum()


def _choose_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (rows need not be normalised)."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(probs))[:, None]
    return np.minimum((u > cum).sum(axis=1), probs.shape[1] - 1)


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
        cat_w = _named_weights(categories, _CATEGORY_WEIGHT, 1.0)
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
            channel_pref=rng.dirichlet(8.0 * _named_weights(channels, _CHANNEL_BASE, 0.3), n_customers),
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


def schema_dtypes(schema: DataSchema) -> dict[str, str]:
    """The pandas dtype of every schema column, as the simulator writes them."""
    mapping = {
        "string": "object",
        "int": "int64",
        "float": "float64",
        "timestamp": "datetime64[ns, UTC]",
    }
    return {c.name: mapping[c.type] for c in schema.columns}


@dataclass(frozen=True)
class _Knobs:
    """How a scenario bends the world; all neutral for ``stable``."""

    amount_scale: float = 1.0
    online_shift: float = 0.0
    region_tilt: float = 0.0
    drifted_fraud: float = 0.0


def _knobs(scenario: str, strength: float) -> _Knobs:
    if scenario == "stable":
        return _Knobs()
    if scenario == "covariate_drift":
        return _Knobs(
            amount_scale=1.0 + 0.8 * strength,
            online_shift=0.6 * strength,
            region_tilt=strength,
        )
    if scenario == "concept_drift":
        return _Knobs(drifted_fraud=0.9 * strength)
    raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")


@dataclass
class _Part:
    """Rows of one mechanism (legit, burst fraud, ...) as positional arrays."""

    cust: np.ndarray
    cat: np.ndarray
    merch: np.ndarray
    chan: np.ndarray
    region: np.ndarray
    amount: np.ndarray
    seconds: np.ndarray
    fraud: int

    def __len__(self) -> int:
        return len(self.cust)


class _Generator:
    """Draws one batch window; one instance per batch so every draw comes from one stream."""

    def __init__(
        self,
        world: World,
        rng: np.random.Generator,
        knobs: _Knobs,
        window_start: pd.Timestamp,
        minutes: int,
    ) -> None:
        self.w = world
        self.rng = rng
        self.k = knobs
        self.minutes = minutes
        minute_of_day = (window_start.hour * 60 + window_start.minute + np.arange(minutes)) % 1440
        self.hour = minute_of_day // 60
        self.cat_mult = np.array([_CATEGORY_AMOUNT.get(c, 1.0) for c in world.categories])
        tilt = np.ones((len(world.categories), len(world.channels)))
        for ci, cat in enumerate(world.categories):
            for hi, chan in enumerate(world.channels):
                tilt[ci, hi] = _CATEGORY_CHANNEL_TILT.get(cat, {}).get(chan, 1.0)
        self.tilt = tilt
        self.online = _named_weights(world.channels, _CHANNEL_ONLINE_HEAVY, 0.1)

    # -- building blocks ------------------------------------------------------------------
    def seconds(self, n: int, hour_weights: np.ndarray) -> np.ndarray:
        """Offsets (s) into the window, following a density by hour of day."""
        w = hour_weights[self.hour].astype(float)
        minute = self.rng.choice(self.minutes, n, p=w / w.sum())
        return minute.astype(np.int64) * 60 + self.rng.integers(0, 60, n)

    def merchants(self, cat: np.ndarray, risky: bool) -> np.ndarray:
        """A merchant of each row's category; fraudsters favour risky merchants."""
        weight = self.w.merchant_popularity * (self.w.merchant_risk * 30.0 if risky else 1.0)
        out = np.empty(len(cat), dtype=np.int64)
        for c in np.unique(cat):
            mask = cat == c
            pool = self.w.merchants_by_category[c]
            p = weight[pool] / weight[pool].sum()
            out[mask] = self.rng.choice(pool, mask.sum(), p=p)
        return out

    def categories(self, n: int, weights: dict[str, float]) -> np.ndarray:
        p = _named_weights(self.w.categories, weights, 0.0)
        return self.rng.choice(len(p), n, p=p)

    def channels(self, n: int, weights: dict[str, float]) -> np.ndarray:
        p = _named_weights(self.w.channels, weights, 0.1)
        return self.rng.choice(len(p), n, p=p)

    def away(self, cust: np.ndarray, home_share: float) -> np.ndarray:
        """The region of each transaction: home, or another region with 1 - home_share."""
        home = self.w.home_region[cust]
        n_reg = len(self.w.regions)
        other = (home + self.rng.integers(1, max(n_reg, 2), len(cust))) % n_reg
        return np.where(self.rng.random(len(cust)) < home_share, home, other)

    def spend(self, cust: np.ndarray, cat: np.ndarray, log_mean: float, sigma: float) -> np.ndarray:
        base = self.w.typical_amount[cust] * self.cat_mult[cat]
        return base * self.rng.lognormal(log_mean, sigma, len(cust)) * self.k.amount_scale

    # -- mechanisms -----------------------------------------------------------------------
    def legit(self, n: int) -> _Part:
        """Customers at their steady rate, spending around their typical amount."""
        weight = self.w.activity.copy()
        if self.k.region_tilt:
            # Covariate drift: the last region grows, the first shrinks (e.g. a new market).
            n_reg = len(self.w.regions)
            tilt = np.ones(n_reg)
            tilt[-1] += 2.5 * self.k.region_tilt
            tilt[0] -= 0.6 * self.k.region_tilt if n_reg > 1 else 0.0
            weight = weight * tilt[self.w.home_region]
        cust = self.rng.choice(self.w.n_customers, n, p=weight / weight.sum())
        cat = _choose_rows(self.rng, self.w.category_pref[cust])
        pref = self.w.channel_pref[cust]
        if self.k.online_shift:
            pref = (1 - self.k.online_shift) * pref + self.k.online_shift * self.online
        chan = _choose_rows(self.rng, pref * self.tilt[cat])
        return _Part(
            cust=cust,
            cat=cat,
            merch=self.merchants(cat, risky=False),
            chan=chan,
            region=self.away(cust, _LEGIT_HOME_SHARE),
            amount=self.spend(cust, cat, 0.0, 0.45),
            seconds=self.seconds(n, _LEGIT_BY_HOUR),
            fraud=0,
        )

    def bursts(self, n_rows: float, drifted: bool) -> _Part:
        """Compromised cards: several transactions by one card within (at most) an hour."""
        lo, hi = _DRIFTED_BURST_SIZE if drifted else _BURST_SIZE
        n_cards = self.rng.poisson(n_rows / ((lo + hi) / 2)) if n_rows > 0 else 0
        sizes = self.rng.integers(lo, hi + 1, n_cards)
        total = int(sizes.sum())
        card = np.repeat(np.arange(n_cards), sizes)
        cust_of_card = self.rng.integers(0, self.w.n_customers, n_cards)
        cust = cust_of_card[card]
        window_s = self.minutes * 60
        span = np.minimum(self.rng.uniform(5 * 60, 55 * 60, n_cards), window_s - 1)
        begin = self.rng.uniform(0, window_s - span)
        seconds = (begin[card] + self.rng.uniform(0, 1, total) * span[card]).astype(np.int64)
        if drifted:
            # Card testing at the till: small contactless grocery/fuel buys, near home.
            cat = self.categories(total, _DRIFTED_FRAUD_CATEGORIES)
            chan = self.channels(total, _CHANNEL_DRIFTED_FRAUD)
            region = self.w.home_region[cust]
            amount = self.spend(cust, cat, np.log(0.6), 0.35)
            merch = self.merchants(cat, risky=False)
        else:
            cat = self.categories(total, _FRAUD_CATEGORIES)
            chan = self.channels(total, _CHANNEL_BURST_FRAUD)
            region = self.away(cust_of_card, 0.4)[card]  # one place per stolen card
            amount = self.spend(cust, cat, np.log(1.8), 0.5)
            merch = self.merchants(cat, risky=True)
        return _Part(cust, cat, merch, chan, region, amount, seconds, fraud=1)

    def background(self, n_rows: float, drifted: bool) -> _Part:
        """Single fraudulent transactions: at night, far above usual spend, risky merchants."""
        night = _FRAUD_NIGHT_FACTOR if not drifted else np.ones(24)
        expected = n_rows * float(np.mean(night[self.hour]))
        n = self.rng.poisson(expected) if expected > 0 else 0
        cust = self.rng.integers(0, self.w.n_customers, n)
        if drifted:
            cat = self.categories(n, _DRIFTED_FRAUD_CATEGORIES)
            chan = self.channels(n, _CHANNEL_DRIFTED_FRAUD)
            return _Part(
                cust=cust,
                cat=cat,
                merch=self.merchants(cat, risky=False),
                chan=chan,
                region=self.w.home_region[cust],
                amount=self.spend(cust, cat, np.log(0.6), 0.35),
                seconds=self.seconds(n, _LEGIT_BY_HOUR),
                fraud=1,
            )
        own = _choose_rows(self.rng, self.w.category_pref[cust]) if n else np.zeros(0, int)
        cat = np.where(self.rng.random(n) < 0.5, self.categories(n, _FRAUD_CATEGORIES), own)
        return _Part(
            cust=cust,
            cat=cat,
            merch=self.merchants(cat, risky=True),
            chan=self.channels(n, _CHANNEL_BG_FRAUD),
            region=self.away(cust, 0.6),
            amount=self.spend(cust, cat, np.log(4.0), 0.6),
            seconds=self.seconds(n, _LEGIT_BY_HOUR * night),
            fraud=1,
        )


def _window_start(cfg: Settings, index: int, start: Any) -> pd.Timestamp:
    ts = pd.Timestamp(start if start is not None else cfg.simulate.start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts + pd.Timedelta(minutes=cfg.simulate.batch_minutes * index)


def _check_schema(schema: DataSchema) -> None:
    missing = [c for c in _ROLE_COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(f"the simulator needs schema columns {missing} (have {schema.names})")


def _build(
    cfg: Settings,
    knobs: _Knobs,
    *,
    stream: Sequence[int],
    id_prefix: str,
    index: int,
    rows: int | None,
    start: Any,
) -> pd.DataFrame:
    """One batch of ``rows`` transactions, sorted by time, in the schema's column order."""
    schema = cfg.schema_
    _check_schema(schema)
    rows = cfg.simulate.batch_rows if rows is None else int(rows)
    if rows < 0:
        raise ValueError("rows must be >= 0")
    world = world_for(cfg)
    rng = np.random.default_rng([cfg.simulate.seed, *stream, index, rows])
    w0 = _window_start(cfg, index, start)
    gen = _Generator(world, rng, knobs, w0, max(1, cfg.simulate.batch_minutes))

    target = rows * cfg.simulate.fraud_rate
    old, new = 1.0 - knobs.drifted_fraud, knobs.drifted_fraud
    fraud_parts = [
        gen.bursts(target * _BURST_SHARE * old, drifted=False),
        gen.background(target * (1 - _BURST_SHARE) * old, drifted=False),
        gen.bursts(target * _BURST_SHARE * new, drifted=True),
        gen.background(target * (1 - _BURST_SHARE) * new, drifted=True),
    ]
    parts = [gen.legit(0)] + [p for p in fraud_parts if len(p)]  # legit(0): typed empty arrays
    cols = {
        name: np.concatenate([getattr(p, name) for p in parts])
        for name in ("cust", "cat", "merch", "chan", "region", "amount", "seconds")
    }
    fraud = np.concatenate([np.full(len(p), p.fraud, dtype=np.int64) for p in parts])
    # Keep fraud to at most half of a (tiny) batch, then fill up with legit rows.
    keep = rng.permutation(len(fraud))[: rows // 2] if len(fraud) > rows // 2 else None
    if keep is not None:
        cols = {k: v[keep] for k, v in cols.items()}
        fraud = fraud[keep]
    legit = gen.legit(rows - len(fraud))
    for name in cols:
        cols[name] = np.concatenate([getattr(legit, name), cols[name]])
    fraud = np.concatenate([np.zeros(len(legit), dtype=np.int64), fraud])

    perm = rng.permutation(rows)
    order = perm[np.argsort(cols["seconds"][perm], kind="stable")]
    amount_max = schema.column("amount").max
    amount = np.clip(cols["amount"][order], 0.5, amount_max if amount_max else np.inf)
    ts_ns = w0.value + cols["seconds"][order] * 1_000_000_000
    frame = {
        schema.key: [f"{id_prefix}-{index:06d}-{i:07d}" for i in range(rows)],
        "customer_id": world.customer_id[cols["cust"][order]],
        "merchant_id": world.merchant_id[cols["merch"][order]],
        "amount": np.round(amount, 2),
        "merchant_category": np.array(world.categories, dtype=object)[cols["cat"][order]],
        "channel": np.array(world.channels, dtype=object)[cols["chan"][order]],
        "region": np.array(world.regions, dtype=object)[cols["region"][order]],
        schema.timestamp: pd.to_datetime(ts_ns, unit="ns", utc=True),
        schema.label: fraud[order],
    }
    df = pd.DataFrame(frame)[schema.names]
    return df.astype(schema_dtypes(schema))


def generate_batch(
    cfg: Settings,
    scenario: str = "stable",
    index: int = 0,
    rows: int | None = None,
    start: Any = None,
    *,
    drift_strength: float = 1.0,
) -> pd.DataFrame:
    """Batch ``index`` of a scenario: deterministic per (seed, scenario, index, rows, strength).

    The batch covers ``[start + index*batch_minutes, start + (index+1)*batch_minutes)``.
    ``drift_strength`` in [0, 1] scales the drift scenarios (0 behaves like ``stable``).
    """
    strength = float(np.clip(drift_strength, 0.0, 1.0))
    knobs = _knobs(scenario, strength)
    code = _SCENARIO_CODES[scenario]
    if scenario != "stable" and strength != 1.0:
        code += f"p{round(strength * 100):03d}"  # different data, so different ids
    stream = (1, SCENARIOS.index(scenario), round(strength * 1000))
    prefix = f"{code}{cfg.simulate.seed}"
    return _build(cfg, knobs, stream=stream, id_prefix=prefix, index=index, rows=rows, start=start)


# -- bad batches --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BadBatch:
    """A batch with one deliberate defect, and what a validator is expected to report.

    ``frame`` is what gets written (``None`` when the bytes are the defect: empty, corrupt);
    ``column`` is the column the validator should name (``None`` for file-level defects);
    ``good_rows`` marks the rows without the defect where that is meaningful.
    """

    kind: str
    index: int
    fmt: str
    description: str
    column: str | None
    columns: tuple[str, ...] = ()
    frame: pd.DataFrame | None = None
    payload: bytes | None = None
    good_rows: np.ndarray | None = None

    @property
    def default_name(self) -> str:
        return f"bad-{self.kind}-{self.index:06d}.{self.fmt}"

    def to_bytes(self) -> bytes:
        if self.payload is not None:
            return self.payload
        assert self.frame is not None
        return to_bytes(self.frame, self.fmt)


def make_bad_batch(
    cfg: Settings,
    kind: str,
    index: int = 0,
    rows: int | None = None,
    start: Any = None,
) -> BadBatch:
    """A mostly good batch with one small defect of ``kind`` (see ``BAD_KINDS``)."""
    if kind not in BAD_KINDS:
        raise ValueError(f"unknown bad batch kind {kind!r}; choose one of {', '.join(BAD_KINDS)}")
    schema = cfg.schema_
    stream = (2, BAD_KINDS.index(kind))
    prefix = f"{_BAD_CODES[kind]}{cfg.simulate.seed}"
    df = _build(cfg, _Knobs(), stream=stream, id_prefix=prefix, index=index, rows=rows, start=start)
    n = len(df)
    rng = np.random.default_rng([cfg.simulate.seed, *stream, index, n, 99])
    few = max(1, n // 100) if n else 0
    picked = np.sort(rng.choice(n, min(few, n), replace=False)) if n else np.zeros(0, int)
    good = np.ones(n, dtype=bool)
    good[picked] = False

    def bad(
        description: str,
        column: str | None,
        *,
        columns: tuple[str, ...] = (),
        frame: pd.DataFrame | None = None,
        fmt: str = "parquet",
        payload: bytes | None = None,
        good_rows: np.ndarray | None = None,
    ) -> BadBatch:
        cols = columns or ((column,) if column else ())
        return BadBatch(kind, index, fmt, description, column, cols, frame, payload, good_rows)

    if kind == "wrong_schema":
        out = df.rename(columns={"merchant_category": "category"})
        out["promo_code"] = "NONE"
        return bad(
            "merchant_category renamed to category; unexpected column promo_code",
            "merchant_category",
            columns=("merchant_category", "category", "promo_code"),
            frame=out,
        )
    if kind == "missing_column":
        return bad("column amount is missing", "amount", frame=df.drop(columns=["amount"]))
    if kind == "nulls":
        out = df.copy()
        out.loc[picked, "amount"] = np.nan
        return bad(f"{len(picked)} null amounts", "amount", frame=out, good_rows=good)
    if kind == "duplicate_ids":
        # Re-delivered records: a few rows repeated verbatim (same id), batch size unchanged.
        if n < 2:
            raise ValueError("duplicate_ids needs at least 2 rows")
        few = min(few, n // 2)
        src = np.sort(rng.choice(n - few, few, replace=False))
        out = pd.concat([df.iloc[: n - few], df.iloc[src]], ignore_index=True)
        out = out.sort_values(schema.timestamp, kind="stable", ignore_index=True)
        first = ~out[schema.key].duplicated(keep="first").to_numpy()
        return bad(f"{few} repeated {schema.key}", schema.key, frame=out, good_rows=first)
    if kind == "out_of_range":
        out = df.copy()
        amount_max = schema.column("amount").max or 50_000.0
        half = len(picked) // 2
        out.loc[picked[:half], "amount"] = -out.loc[picked[:half], "amount"]
        out.loc[picked[half:], "amount"] = amount_max * 10
        off = picked[-1:]
        out.loc[off, "merchant_category"] = "crypto_exchange"
        return bad(
            f"{len(picked)} amounts below 0 or above {amount_max:g}; a category not allowed",
            "amount",
            columns=("amount", "merchant_category"),
            frame=out,
            good_rows=good,
        )
    if kind == "wrong_types":
        out = df.copy()
        text = out["amount"].map(lambda a: f"{a:.2f}").astype(object)
        junk = np.array(["n/a", "12,50 EUR", "abc", "--"], dtype=object)
        text.iloc[picked] = junk[np.arange(len(picked)) % len(junk)]
        out["amount"] = text
        return bad("non-numeric amounts", "amount", frame=out, fmt="csv", good_rows=good)
    if kind == "empty":
        return bad("zero-byte file", None, payload=b"")
    # corrupt: a truncated Parquet file with garbled bytes and no footer.
    data = bytearray(to_bytes(df, "parquet"))
    cut = bytearray(data[: max(8, len(data) // 2)])
    for pos in rng.integers(4, len(cut), 16):
        cut[pos] ^= 0x5A
    if cut.endswith(b"PAR1"):
        cut = cut[:-1]
    return bad("truncated, garbled Parquet", None, payload=bytes(cut))


# -- writing ------------------------------------------------------------------------------


def to_bytes(df: pd.DataFrame, fmt: str = "parquet") -> bytes:
    """Serialise a batch; CSV timestamps are ISO-8601 with an explicit offset."""
    if fmt == "parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    if fmt == "csv":
        out = df.copy()
        for name in out.columns:
            if pd.api.types.is_datetime64_any_dtype(out[name]):
                out[name] = [t.isoformat() if not pd.isna(t) else "" for t in out[name]]
        return out.to_csv(index=False).encode()
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def batch_name(scenario: str, index: int, fmt: str = "parquet") -> str:
    return f"batch-{scenario}-{index:06d}.{fmt}"


def write_batch(df: pd.DataFrame, landing_uri: str, name: str, fmt: str = "parquet") -> str:
    """Drop a batch into the landing zone (atomically where possible); returns its URI."""
    if not name.endswith(f".{fmt}"):
        name = f"{name}.{fmt}"
    return storage.write_bytes(storage.join(landing_uri, name), to_bytes(df, fmt))


def write_bad_batch(bad: BadBatch, landing_uri: str, name: str | None = None) -> str:
    """Drop a bad batch into the landing zone, as the file its defect calls for."""
    name = name or bad.default_name
    return storage.write_bytes(storage.join(landing_uri, name), bad.to_bytes())


# -- telling Airflow ----------------------------------------------------------------------


class NotifyError(RuntimeError):
    """Airflow did not accept the asset event (the message names the URL and status)."""


def notify_airflow(
    batch_uri: str,
    settings: Settings,
    rows: int | None = None,
    *,
    base_url: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Post the landing asset event for ``batch_uri``, as an upstream system would.

    Token from ``/auth/token``, asset id by exact name, then ``POST /api/v2/assets/events``.
    Returns the created event.
    """
    import requests

    from tasks.platform.airflow_client import AirflowAPIError, AirflowClient

    client = AirflowClient.from_settings(settings, base_url)
    client.timeout = timeout
    extra: dict[str, Any] = {"batch_uri": batch_uri, "source": "simulator"}
    if rows is not None:
        extra["rows"] = int(rows)
    try:
        return client.post_asset_event(settings.assets.landing, extra)
    except AirflowAPIError as exc:
        raise NotifyError(str(exc)) from exc
    except requests.RequestException as exc:
        url = getattr(exc.request, "url", None) or client.base_url
        raise NotifyError(f"{url} unreachable: {exc}") from exc


# -- command line -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tasks.platform.simulate",
        description="Write simulated transaction batches into the landing zone.",
    )
    p.add_argument("--scenario", choices=SCENARIOS, default="stable")
    p.add_argument("--batches", type=int, default=1, help="how many batches to write")
    p.add_argument("--rows", type=int, default=None, help="rows per batch (default: config)")
    p.add_argument("--start-index", type=int, default=0, help="index of the first batch")
    p.add_argument("--format", choices=FORMATS, default="parquet", dest="fmt")
    p.add_argument("--bad", choices=BAD_KINDS, default=None, help="write bad batches of KIND")
    p.add_argument("--drift-strength", type=float, default=1.0, help="0..1, drift scenarios")
    p.add_argument("--notify", action="store_true", help="post an asset event per batch")
    p.add_argument("--landing-uri", default=None, help="default: storage.landing_uri")
    p.add_argument("--profile", default=None, help="config profile (default: AIRLOOP_PROFILE)")
    return p


def main(
    argv: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Write ``--batches`` batches, one progress line each, then a summary line."""
    args = _parser().parse_args(argv)
    if args.batches < 0:
        raise SystemExit("--batches must be >= 0")
    if settings is None:
        from config import load_config

        settings = load_config(args.profile)
    storage.configure(settings.storage.s3_endpoint_url)
    landing = args.landing_uri or settings.storage.landing_uri
    label = settings.schema_.label
    total_rows = total_fraud = 0
    for index in range(args.start_index, args.start_index + args.batches):
        if args.bad:
            bad = make_bad_batch(settings, args.bad, index=index, rows=args.rows)
            uri = write_bad_batch(bad, landing)
            n = 0 if bad.frame is None else len(bad.frame)
            detail = f"defect={args.bad} ({bad.description})"
        else:
            df = generate_batch(settings, args.scenario, index, args.rows, drift_strength=args.drift_strength)
            uri = write_batch(df, landing, batch_name(args.scenario, index, args.fmt), args.fmt)
            n, fraud = len(df), int(df[label].sum())
            total_fraud += fraud
            detail = f"fraud_rate={fraud / max(n, 1):.2%}"
        total_rows += n
        line = f"{storage.basename(uri)}  rows={n}  {detail}"
        if args.notify:
            try:
                event = notify_airflow(uri, settings, rows=n)
            except NotifyError as exc:
                out(line)
                print(f"error: {uri} was written but Airflow was not told: {exc}", file=sys.stderr)
                return 1
            line += f"  event={event.get('id')}"
        out(line)
    what = f"bad:{args.bad}" if args.bad else args.scenario
    rate = f", fraud rate {total_fraud / total_rows:.2%}" if total_rows and not args.bad else ""
    out(f"wrote {args.batches} {what} batch(es), {total_rows} rows{rate} to {landing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
