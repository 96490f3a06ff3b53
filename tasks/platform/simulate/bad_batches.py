"""Bad batches: a mostly good batch with one small, deliberate defect that validation must catch.

Each kind (``BAD_KINDS``) says what it broke and which column a validator should name, so tests
can check that the report points at the right place and that the good rows are told apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from config import DataSchema, Settings
from tasks.platform.scenarios import BAD_KINDS
from tasks.platform.simulate.batches import build_batch, to_bytes
from tasks.platform.simulate.generator import Knobs

_BAD_CODES = {kind: f"x{i}" for i, kind in enumerate(BAD_KINDS)}


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


@dataclass(frozen=True, eq=False)
class _Source:
    """The good batch a defect is made from, and the few rows picked to carry it."""

    kind: str
    index: int
    df: pd.DataFrame
    schema: DataSchema
    rng: np.random.Generator
    few: int
    picked: np.ndarray
    good: np.ndarray

    def bad(
        self,
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
        return BadBatch(self.kind, self.index, fmt, description, column, cols, frame, payload, good_rows)


def _wrong_schema(src: _Source) -> BadBatch:
    out = src.df.rename(columns={"merchant_category": "category"})
    out["promo_code"] = "NONE"
    return src.bad(
        "merchant_category renamed to category; unexpected column promo_code",
        "merchant_category",
        columns=("merchant_category", "category", "promo_code"),
        frame=out,
    )


def _missing_column(src: _Source) -> BadBatch:
    return src.bad("column amount is missing", "amount", frame=src.df.drop(columns=["amount"]))


def _nulls(src: _Source) -> BadBatch:
    out = src.df.copy()
    out.loc[src.picked, "amount"] = np.nan
    return src.bad(f"{len(src.picked)} null amounts", "amount", frame=out, good_rows=src.good)


def _duplicate_ids(src: _Source) -> BadBatch:
    """Re-delivered records: a few rows repeated verbatim (same id), batch size unchanged."""
    df, n, key = src.df, len(src.df), src.schema.key
    if n < 2:
        raise ValueError("duplicate_ids needs at least 2 rows")
    few = min(src.few, n // 2)
    repeated = np.sort(src.rng.choice(n - few, few, replace=False))
    out = pd.concat([df.iloc[: n - few], df.iloc[repeated]], ignore_index=True)
    out = out.sort_values(src.schema.timestamp, kind="stable", ignore_index=True)
    first = ~out[key].duplicated(keep="first").to_numpy()
    return src.bad(f"{few} repeated {key}", key, frame=out, good_rows=first)


def _out_of_range(src: _Source) -> BadBatch:
    out, picked = src.df.copy(), src.picked
    amount_max = src.schema.column("amount").max or 50_000.0
    half = len(picked) // 2
    out.loc[picked[:half], "amount"] = -out.loc[picked[:half], "amount"]
    out.loc[picked[half:], "amount"] = amount_max * 10
    out.loc[picked[-1:], "merchant_category"] = "crypto_exchange"
    return src.bad(
        f"{len(picked)} amounts below 0 or above {amount_max:g}; a category not allowed",
        "amount",
        columns=("amount", "merchant_category"),
        frame=out,
        good_rows=src.good,
    )


def _wrong_types(src: _Source) -> BadBatch:
    out = src.df.copy()
    text = out["amount"].map(lambda a: f"{a:.2f}").astype(object)
    junk = np.array(["n/a", "12,50 EUR", "abc", "--"], dtype=object)
    text.iloc[src.picked] = junk[np.arange(len(src.picked)) % len(junk)]
    out["amount"] = text
    return src.bad("non-numeric amounts", "amount", frame=out, fmt="csv", good_rows=src.good)


def _empty(src: _Source) -> BadBatch:
    return src.bad("zero-byte file", None, payload=b"")


def _corrupt(src: _Source) -> BadBatch:
    """A truncated Parquet file with garbled bytes and no footer."""
    data = bytearray(to_bytes(src.df, "parquet"))
    cut = bytearray(data[: max(8, len(data) // 2)])
    for pos in src.rng.integers(4, len(cut), 16):
        cut[pos] ^= 0x5A
    if cut.endswith(b"PAR1"):
        cut = cut[:-1]
    return src.bad("truncated, garbled Parquet", None, payload=bytes(cut))


DEFECTS: dict[str, Callable[[_Source], BadBatch]] = {
    "wrong_schema": _wrong_schema,
    "missing_column": _missing_column,
    "nulls": _nulls,
    "duplicate_ids": _duplicate_ids,
    "out_of_range": _out_of_range,
    "wrong_types": _wrong_types,
    "empty": _empty,
    "corrupt": _corrupt,
}
"""How each kind of ``BAD_KINDS`` is made."""


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
    stream = (2, BAD_KINDS.index(kind))
    prefix = f"{_BAD_CODES[kind]}{cfg.simulate.seed}"
    df = build_batch(cfg, Knobs(), stream=stream, id_prefix=prefix, index=index, rows=rows, start=start)
    n = len(df)
    rng = np.random.default_rng([cfg.simulate.seed, *stream, index, n, 99])
    few = max(1, n // 100) if n else 0
    picked = np.sort(rng.choice(n, min(few, n), replace=False)) if n else np.zeros(0, int)
    good = np.ones(n, dtype=bool)
    good[picked] = False
    return DEFECTS[kind](_Source(kind, index, df, cfg.schema_, rng, few, picked, good))
