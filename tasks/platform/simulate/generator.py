"""How one batch window's transactions are drawn: legit spending, compromised-card bursts and
background fraud, each a mechanism over the world, bent by a scenario's knobs.

Fraud is learnable on purpose: compromised cards produce bursts of high-amount online purchases
within an hour (signal that lives in per-customer time windows), and background fraud is more
likely at night, for amounts far above the customer's usual spend, at risky merchants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.platform.simulate.world import World, named_weights

# Typical spend multiplier per category; unknown categories get 1.0.
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
# Categories a stolen card is used for, and (concept drift) the ones fraud moves to.
_FRAUD_CATEGORIES = {
    "electronics": 0.35,
    "cash_advance": 0.2,
    "online_services": 0.15,
    "travel": 0.15,
    "fashion": 0.15,
}
_DRIFTED_FRAUD_CATEGORIES = {"grocery": 0.6, "fuel": 0.4}

# Channel mixes (by name); missing names fall back to a small share.
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

BURST_SHARE = 0.55  # of fraud rows that come from compromised-card bursts; the rest background
_BURST_SIZE = (4, 10)  # inclusive bounds of transactions per compromised card and hour
_DRIFTED_BURST_SIZE = (2, 5)
_LEGIT_HOME_SHARE = 0.92


def _choose_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (rows need not be normalised)."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(probs))[:, None]
    chosen: np.ndarray = np.minimum((u > cum).sum(axis=1), probs.shape[1] - 1)
    return chosen


@dataclass(frozen=True)
class Knobs:
    """How a scenario bends the world; all neutral for ``stable``."""

    amount_scale: float = 1.0
    online_shift: float = 0.0
    region_tilt: float = 0.0
    drifted_fraud: float = 0.0


@dataclass
class Part:
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


class TransactionGenerator:
    """Draws one batch window; one instance per batch so every draw comes from one stream."""

    def __init__(
        self,
        world: World,
        rng: np.random.Generator,
        knobs: Knobs,
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
        self.online = named_weights(world.channels, _CHANNEL_ONLINE_HEAVY, 0.1)

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
        return self._pick(named_weights(self.w.categories, weights, 0.0), n)

    def channels(self, n: int, weights: dict[str, float]) -> np.ndarray:
        return self._pick(named_weights(self.w.channels, weights, 0.1), n)

    def _pick(self, p: np.ndarray, n: int) -> np.ndarray:
        """``n`` positions drawn with probabilities ``p``."""
        picked: np.ndarray = self.rng.choice(len(p), n, p=p)
        return picked

    def away(self, cust: np.ndarray, home_share: float) -> np.ndarray:
        """The region of each transaction: home, or another region with 1 - home_share."""
        home = self.w.home_region[cust]
        n_reg = len(self.w.regions)
        other = (home + self.rng.integers(1, max(n_reg, 2), len(cust))) % n_reg
        region: np.ndarray = np.where(self.rng.random(len(cust)) < home_share, home, other)
        return region

    def spend(self, cust: np.ndarray, cat: np.ndarray, log_mean: float, sigma: float) -> np.ndarray:
        """Amounts around each customer's typical spend for the category, scaled by the scenario."""
        base = self.w.typical_amount[cust] * self.cat_mult[cat]
        amount: np.ndarray = base * self.rng.lognormal(log_mean, sigma, len(cust)) * self.k.amount_scale
        return amount

    # -- mechanisms -----------------------------------------------------------------------
    def legit(self, n: int) -> Part:
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
        return Part(
            cust=cust,
            cat=cat,
            merch=self.merchants(cat, risky=False),
            chan=chan,
            region=self.away(cust, _LEGIT_HOME_SHARE),
            amount=self.spend(cust, cat, 0.0, 0.45),
            seconds=self.seconds(n, _LEGIT_BY_HOUR),
            fraud=0,
        )

    def bursts(self, n_rows: float, drifted: bool) -> Part:
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
        return Part(cust, cat, merch, chan, region, amount, seconds, fraud=1)

    def background(self, n_rows: float, drifted: bool) -> Part:
        """Single fraudulent transactions: at night, far above usual spend, risky merchants."""
        night = _FRAUD_NIGHT_FACTOR if not drifted else np.ones(24)
        expected = n_rows * float(np.mean(night[self.hour]))
        n = self.rng.poisson(expected) if expected > 0 else 0
        cust = self.rng.integers(0, self.w.n_customers, n)
        if drifted:
            cat = self.categories(n, _DRIFTED_FRAUD_CATEGORIES)
            chan = self.channels(n, _CHANNEL_DRIFTED_FRAUD)
            return Part(
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
        return Part(
            cust=cust,
            cat=cat,
            merch=self.merchants(cat, risky=True),
            chan=self.channels(n, _CHANNEL_BG_FRAUD),
            region=self.away(cust, 0.6),
            amount=self.spend(cust, cat, np.log(4.0), 0.6),
            seconds=self.seconds(n, _LEGIT_BY_HOUR * night),
            fraud=1,
        )
