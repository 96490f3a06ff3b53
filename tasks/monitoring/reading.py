"""Reading one window from the inference log, in bounded memory.

``load_window`` reads the live predictions (``monitor.routes``) made in ``[start, end)`` an hour
partition at a time, keeping a uniform sample of at most ``monitor.drift.max_rows`` rows
(``sampling.UniformSample``), so memory stays bounded however large the window is; and the
champion's predictions of the last ``monitor.performance.lookback_hours`` before ``end`` joined
with their delayed labels, keeping only score and label; and the champion's scores of the last
``monitor.estimation.lookback_hours``, labelled or not (a uniform sample of at most
``monitor.estimation.max_rows``), for the performance estimated before labels arrive.

Only live traffic counts: rows marked synthetic (``traffic == "synthetic"``: benchmarks and load
tests sending ``X-Airloop-Traffic: synthetic``; a missing mark is live) are left out of both the
drift sample and the performance lookback, and counted (``WindowData.synthetic_rows``).

Labels are versioned: a correction is posted as a new version of a key's label, never written
over the old one. **The rule: a prediction's label is the latest version posted at or before the
window's end** (by ``labeled_at``, the time serving landed it), looked up by the prediction's
request id, else by its transaction id. A version posted later is not used, so
re-running a past window gives the numbers it gave then, and a label rewritten after a retrain
decision cannot change the evidence that decision rested on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tasks.monitoring.results import LABEL, MODEL_VERSION, SCORE, Window
from tasks.monitoring.sampling import UniformSample
from tasks.serving import inference_log
from tasks.serving.inference_log import LABELED_AT, SYNTHETIC, TRAFFIC

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from config import Settings
    from tasks.monitoring.reference import Reference

LABEL_KEYS = ("request_id", "transaction_id")
"""How a label finds its prediction: by request id, else by transaction id."""


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
    synthetic_rows: int
    """Predictions of the window marked synthetic, left out of everything above."""
    versions: dict[str, int]
    """Live predictions of the window per model version."""
    labelled: pd.DataFrame
    """``score`` and ``label`` of the reference model's predictions in the performance lookback
    whose label had landed by the window's end."""
    lookback_start: pd.Timestamp
    scores: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    """The reference model's live scores of the estimation lookback (labelled or not), sampled."""
    estimate_start: pd.Timestamp | None = None


