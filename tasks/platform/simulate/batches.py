"""Good batches: one scenario's transactions for one window, in the schema's columns and dtypes.

Batch ``index`` covers ``[start + index*batch_minutes, start + (index+1)*batch_minutes)`` and is
deterministic per (seed, scenario, index, rows, strength); transaction ids carry a short code of
the scenario, so ids stay unique across the scenarios (and bad batches) of one seed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from config import DataSchema, Settings
from tasks.common.clock import utc_timestamp
from tasks.platform.scenarios import FORMATS, SCENARIOS
from tasks.platform.simulate.generator import BURST_SHARE, Knobs, TransactionGenerator
from tasks.platform.simulate.world import world_for

_SCENARIO_CODES = {"stable": "st", "covariate_drift": "cv", "concept_drift": "cc", "ramp": "rp"}

# Columns whose meaning the generator knows; the schema supplies key, timestamp and label names.
_ROLE_COLUMNS = ("customer_id", "merchant_id", "amount", "merchant_category", "channel", "region")
_DRAWN = ("cust", "cat", "merch", "chan", "region", "amount", "seconds")


def schema_dtypes(schema: DataSchema) -> dict[str, str]:
    """The pandas dtype of every schema column, as the simulator writes them."""
    mapping = {
        "string": "object",
        "int": "int64",
        "float": "float64",
        "timestamp": "datetime64[ns, UTC]",
    }
    return {c.name: mapping[c.type] for c in schema.columns}


def knobs_for(scenario: str, strength: float) -> Knobs:
    """How ``scenario`` bends the world at ``strength`` in [0, 1]."""
    if scenario == "stable":
        return Knobs()
    if scenario in ("covariate_drift", "ramp"):
        return Knobs(
            amount_scale=1.0 + 0.8 * strength,
            online_shift=0.6 * strength,
            region_tilt=strength,
        )
    if scenario == "concept_drift":
        return Knobs(drifted_fraud=0.9 * strength)
    raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")


def _window_start(cfg: Settings, index: int, start: Any, at: Any = None) -> pd.Timestamp:
    if at is not None:
        return utc_timestamp(at)
    ts = utc_timestamp(start if start is not None else cfg.simulate.start)
    return ts + pd.Timedelta(minutes=cfg.simulate.batch_minutes * index)


def _check_schema(schema: DataSchema) -> None:
    missing = [c for c in _ROLE_COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(f"the simulator needs schema columns {missing} (have {schema.names})")


def _draw(
    gen: TransactionGenerator, rows: int, fraud_rows: float, knobs: Knobs
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fraud from each mechanism (at most half of a tiny batch), then legit rows up to ``rows``."""
    old, new = 1.0 - knobs.drifted_fraud, knobs.drifted_fraud
    fraud_parts = [
        gen.bursts(fraud_rows * BURST_SHARE * old, drifted=False),
        gen.background(fraud_rows * (1 - BURST_SHARE) * old, drifted=False),
        gen.bursts(fraud_rows * BURST_SHARE * new, drifted=True),
        gen.background(fraud_rows * (1 - BURST_SHARE) * new, drifted=True),
    ]
    parts = [gen.legit(0)] + [p for p in fraud_parts if len(p)]  # legit(0): typed empty arrays
    cols = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _DRAWN}
    fraud = np.concatenate([np.full(len(p), p.fraud, dtype=np.int64) for p in parts])
    keep = gen.rng.permutation(len(fraud))[: rows // 2] if len(fraud) > rows // 2 else None
    if keep is not None:
        cols = {k: v[keep] for k, v in cols.items()}
        fraud = fraud[keep]
    legit = gen.legit(rows - len(fraud))
    for name in cols:
        cols[name] = np.concatenate([getattr(legit, name), cols[name]])
    fraud = np.concatenate([np.zeros(len(legit), dtype=np.int64), fraud])
    return cols, fraud


def _frame(
    cfg: Settings,
    gen: TransactionGenerator,
    cols: dict[str, np.ndarray],
    fraud: np.ndarray,
    *,
    window_start: pd.Timestamp,
    id_prefix: str,
    index: int,
) -> pd.DataFrame:
    """The drawn rows in time order, named and typed as the schema says."""
    schema, world = cfg.schema_, gen.w
    perm = gen.rng.permutation(len(fraud))
    order = perm[np.argsort(cols["seconds"][perm], kind="stable")]
    amount_max = schema.column("amount").max
    amount = np.clip(cols["amount"][order], 0.5, amount_max if amount_max else np.inf)
    ts_ns = window_start.value + cols["seconds"][order] * 1_000_000_000
    frame = {
        schema.key: [f"{id_prefix}-{index:06d}-{i:07d}" for i in range(len(fraud))],
        "customer_id": world.customer_id[cols["cust"][order]],
        "merchant_id": world.merchant_id[cols["merch"][order]],
        "amount": np.round(amount, 2),
        "merchant_category": np.array(world.categories, dtype=object)[cols["cat"][order]],
        "channel": np.array(world.channels, dtype=object)[cols["chan"][order]],
        "region": np.array(world.regions, dtype=object)[cols["region"][order]],
        schema.timestamp: pd.to_datetime(ts_ns, unit="ns", utc=True),
        schema.label: fraud[order],
    }
    return pd.DataFrame(frame)[schema.names].astype(schema_dtypes(schema))


def build_batch(
    cfg: Settings,
    knobs: Knobs,
    *,
    stream: Sequence[int],
    id_prefix: str,
    index: int,
    rows: int | None,
    start: Any,
    at: Any = None,
) -> pd.DataFrame:
    """One batch of ``rows`` transactions drawn from random ``stream``, sorted by time; its window
    begins at ``at`` when given (else ``start`` + ``index`` windows)."""
    _check_schema(cfg.schema_)
    rows = cfg.simulate.batch_rows if rows is None else int(rows)
    if rows < 0:
        raise ValueError("rows must be >= 0")
    rng = np.random.default_rng([cfg.simulate.seed, *stream, index, rows])
    window_start = _window_start(cfg, index, start, at)
    minutes = max(1, cfg.simulate.batch_minutes)
    gen = TransactionGenerator(world_for(cfg), rng, knobs, window_start, minutes)
    cols, fraud = _draw(gen, rows, rows * cfg.simulate.fraud_rate, knobs)
    return _frame(cfg, gen, cols, fraud, window_start=window_start, id_prefix=id_prefix, index=index)


def generate_batch(
    cfg: Settings,
    scenario: str = "stable",
    index: int = 0,
    rows: int | None = None,
    start: Any = None,
    *,
    drift_strength: float = 1.0,
    at: Any = None,
) -> pd.DataFrame:
    """Batch ``index`` of a scenario: deterministic per (seed, scenario, index, rows, strength).

    ``drift_strength`` in [0, 1] scales the drift scenarios (0 behaves like ``stable``); ``ramp``
    reaches it at batch ``simulate.ramp_batches - 1``, linearly from batch 0. ``at``
    places the window itself (live traffic: its clock) instead of ``index`` windows after ``start``:
    the index then only keeps ids and draws apart.
    """
    strength = float(np.clip(drift_strength, 0.0, 1.0))
    ramped = strength * min(1.0, (index + 1) / cfg.simulate.ramp_batches) if scenario == "ramp" else strength
    knobs = knobs_for(scenario, ramped)
    code = _SCENARIO_CODES[scenario]
    if scenario != "stable" and strength != 1.0:
        code += f"p{round(strength * 100):03d}"  # different data, so different ids
    stream = (1, SCENARIOS.index(scenario), round(strength * 1000))
    prefix = f"{code}{cfg.simulate.seed}"
    return build_batch(
        cfg, knobs, stream=stream, id_prefix=prefix, index=index, rows=rows, start=start, at=at
    )


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
        return str(out.to_csv(index=False)).encode()
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def batch_name(scenario: str, index: int, fmt: str = "parquet") -> str:
    return f"batch-{scenario}-{index:06d}.{fmt}"
