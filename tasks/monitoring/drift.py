"""Data drift per input column and prediction drift of a window against the reference, by Evidently.

One Evidently ``Report`` of ``ValueDrift`` metrics: one per model input column (the champion's
numeric features and raw numbers with ``monitor.drift.numeric_method``, its raw categories with
``categorical_method``, ``per_column_method`` / ``per_column_threshold`` override both) and one on
the score (``prediction_method``) against the champion's scores on its own hold-out. A column is
*drifted* when Evidently's test says so: a distance (Wasserstein, PSI, Jensen-Shannon, ...) at or
above its threshold, a p-value (K-S, chi-square, ...) at or below it. The window's *share* is
drifted columns over judged columns; the score is not an input column and is not in the share.

The report's metric list is ``ValueDrift`` only, not ``DataDriftPreset``: the preset computes every
column's test three times (its ``DriftedColumnsCount``, its ``ValueDrift``s and again to render its
table), which is most of its 150 s on 1M rows x 30 columns; the share is counted here instead.

Large windows: both sides are cut to a uniform sample of at most ``monitor.drift.max_rows`` rows
(the window while it is read, see ``sampling.UniformSample``; the reference when it is built), so time
and memory do not grow with the window. What the sample costs is bounded and recorded with
every window as ``error_bound``: by the Dvoretzky-Kiefer-Wolfowitz inequality (Massart's
constant), a uniform sample of ``n`` rows has an empirical CDF within
``eps(n) = sqrt(ln(4 / (1 - confidence)) / (2 n))`` of the full data's at every point, on both
sides at once with probability ``>= monitor.drift.error_confidence`` (per column). So

- a K-S distance, or any difference of CDF values, moves by at most ``eps(window) + eps(reference)``
  (``error_bound``; 0 for a side that was not sampled);
- the share of any bin or category moves by at most twice that per side, which bounds the
  histogram-based scores (PSI, Jensen-Shannon, chi-square inputs);
- a p-value test (K-S, chi-square) on the sample is still a test at its nominal level: sampling
  never adds false alarms, it only lowers the power to ``n`` rows (with 50 000 rows per side a
  K-S test at 0.05 detects a K-S distance of about 0.009);
- the normed Wasserstein distance moves by at most ``error_bound`` times the column's range over
  its standard deviation (loose; ``benchmarks/drift.py`` measures the actual error).

With 50 000 rows per side and 95% confidence, ``error_bound`` is 0.0132.

``compute(..., report=False)`` runs the same tests without the ``Report``: each column's
Evidently stat test (``get_stattest``, the function ``ValueDrift`` calls) on the same typed and
cleaned columns, so the scores and verdicts are the same (``tests/monitoring/test_drift.py`` holds
them equal) at a fraction of the cost (no histograms, correlations or widgets to render). The
backtest (``tasks.backtest``) replays thousands of windows this way; the monitor keeps the report.

Both run with BLAS on one thread: SciPy's Wasserstein distance ends in a dot product that
OpenBLAS splits over every core once both sides hold more than about 10 000 values (a 10 000-row
reference and a window), and on a busy machine those threads wait for cores: ~1-15 ms a column
instead of ~2 us. One thread also sums in one order, so a score does not depend on the machine's
core count. And the Wasserstein distance (the default numeric test) is SciPy's arithmetic with
the reference's side sorted once per reference (``_wasserstein``; SciPy sorts both sides for every
column of every window): the same number to the last bit (``tests/monitoring/test_drift.py``).
"""

from __future__ import annotations

import warnings
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift
from threadpoolctl import threadpool_limits

from tasks.monitoring.results import CATEGORICAL, NUMERIC, PREDICTION, SCORE, ColumnDrift, DriftResult
from tasks.monitoring.sampling import dkw_epsilon, sample_frame

if TYPE_CHECKING:
    from config import Settings
    from tasks.monitoring.reference import Reference


def _settings_for(settings: Settings, column: str, kind: str) -> tuple[str, float | None]:
    cfg = settings.monitor.drift
    if kind == PREDICTION:
        return cfg.prediction_method, cfg.prediction_threshold
    method = cfg.numeric_method if kind == NUMERIC else cfg.categorical_method
    threshold = cfg.numeric_threshold if kind == NUMERIC else cfg.categorical_threshold
    return cfg.per_column_method.get(column, method), cfg.per_column_threshold.get(column, threshold)


