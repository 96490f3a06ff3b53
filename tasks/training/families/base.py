"""What every fraud model shares: the input contract, the encoder and the MLflow pyfunc wrapper.

The logged model is a ``FraudModel`` (an ``mlflow.pyfunc.PythonModel``). It takes a DataFrame with
the feature service's columns (``InputSpec.features``, in order) plus the raw request columns
(``amount``, ``merchant_category``, ``channel``, ``region`` by default), encodes them itself and
returns the fraud probability of each row. Unknown categories encode as "none of the known
ones", missing or infinite numbers as missing: neither crashes scoring.

A model is three parts, each plain numpy at scoring time (no torch, no sklearn): the ``Encoder``
fitted on the training split, a ``Scorer`` (a family's trained network or trees) that maps the
encoded matrix to a logit, and a Platt calibration ``sigmoid(a * logit + b)`` fitted on the
validation split, so class weighting during training does not distort the probabilities.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

if TYPE_CHECKING:
    from config import Settings


@dataclass(frozen=True)
class InputSpec:
    """The model's input columns: feature-service features first, then the raw request columns."""

    features: tuple[str, ...]
    raw_numeric: tuple[str, ...] = ("amount",)
    raw_categorical: tuple[str, ...] = ("merchant_category", "channel", "region")
    exclude: tuple[str, ...] = ()
    """Features the model accepts but does not use."""

    @classmethod
    def from_settings(cls, settings: Settings, features: Sequence[str]) -> InputSpec:
        t = settings.train
        return cls(
            features=tuple(features),
            raw_numeric=tuple(t.raw_numeric),
            raw_categorical=tuple(t.raw_categorical),
            exclude=tuple(f for f in t.exclude_features if f in features),
        )

    @property
    def columns(self) -> list[str]:
        """Every input column, in the order of the signature."""
        return [*self.features, *self.raw_numeric, *self.raw_categorical]

    @property
    def numeric(self) -> list[str]:
        """Numeric columns the model uses."""
        return [c for c in [*self.features, *self.raw_numeric] if c not in self.exclude]


Columns: TypeAlias = pd.DataFrame | Mapping[str, np.ndarray]
"""A model-input frame, or the same columns as equal-length arrays (the serving fast path)."""


def _length(frame: Columns) -> int:
    return len(frame) if isinstance(frame, pd.DataFrame) else len(next(iter(frame.values()), ()))


def model_input(frame: pd.DataFrame, spec: InputSpec) -> pd.DataFrame:
    """The model's input frame from any frame that has the spec's columns (a training set, the
    serving request joined with online features): exactly ``spec.columns``, numbers as float64
    (missing as NaN), categories as strings (missing as None). Other columns are dropped.
    """
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise KeyError(f"model input lacks columns {missing}; the model needs {spec.columns}")
    # Built column by column as arrays and framed once: per-column assignment into a DataFrame
    # cost ~0.3 ms a column, most of a one-row request's model time.
    data: dict[str, np.ndarray] = {}
    numeric = [*spec.features, *spec.raw_numeric]
    block = frame[numeric]
    if all(dtype.kind in "fiub" for dtype in block.dtypes):
        values = block.to_numpy(dtype="float64", na_value=np.nan)
        data.update({name: values[:, i] for i, name in enumerate(numeric)})
    else:
        for name in numeric:
            col = frame[name]
            if col.dtype.kind not in "fiub":
                col = pd.to_numeric(col, errors="coerce")
            data[name] = col.to_numpy(dtype="float64", na_value=np.nan)
    for name in spec.raw_categorical:
        col = frame[name]
        values = col.astype(str).to_numpy(dtype=object)
        values[col.isna().to_numpy()] = None
        data[name] = values
    return pd.DataFrame(data, index=frame.index, columns=spec.columns, copy=False)


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.sign(x) * np.log1p(np.abs(x)))


