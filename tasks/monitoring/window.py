"""One monitored window: read it from the inference log, measure it, report it, store it.

``run_window(settings, Window(start, end))`` is what the monitor DAG's drift task calls:

1. ``load_window`` reads the live predictions (``monitor.routes``) made in ``[start, end)`` an
   hour partition at a time, keeping a uniform sample of at most ``monitor.drift.max_rows`` rows
   (``drift.UniformSample``), so memory stays bounded however large the window is; and the
   champion's predictions of the last ``monitor.performance.lookback_hours`` before ``end``
   joined with their delayed labels, keeping only score and label;
2. ``analyze`` computes drift (``drift.compute``) and live performance (``performance``);
3. the Evidently report and the summary page are written (``report``) and the metrics row is
   stored (``store.record_window``).

Labels count *as of the window's end*: a label that landed later is not used, so re-running a
past window gives the same numbers it gave then.

    python -m tasks.monitoring.window [--start ISO] [--end ISO] [--tracking-uri URI] [--decide]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.monitoring import drift as drift_mod
from tasks.monitoring import performance as perf_mod
from tasks.monitoring import store
from tasks.monitoring.drift import SCORE, DriftResult
from tasks.monitoring.performance import Performance
from tasks.monitoring.reference import LABEL

if TYPE_CHECKING:
    import pandas as pd

    from config import Settings
    from tasks.monitoring.reference import Reference

MODEL_VERSION = "model_version"
SCORE_METRICS = ("roc_auc", "pr_auc", "precision", "recall")
ROUTE = "route"


def utc(value: Any) -> pd.Timestamp:
    import pandas as pd

    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in UTC; its id names its report and its rows in the store."""

    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def of(cls, start: Any, end: Any) -> Window:
        lo, hi = utc(start), utc(end)
        if not lo < hi:
            raise ValueError(f"a window needs start < end, got [{lo.isoformat()}, {hi.isoformat()})")
        return cls(lo, hi)

    @property
    def id(self) -> str:
        return f"{self.start:%Y%m%dT%H%M%SZ}-{self.end:%Y%m%dT%H%M%SZ}"


def next_window(settings: Settings, end: Any = None) -> Window:
    """The window from the end of the last recorded one (or ``monitor.first_window_hours`` back)
    to ``end`` (default: now)."""
    hi = utc(end) if end is not None else utc(datetime.now(UTC))
    last = store.last_window_end(settings)
    lo = last if last is not None else hi - timedelta(hours=settings.monitor.first_window_hours)
    return Window.of(lo, hi)


def count_predictions(settings: Settings, start: Any, end: Any = None) -> int:
    """Live predictions (``monitor.routes``) logged in ``[start, end)`` (``end`` default: now),
    reading only the time and route columns of the hour partitions in range: what the monitor's
    sensor compares with ``monitor.min_new_predictions``."""
    import io

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tasks.common import storage
    from tasks.serving import inference_log

    storage.configure(settings.storage.s3_endpoint_url)
    lo = utc(start)
    hi = utc(end) if end is not None else utc(datetime.now(UTC))
    fs, base = storage.filesystem(inference_log.predictions_uri(settings))
    if not fs.exists(base) or lo >= hi:
        return 0
    total = 0
    for day in sorted(fs.ls(base, detail=False)):
        date = day.rstrip("/").rsplit("date=", 1)[-1]
        if not (f"{lo:%Y-%m-%d}" <= date <= f"{hi:%Y-%m-%d}"):
            continue
        for hour_dir in fs.ls(day, detail=False):
            hour = utc(f"{date}T{hour_dir.rstrip('/').rsplit('hour=', 1)[-1]}:00:00")
            if hour + timedelta(hours=1) <= lo or hour >= hi:
                continue
            for path in fs.glob(f"{hour_dir.rstrip('/')}/*.parquet"):
                table = pq.read_table(io.BytesIO(fs.cat_file(path)), columns=[inference_log.TIME, ROUTE])
                ts = table.column(inference_log.TIME)
                keep = pc.and_(
                    pc.and_(pc.greater_equal(ts, lo.to_pydatetime()), pc.less(ts, hi.to_pydatetime())),
                    pc.is_in(table.column(ROUTE), value_set=_strings(settings.monitor.routes)),
                )
                total += int(pc.sum(pc.cast(keep, "int64")).as_py() or 0)
    return total