def _hours(lo: pd.Timestamp, hi: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    edges = [lo]
    step = lo.floor("h") + timedelta(hours=1)
    while step < hi:
        edges.append(step)
        step += timedelta(hours=1)
    edges.append(hi)
    return list(itertools.pairwise(edges))


def _key_hash(values: pd.Series) -> NDArray[np.uint64]:
    """64-bit hashes of label keys: a label map of a million keys takes 16 MB, not hundreds
    (two keys share a hash with probability ~1e-8 at a billion keys)."""
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        values = values.astype(str)
    hashed: NDArray[np.uint64] = pd.util.hash_array(values.to_numpy(dtype=object), categorize=False)
    return hashed


def latest_first(labels: pd.DataFrame) -> pd.DataFrame:
    """Label versions in the order they were posted: by ``labeled_at`` (a stable sort, so the
    rows of one post keep their order and the later of two for one key wins)."""
    return labels.sort_values(LABELED_AT, kind="stable") if LABELED_AT in labels else labels


def _label_maps(labels: pd.DataFrame) -> dict[str, pd.Series]:
    """The latest posted version of each ``request_id``'s and ``transaction_id``'s label, keyed
    by the key's hash."""
    labels = latest_first(labels)
    maps = {}
    for key in LABEL_KEYS:
        if key in labels:
            known = labels[[key, "label"]].dropna(subset=[key])
            hashed = pd.Series(known["label"].to_numpy(dtype="float64"), index=_key_hash(known[key]))
            maps[key] = hashed[~hashed.index.duplicated(keep="last")]
    return maps


def _join_labels(chunk: pd.DataFrame, maps: dict[str, pd.Series]) -> pd.Series:
    """The label of each prediction: by its request id, else by its transaction id (NaN: none yet)."""
    out = pd.Series(np.nan, index=chunk.index, dtype="float64")
    for key, known in maps.items():
        if key not in chunk or known.empty:
            continue
        todo = out.isna() & chunk[key].notna()
        if todo.any():
            hashed = pd.Index(_key_hash(chunk.loc[todo, key]))
            out[todo] = known.reindex(hashed).to_numpy()
    return out


@dataclass
class _Reader:
    """What ``load_window`` keeps while it reads the hours one by one."""

    window: Window
    reference: Reference
    lookback_start: pd.Timestamp
    maps: dict[str, pd.Series]
    sample: UniformSample
    estimate_start: pd.Timestamp
    scores: UniformSample
    scored: int = 0
    synthetic: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    labelled: list[pd.DataFrame] = field(default_factory=list)

    @property
    def keep(self) -> list[str]:
        return [c for c in self.reference.columns if c != SCORE]

    def add(self, chunk: pd.DataFrame, hi: pd.Timestamp) -> None:
        """One hour of predictions, ending at ``hi``; synthetic ones only counted."""
        if TRAFFIC in chunk:
            synthetic = (chunk[TRAFFIC] == SYNTHETIC).to_numpy()
            inside = (chunk[inference_log.TIME] >= self.window.start).to_numpy()
            self.synthetic += int((synthetic & inside).sum())
            chunk = chunk[~synthetic]
        ours = (chunk[MODEL_VERSION].astype(str) == self.reference.model_version).to_numpy()
        if hi > self.window.start:
            self._add_live(chunk, ours)
        if hi > self.lookback_start and self.maps:
            self._add_labelled(chunk, ours)
        if hi > self.estimate_start:
            since = (chunk[inference_log.TIME] >= self.estimate_start).to_numpy()
            self.scores.add(chunk.loc[ours & since, [SCORE]])

    def _add_live(self, chunk: pd.DataFrame, ours: NDArray[np.bool_]) -> None:
        inside = (chunk[inference_log.TIME] >= self.window.start).to_numpy()
        part = chunk[inside]
        missing = [c for c in self.keep if c not in part.columns]
        if missing:
            raise KeyError(f"the inference log lacks the model's input columns {missing}")
        rows = part[self.keep].copy()
        rows[SCORE] = part[SCORE].where(ours[inside]).astype("float64")
        self.sample.add(rows)
        self.scored += int(ours[inside].sum())
        for version, n in part[MODEL_VERSION].astype(str).value_counts().items():
            self.versions[str(version)] = self.versions.get(str(version), 0) + int(n)

    def _add_labelled(self, chunk: pd.DataFrame, ours: NDArray[np.bool_]) -> None:
        mine = chunk[ours & (chunk[inference_log.TIME] >= self.lookback_start).to_numpy()]
        label = _join_labels(mine, self.maps)
        has = label.notna().to_numpy()
        if has.any():
            score = mine[SCORE].to_numpy("float64")[has]
            self.labelled.append(pd.DataFrame({SCORE: score, LABEL: label.to_numpy()[has]}))

    def data(self) -> WindowData:
        frame = self.sample.frame()
        if frame is None:
            frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in [*self.keep, SCORE]})
        labels = (
            pd.concat(self.labelled, ignore_index=True)
            if self.labelled
            else pd.DataFrame({SCORE: np.array([], "float64"), LABEL: np.array([], "float64")})
        )
        w, seen = self.window, self.sample.seen
        scores = self.scores.frame()
        return WindowData(
            w,
            seen,
            frame,
            self.scored,
            self.synthetic,
            self.versions,
            labels,
            self.lookback_start,
            np.zeros(0) if scores is None else scores[SCORE].to_numpy("float64"),
            self.estimate_start,
        )


def load_window(settings: Settings, window: Window, reference: Reference) -> WindowData:
    """Read ``window``, the performance and the estimation lookbacks from the inference log, an
    hour at a time."""
    cfg = settings.monitor
    lookback_start = window.end - timedelta(hours=cfg.performance.lookback_hours)
    estimate_start = window.end - timedelta(hours=cfg.estimation.lookback_hours)
    posted = inference_log.read_labels(settings, lookback_start, window.end + pd.Timedelta(1, "ns"))
    maps = _label_maps(posted)  # at or before the window's end
    sample = UniformSample(cfg.drift.max_rows, cfg.drift.seed)
    scores = UniformSample(cfg.estimation.max_rows, cfg.drift.seed)
    reader = _Reader(window, reference, lookback_start, maps, sample, estimate_start, scores)
    for lo, hi in _hours(min(window.start, lookback_start, estimate_start), window.end):
        chunk = inference_log.read_predictions(settings, lo, hi, labels=False, routes=cfg.routes)
        if not chunk.empty:
            reader.add(chunk, hi)
    return reader.data()