@dataclass
class Encoder:
    """Frame -> float32 matrix. Fitted on the training split only.

    ``dense=False`` (trees): raw numbers with NaN kept, plus one-hot categories.
    ``dense=True`` (networks): signed-log, standardised numbers with NaN as 0 plus a missing
    indicator per number, plus one-hot categories. Unknown or missing categories are all-zero.
    """

    spec: InputSpec
    dense: bool
    categories: dict[str, list[str]] = field(default_factory=dict)
    means: np.ndarray | None = None
    stds: np.ndarray | None = None

    @classmethod
    def fit(cls, frame: pd.DataFrame, spec: InputSpec, *, dense: bool) -> Encoder:
        cats = {c: sorted({str(v) for v in frame[c].dropna().unique()}) for c in spec.raw_categorical}
        enc = cls(spec=spec, dense=dense, categories=cats)
        if dense:
            logged = _signed_log(enc._numbers(frame))
            with warnings.catch_warnings():  # an all-missing column gets mean 0, std 1
                warnings.simplefilter("ignore", RuntimeWarning)
                means, stds = np.nanmean(logged, axis=0), np.nanstd(logged, axis=0)
            enc.means = np.nan_to_num(means, nan=0.0)
            enc.stds = np.where(np.isfinite(stds) & (stds > 1e-9), stds, 1.0)
        return enc

    def _numbers(self, frame: Columns) -> np.ndarray:
        cols = self.spec.numeric
        n = _length(frame)
        if not cols:
            values = np.empty((n, 0))
        elif isinstance(frame, pd.DataFrame):
            values = frame[cols].to_numpy(dtype="float64", na_value=np.nan)
        else:
            values = np.column_stack([np.asarray(frame[c], dtype="float64") for c in cols])
        return np.where(np.isfinite(values), values, np.nan)

    def _one_hot(self, frame: Columns) -> np.ndarray:
        blocks = []
        n = _length(frame)
        for col, known in self.categories.items():
            # unknown categories and missing values get code -1 (an all-zero block row)
            index = {v: i for i, v in enumerate(known)}
            values = np.asarray(frame[col], dtype=np.object_)
            codes = np.fromiter(
                (index.get(v, -1) if isinstance(v, str) else -1 for v in values), "int64", len(values)
            )
            block = np.zeros((n, len(known)), dtype="float32")
            hit = codes >= 0
            block[np.nonzero(hit)[0], codes[hit]] = 1.0
            blocks.append(block)
        return np.hstack(blocks) if blocks else np.empty((n, 0), dtype="float32")

    def transform(self, frame: Columns) -> np.ndarray:
        """The matrix of a model-input frame, or of the same columns as arrays (``score``)."""
        numbers = self._numbers(frame)
        if self.dense:
            assert self.means is not None and self.stds is not None
            missing = np.isnan(numbers)
            z = (_signed_log(numbers) - self.means) / self.stds
            z = np.clip(np.where(missing, 0.0, z), -10.0, 10.0)
            parts = [z, missing.astype("float64")]
        else:
            parts = [numbers]
        return np.hstack([*(p.astype("float32") for p in parts), self._one_hot(frame)])

    @property
    def column_names(self) -> list[str]:
        names = list(self.spec.numeric)
        if self.dense:
            names += [f"{c}__missing" for c in self.spec.numeric]
        names += [f"{c}={v}" for c, known in self.categories.items() for v in known]
        return names

    @property
    def source_columns(self) -> list[str]:
        """The input column each matrix column comes from (to fold importances back)."""
        return [n.split("__missing")[0].split("=")[0] for n in self.column_names]


class Scorer(Protocol):
    """A family's trained model: encoded matrix -> logit per row (before calibration)."""

    def logits(self, x: np.ndarray) -> np.ndarray: ...


@dataclass
class PriorScorer:
    """The base rate for every row: the baseline a model has to beat."""

    rate: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        p = min(max(self.rate, 1e-6), 1 - 1e-6)
        return np.full(len(x), math.log(p / (1 - p)))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0))))


def fit_platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of ``sigmoid(a * logit + b)`` by maximum likelihood (Newton steps, lightly
    regularised so a separable validation split cannot send ``a`` to infinity)."""
    a, b, lam = 1.0, 0.0, 1e-3
    z, t = np.asarray(logits, dtype="float64"), np.asarray(y, dtype="float64")
    if len(np.unique(t)) < 2:
        return 1.0, 0.0
    for _ in range(50):
        p = sigmoid(a * z + b)
        w = np.maximum(p * (1 - p), 1e-12)
        grad = np.array([np.sum((p - t) * z) + lam * (a - 1.0), np.sum(p - t)])
        hess = np.array([[np.sum(w * z * z) + lam, np.sum(w * z)], [np.sum(w * z), np.sum(w) + lam]])
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(a), float(b)


class FraudModel(PythonModel):
    """The logged model: input frame (``spec.columns``) -> fraud probability per row."""

    def __init__(
        self,
        *,
        spec: InputSpec,
        encoder: Encoder,
        scorer: Any,
        calibration: tuple[float, float] = (1.0, 0.0),
        family: str,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.encoder = encoder
        self.scorer = scorer
        self.calibration = calibration
        self.family = family
        self.params = dict(params or {})

    def logits(self, frame: Columns) -> np.ndarray:
        """Uncalibrated scores of a model-input frame (or its columns as arrays)."""
        return np.asarray(self.scorer.logits(self.encoder.transform(frame)), dtype="float64")

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.score(model_input(frame, self.spec))

    def score(self, columns: Columns) -> np.ndarray:
        """Probabilities of input already typed as ``model_input`` makes it: numbers float64
        (missing as NaN), categories ``str`` or ``None``. Serving calls this with plain arrays:
        for one row, pandas cost ten times the trees."""
        a, b = self.calibration
        return sigmoid(a * self.logits(columns) + b)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self.predict_proba(pd.DataFrame(model_input))

    def calibrated(self, frame: pd.DataFrame, y: np.ndarray) -> FraudModel:
        """A copy calibrated on a held-out frame (the validation split)."""
        clone = self.with_scorer(self.scorer)
        clone.calibration = fit_platt(self.logits(model_input(frame, self.spec)), y)
        return clone

    def with_scorer(self, scorer: Any) -> FraudModel:
        return type(self)(
            spec=self.spec,
            encoder=self.encoder,
            scorer=scorer,
            calibration=self.calibration,
            family=self.family,
            params=self.params,
        )

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "params": self.params, "calibration": list(self.calibration)}