def _strings(values: list[str]) -> Any:
    import pyarrow as pa

    return pa.array(values, type=pa.string())


# --- reading -----------------------------------------------------------------------------------


@dataclass
class WindowData:
    """What one window's analysis needs, bounded in size."""

    window: Window
    rows: int
    """Live predictions in the window."""
    sample: pd.DataFrame
    """Uniform sample of them (input columns, ``score`` where the reference's model scored)."""
    scored_rows: int
    """Live predictions of the window made by the reference's model version."""
    versions: dict[str, int]
    """Live predictions of the window per model version."""
    labelled: pd.DataFrame
    """``score`` and ``label`` of the reference model's predictions in the performance lookback
    whose label had landed by the window's end."""
    lookback_start: pd.Timestamp


def _hours(lo: pd.Timestamp, hi: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    edges = [lo]
    step = lo.floor("h") + timedelta(hours=1)
    while step < hi:
        edges.append(step)
        step += timedelta(hours=1)
    edges.append(hi)
    return list(itertools.pairwise(edges))


def _key_hash(values: pd.Series) -> Any:
    """64-bit hashes of label keys: a label map of a million keys takes 16 MB, not hundreds
    (two keys share a hash with probability ~1e-8 at a billion keys)."""
    import pandas as pd

    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        values = values.astype(str)
    return pd.util.hash_array(values.to_numpy(dtype=object), categorize=False)


def _label_maps(labels: pd.DataFrame) -> dict[str, pd.Series]:
    """Latest landed label per ``request_id`` and per ``transaction_id`` (labels oldest first),
    keyed by the key's hash."""
    import pandas as pd

    maps = {}
    for key in ("request_id", "transaction_id"):
        if key in labels:
            known = labels[[key, "label"]].dropna(subset=[key])
            hashed = pd.Series(known["label"].to_numpy(dtype="float64"), index=_key_hash(known[key]))
            maps[key] = hashed[~hashed.index.duplicated(keep="last")]
    return maps


def _join_labels(chunk: pd.DataFrame, maps: dict[str, pd.Series]) -> pd.Series:
    """The label of each prediction: by its request id, else by its transaction id (NaN: none yet)."""
    import numpy as np
    import pandas as pd

    out = pd.Series(np.nan, index=chunk.index, dtype="float64")
    for key, known in maps.items():
        if key not in chunk or known.empty:
            continue
        todo = out.isna() & chunk[key].notna()
        if todo.any():
            hashed = pd.Index(_key_hash(chunk.loc[todo, key]))
            out[todo] = known.reindex(hashed).to_numpy()
    return out


def load_window(settings: Settings, window: Window, reference: Reference) -> WindowData:
    """Read ``window`` and the performance lookback from the inference log, an hour at a time."""
    import numpy as np
    import pandas as pd

    from tasks.serving import inference_log

    cfg = settings.monitor
    lookback_start = window.end - timedelta(hours=cfg.performance.lookback_hours)
    maps = _label_maps(inference_log.read_labels(settings, lookback_start, window.end))
    sample = drift_mod.UniformSample(cfg.drift.max_rows, cfg.drift.seed)
    keep = [c for c in reference.columns if c != SCORE]
    versions: dict[str, int] = {}
    labelled: list[pd.DataFrame] = []
    scored = 0
    for lo, hi in _hours(min(window.start, lookback_start), window.end):
        chunk = inference_log.read_predictions(settings, lo, hi, labels=False, routes=cfg.routes)
        if chunk.empty:
            continue
        ours = (chunk[MODEL_VERSION].astype(str) == reference.model_version).to_numpy()
        if hi > window.start:
            inside = (chunk[inference_log.TIME] >= window.start).to_numpy()
            part = chunk[inside]
            missing = [c for c in keep if c not in part.columns]
            if missing:
                raise KeyError(f"the inference log lacks the model's input columns {missing}")
            rows = part[keep].copy()
            rows[SCORE] = part[SCORE].where(ours[inside]).astype("float64")
            sample.add(rows)
            scored += int(ours[inside].sum())
            for version, n in part[MODEL_VERSION].astype(str).value_counts().items():
                versions[version] = versions.get(version, 0) + int(n)
        if hi > lookback_start and maps:
            mine = chunk[ours & (chunk[inference_log.TIME] >= lookback_start).to_numpy()]
            label = _join_labels(mine, maps)
            has = label.notna().to_numpy()
            if has.any():
                labelled.append(
                    pd.DataFrame({SCORE: mine[SCORE].to_numpy("float64")[has], LABEL: label.to_numpy()[has]})
                )
    frame = sample.frame()
    if frame is None:
        frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in [*keep, SCORE]})
    labels = (
        pd.concat(labelled, ignore_index=True)
        if labelled
        else pd.DataFrame({SCORE: np.array([], "float64"), LABEL: np.array([], "float64")})
    )
    return WindowData(window, sample.seen, frame, scored, versions, labels, lookback_start)