def _typed(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Numbers as float64 (infinities as missing), categories as strings (missing as None)."""
    out = pd.DataFrame(index=frame.index)
    for col in numeric:
        values = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        out[col] = values.where(np.isfinite(values))
    for col in categorical:
        values = frame[col]
        out[col] = values.astype(str).astype("object").where(values.notna(), None)
    return out


def _has_values(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and bool(frame[column].notna().any())


def _empty_result(settings: Settings, cur: pd.DataFrame, reference: Reference, total: int) -> DriftResult:
    """The window's drift before any test ran: sizes, the sampling error bound, not judged."""
    cfg = settings.monitor.drift
    ref = reference.frame
    return DriftResult(
        judged=False,
        rows=total,
        reference_rows=reference.rows,
        sample_rows=len(cur),
        reference_sample_rows=len(ref),
        error_bound=dkw_epsilon(len(cur), total, cfg.error_confidence)
        + dkw_epsilon(len(ref), reference.rows, cfg.error_confidence),
        error_confidence=cfg.error_confidence,
        share_threshold=cfg.share_threshold,
    )


def _plan(
    settings: Settings, cur: pd.DataFrame, reference: Reference, result: DriftResult
) -> list[ColumnDrift]:
    """One test per input column and one on the score, added to ``result``; the tests that can
    run (values on both sides), the others with a note that says why not."""
    planned: list[ColumnDrift] = []
    kinds = [(c, NUMERIC) for c in reference.numeric] + [(c, CATEGORICAL) for c in reference.categorical]
    for column, kind in [*kinds, (SCORE, PREDICTION)]:
        method, threshold = _settings_for(settings, column, kind)
        drift = ColumnDrift(column, kind, method, threshold)
        if column not in cur.columns:
            drift.note = "not in the window"
        elif not _has_values(cur, column):
            drift.note = "no values in the window"
        elif not _reference_has_values(reference.frame, column):
            drift.note = "no values in the reference"
        if kind == PREDICTION:
            result.prediction = drift
        else:
            result.columns.append(drift)
        if not drift.note:
            planned.append(drift)
    return planned


def compute(
    settings: Settings,
    current: pd.DataFrame,
    reference: Reference,
    *,
    rows: int | None = None,
    report: bool = True,
) -> tuple[DriftResult, Any]:
    """Drift of ``current`` (a window's live predictions, or a uniform sample of them; ``rows``
    is then the window's full size) against ``reference``. Returns the result and Evidently's
    snapshot (``None`` when the window is too small to judge): ``pages.write_report`` saves it.

    ``current`` needs the reference's input columns and, for prediction drift, a ``score``
    column holding the champion's scores (missing for rows another model scored). ``report=False``:
    the same verdicts from Evidently's stat tests alone, no snapshot (see the module's docstring).
    """
    cfg = settings.monitor.drift
    total = len(current) if rows is None else int(rows)
    cur = sample_frame(current, cfg.max_rows, cfg.seed)
    result = _empty_result(settings, cur, reference, total)
    if total < cfg.min_rows:
        result.note = f"{total} live predictions, below monitor.drift.min_rows={cfg.min_rows}: not judged"
        return result, None
    planned = _plan(settings, cur, reference, result)
    if not planned:
        result.note = "no column had values on both sides"
        return result, None
    result.judged = True
    with threadpool_limits(1, user_api="blas"):  # see the module's docstring
        if not report:
            _run_tests(cur, reference.frame, planned)
            return result, None
        snapshot = _run_report(cur, reference.frame, planned)
    _read_verdicts(snapshot.dict(), planned)
    return result, snapshot


_CLEAN: dict[int, dict[tuple[str, str], Any]] = {}
"""Per reference frame (by id, dropped with the frame): its typed and cleaned columns and whether
each column has values. A reference serves many windows."""


def _reference_cache(ref: pd.DataFrame) -> dict[tuple[str, str], Any]:
    if id(ref) not in _CLEAN:
        _CLEAN[id(ref)] = {}
        weakref.finalize(ref, _CLEAN.pop, id(ref), None)
    return _CLEAN[id(ref)]


def _clean(frame: pd.DataFrame, column: str, categorical: bool) -> pd.Series:
    """One column typed as the report types it (``_typed``), infinities and missing values
    dropped; built from the column alone (no frame: this runs for every column of every window)."""
    values = frame[column]
    if categorical:
        return values[values.notna()].astype(str).astype("object")
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    return numbers[np.isfinite(numbers.to_numpy())]


def _clean_reference(ref: pd.DataFrame, column: str, categorical: bool) -> pd.Series:
    cache, key = _reference_cache(ref), (column, CATEGORICAL if categorical else NUMERIC)
    if key not in cache:
        cache[key] = _clean(ref, column, categorical)
    out: pd.Series = cache[key]
    return out


def _reference_has_values(ref: pd.DataFrame, column: str) -> bool:
    cache, key = _reference_cache(ref), (column, "has_values")
    if key not in cache:
        cache[key] = _has_values(ref, column)
    return bool(cache[key])


def _run_tests(cur: pd.DataFrame, ref: pd.DataFrame, planned: list[ColumnDrift]) -> None:
    """Each planned column's Evidently stat test, as ``ValueDrift`` runs it (infinities and
    missing values dropped on both sides), without building a report."""
    from evidently.legacy.calculations.stattests import get_stattest  # noqa: PLC0415 - report=False only
    from evidently.legacy.core import ColumnType  # noqa: PLC0415 - see above

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for d in planned:
            categorical = d.kind == CATEGORICAL
            kind = ColumnType.Categorical if categorical else ColumnType.Numerical
            r = _clean_reference(ref, d.column, categorical)
            c = _clean(cur, d.column, categorical)
            test = get_stattest(r, c, kind, d.method)
            if test.name == "wasserstein" and len(c):
                threshold = test.default_threshold if d.threshold is None else d.threshold
                score = _wasserstein(ref, d.column, c)
                d.score, d.drifted, d.threshold = score, score >= threshold, threshold
                continue
            out = test(r, c, kind, d.threshold)
            d.score, d.drifted, d.threshold = float(out.drift_score), bool(out.drifted), out.actual_threshold


def _sorted_reference(ref: pd.DataFrame, column: str) -> tuple[np.ndarray, float]:
    """A numeric reference column's values sorted, and Evidently's norm of it (std, at least 0.001)."""
    cache, key = _reference_cache(ref), (column, "wasserstein")
    if key not in cache:
        r = _clean_reference(ref, column, False)
        cache[key] = (np.sort(r.to_numpy("float64")), max(float(np.std(r)), 0.001))
    out: tuple[np.ndarray, float] = cache[key]
    return out


def _wasserstein(ref: pd.DataFrame, column: str, current: pd.Series) -> float:
    """Evidently's ``wasserstein`` test's score: SciPy's ``wasserstein_distance`` (its
    ``_cdf_distance`` with p = 1, step for step) over the reference's std; the reference sorted once."""
    u, norm = _sorted_reference(ref, column)
    v = np.sort(current.to_numpy("float64"))
    both = np.concatenate((u, v))
    both.sort(kind="mergesort")
    u_cdf = u.searchsorted(both[:-1], "right") / u.size
    v_cdf = v.searchsorted(both[:-1], "right") / v.size
    return float(np.vecdot(np.abs(u_cdf - v_cdf), np.diff(both)) / norm)


def _read_verdicts(data: dict[str, Any], planned: list[ColumnDrift]) -> None:
    """Each planned test's method, threshold, score and verdict, from the snapshot's data."""
    by_column = {d.column: d for d in planned}
    failed = {t["metric_config"]["metric_id"] for t in data.get("tests", []) if t.get("status") == "FAIL"}
    for metric in data["metrics"]:
        conf = metric["config"]
        drift = by_column[conf["column"]]
        drift.method = conf.get("method") or drift.method
        drift.threshold = conf.get("threshold", drift.threshold)
        drift.score = float(metric["value"])
        drift.drifted = metric["id"] in failed


def _run_report(cur: pd.DataFrame, ref: pd.DataFrame, planned: list[ColumnDrift]) -> Any:
    numeric = [d.column for d in planned if d.kind in (NUMERIC, PREDICTION)]
    categorical = [d.column for d in planned if d.kind == CATEGORICAL]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    metrics = [ValueDrift(column=d.column, method=d.method, threshold=d.threshold) for d in planned]
    with warnings.catch_warnings():  # pandas/plotly deprecation chatter from inside Evidently
        warnings.simplefilter("ignore")
        return Report(metrics, include_tests=True).run(
            current_data=Dataset.from_pandas(_typed(cur, numeric, categorical), data_definition=definition),
            reference_data=Dataset.from_pandas(_typed(ref, numeric, categorical), data_definition=definition),
        )