# --- measuring ---------------------------------------------------------------------------------


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


@dataclass
class WindowResult:
    """Every number of one window; ``row()`` is what the store keeps, ``as_dict()`` what XCom gets."""

    window_id: str
    start: str
    end: str
    model_name: str
    model_version: str
    data_sha256: str
    rows: int
    scored_rows: int
    versions: dict[str, int]
    drift: DriftResult
    performance: Performance
    computed_at: str
    seconds: float = 0.0
    report_uri: str | None = None
    summary_uri: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def window(self) -> Window:
        return Window.of(self.start, self.end)

    def as_dict(self) -> dict[str, Any]:
        return _plain(
            {
                "window_id": self.window_id,
                "start": self.start,
                "end": self.end,
                "model_name": self.model_name,
                "model_version": self.model_version,
                "data_sha256": self.data_sha256,
                "rows": self.rows,
                "scored_rows": self.scored_rows,
                "versions": self.versions,
                "drift": self.drift.as_dict(),
                "performance": self.performance.as_dict(),
                "computed_at": self.computed_at,
                "seconds": self.seconds,
                "report_uri": self.report_uri,
                "summary_uri": self.summary_uri,
                "notes": self.notes,
            }
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowResult:
        """The result back from ``as_dict()`` (e.g. from XCom, for the decide task)."""
        from tasks.monitoring.drift import ColumnDrift
        from tasks.monitoring.performance import Scores

        d = dict(data["drift"])
        for derived in ("share", "drifted_columns", "data_drift", "prediction_drift"):
            d.pop(derived, None)
        d["columns"] = [ColumnDrift(**c) for c in d["columns"]]
        d["prediction"] = ColumnDrift(**d["prediction"]) if d.get("prediction") else None
        p = dict(data["performance"])
        p.pop("is_degraded", None)
        p["live"], p["baseline"] = Scores(**p["live"]), Scores(**p["baseline"])
        fields = {k: v for k, v in data.items() if k not in ("drift", "performance")}
        return cls(**fields, drift=DriftResult(**d), performance=Performance(**p))

    def row(self) -> dict[str, Any]:
        """One flat metrics row: scalars, with lists and per-column scores as JSON text."""
        d, p = self.drift, self.performance
        pred = d.prediction
        return {
            "window_id": self.window_id,
            "start": utc(self.start),
            "end": utc(self.end),
            "computed_at": utc(self.computed_at),
            "model_name": self.model_name,
            "model_version": self.model_version,
            "data_sha256": self.data_sha256,
            "rows": self.rows,
            "scored_rows": self.scored_rows,
            "sample_rows": d.sample_rows,
            "reference_rows": d.reference_rows,
            "reference_sample_rows": d.reference_sample_rows,
            "error_bound": d.error_bound,
            "drift_judged": d.judged,
            "columns_tested": len(d.tested),
            "columns_drifted": len(d.drifted_columns),
            "drift_share": _num(d.share),
            "share_threshold": d.share_threshold,
            "data_drift": d.data_drift,
            "drifted_columns": json.dumps(d.drifted_columns),
            "column_scores": json.dumps({c.column: c.score for c in d.columns if c.judged}),
            "prediction_method": pred.method if pred else "",
            "prediction_score": _num(pred.score if pred else None),
            "prediction_threshold": _num(pred.threshold if pred else None),
            "prediction_drift": d.prediction_drift,
            "performance_judged": p.judged,
            "labelled_rows": p.live.rows,
            "labelled_positives": p.live.positives,
            "threshold": p.live.threshold,
            **{m: _num(getattr(p.live, m)) for m in SCORE_METRICS},
            **{f"baseline_{m}": _num(getattr(p.baseline, m)) for m in SCORE_METRICS},
            **{f"{m}_drop": _num(p.drops.get(m)) for m in perf_mod.METRICS},
            "degraded": p.is_degraded,
            "degraded_reasons": json.dumps(p.degraded),
            "report_uri": self.report_uri or "",
            "seconds": self.seconds,
            "notes": json.dumps(self.notes),
        }


def _plain(value: Any) -> Any:
    """JSON-safe: NaN becomes None, numpy scalars Python numbers, timestamps ISO text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def analyze(settings: Settings, data: WindowData, reference: Reference) -> tuple[WindowResult, Any]:
    """Drift and live performance of a loaded window; returns the result and Evidently's snapshot."""
    started = time.perf_counter()
    drift, snapshot = drift_mod.compute(settings, data.sample, reference, rows=data.rows)
    threshold = perf_mod.threshold_for(settings)
    live = perf_mod.scores(data.labelled[LABEL], data.labelled[SCORE], threshold)
    perf = perf_mod.compare(
        settings,
        live,
        reference.baseline(threshold),
        start=data.lookback_start.isoformat(),
        end=data.window.end.isoformat(),
    )
    notes = [n for n in (drift.note, perf.note) if n]
    others = {v: n for v, n in data.versions.items() if v != reference.model_version}
    if others:
        notes.append(
            f"{sum(others.values())} of {data.rows} live predictions came from other versions "
            f"({', '.join(f'v{v}: {n}' for v, n in sorted(others.items()))}): in data drift, not in "
            "prediction drift or performance"
        )
    result = WindowResult(
        window_id=data.window.id,
        start=data.window.start.isoformat(),
        end=data.window.end.isoformat(),
        model_name=reference.model_name,
        model_version=reference.model_version,
        data_sha256=reference.data_sha256,
        rows=data.rows,
        scored_rows=data.scored_rows,
        versions=data.versions,
        drift=drift,
        performance=perf,
        computed_at=datetime.now(UTC).isoformat(),
        notes=notes,
    )
    result.seconds = time.perf_counter() - started
    return result, snapshot


def run_window(
    settings: Settings,
    window: Window,
    *,
    reference: Reference | None = None,
    tracking_uri: str | None = None,
    write_report: bool = True,
) -> WindowResult:
    """Load, analyze, report and store one window (the monitor DAG's drift task).

    ``reference`` defaults to the registered champion's (``reference.champion_reference``, which
    raises ``NoChampion`` when there is none).
    """
    from tasks.common import storage
    from tasks.monitoring import pages
    from tasks.monitoring.reference import champion_reference

    storage.configure(settings.storage.s3_endpoint_url)
    started = time.perf_counter()
    reference = reference or champion_reference(settings, tracking_uri)
    data = load_window(settings, window, reference)
    result, snapshot = analyze(settings, data, reference)
    if write_report:
        result.report_uri = pages.write_report(settings, result, snapshot)
    result.seconds = time.perf_counter() - started
    store.record_window(settings, result.row())
    if write_report:
        result.summary_uri = pages.write_summary(settings, now=window.end)
    return result


# --- command line --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    summary = (__doc__ or "").split("\n\n")[0]
    p = argparse.ArgumentParser(prog="python -m tasks.monitoring.window", description=summary)
    p.add_argument("--start", help="window start (default: the end of the last recorded window)")
    p.add_argument("--end", help="window end (default: now)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or config)")
    p.add_argument("--decide", action="store_true", help="also decide on a retrain and record it")
    p.add_argument("--retrain-running", action="store_true", help="a train run is in progress")
    p.add_argument("--last-retrain", help="when the last retrain started (ISO)")
    return p


def main(argv: list[str] | None = None) -> int:
    from config import load_config
    from tasks.monitoring import decision

    args = _parser().parse_args(argv)
    settings = load_config()
    if args.start:
        window = Window.of(args.start, args.end or datetime.now(UTC))
    else:
        window = next_window(settings, args.end)
    result = run_window(settings, window, tracking_uri=args.tracking_uri)
    out: dict[str, Any] = {"window": result.as_dict()}
    if args.decide:
        made = decision.decide_and_record(
            settings, result, last_retrain_at=args.last_retrain, retrain_running=args.retrain_running
        )
        out["decision"] = made.as_dict()
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
