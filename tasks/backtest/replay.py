"""The replay: every policy's monitor, hour by hour, through the monitor's own code.

For each replayed hour and each policy, in simulated time:

1. a retrain that became ready (``retrain_hours`` after its decision) replaces the champion when
   it passed the gate;
2. the hour is the window ``[h, h+1)``: its transactions scored by the policy's champion, and the
   champion's predictions of the performance lookback whose labels had landed by the window's end,
   and its scores of the estimation lookback (``reading.WindowData``, as ``reading.load_window``
   builds it from the inference log);
3. ``window.analyze`` measures drift, live and estimated performance, exactly as the monitor
   DAG's drift task does; drift is computed once per (window, champion, drift settings) and
   shared by the policies that agree on them (``drift.compute(report=False)``: Evidently's own
   stat tests without the HTML report, the same verdicts);
4. ``decision.decide`` decides with the policy's windows before it, its last retrain (running
   until ready, then ``success``) and simulated ``now``, as ``decide_and_record`` calls it;
   a retrain trains and gates a model (``models.train``) on the labels landed by then.

Scores are cached per (hour, model), computed a day at a time; a window's ``window.analyze``
once per (champion, hours it served, monitor settings) and its drift once per (champion, drift
settings); models per (data range, champion). Policies that have not diverged cost one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tasks.backtest import history as hist
from tasks.backtest.models import Model, Retrained, gate_settings, train
from tasks.monitoring import decision, drift, performance, window
from tasks.monitoring.reading import WindowData
from tasks.monitoring.results import LABEL, SCORE, Window, WindowResult
from tasks.monitoring.retrain import LastRetrain, run_id_for
from tasks.monitoring.sampling import uniform_rows
from tasks.training.dataset import time_range
from tasks.training.families.base import model_input

if TYPE_CHECKING:
    from config import Settings
    from tasks.backtest.spec import Policy, Spec


SCORE_BATCH_HOURS = 24
"""A model scores this many hours at once (one call costs about as much as one hour's)."""


@dataclass
class Shared:
    """What every policy reads and nothing changes: the history and the caches.

    Scores are kept per (hour, model) for the whole replay; what one window computes (its model
    input, drift, ``window.analyze`` result, quality) only for the hour being replayed, so memory
    does not grow with the windows. ``computed`` counts what was computed, cache hits aside."""

    history: hist.History
    scores: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    hourly: dict[str, dict[Any, Any]] = field(default_factory=dict)
    """This hour's ``sample``, ``drift``, ``result`` and ``quality`` caches."""
    hour: int = -1
    models: dict[tuple[int, int, str], Retrained] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)

    def timed(self, what: str, started: float) -> None:
        self.seconds[what] = self.seconds.get(what, 0.0) + time.perf_counter() - started

    def cache(self, hour: int, what: str) -> dict[Any, Any]:
        """This hour's cache of ``what`` (a new hour forgets the last one's)."""
        if hour != self.hour:
            self.hourly, self.hour = {}, hour
        return self.hourly.setdefault(what, {})

    def count(self, what: str) -> None:
        self.computed[what] = self.computed.get(what, 0) + 1

    def score(self, hour: int, model: Model) -> np.ndarray:
        """``model``'s scores of ``hour``; a first call scores the next ``SCORE_BATCH_HOURS``
        hours too, in one call (a row's score does not depend on the rows beside it)."""
        key = (hour, model.id)
        if key not in self.scores:
            started = time.perf_counter()
            h = self.history
            last = min(hour + SCORE_BATCH_HOURS, len(h.hours))
            scored = model.score(h.frame(hour, last))
            ends = np.cumsum([len(h.hours[k]) for k in range(hour, last)])
            for k, part in zip(range(hour, last), np.split(scored, ends[:-1]), strict=True):
                self.scores.setdefault((k, model.id), part)
                self.count("scores")
            self.timed("scoring", started)
        return self.scores[key]

    def sample(self, hour: int, model: Model) -> pd.DataFrame:
        """The hour's live predictions as the monitor reads them: model input and ``score``."""
        cache = self.cache(hour, "sample")
        if model.id not in cache:
            frame = self.history.hours[hour]
            scores = self.score(hour, model)
            cache[model.id] = model_input(frame, model.model.spec).assign(**{SCORE: scores})
        out: pd.DataFrame = cache[model.id]
        return out


@dataclass
class PolicyRun:
    """One policy's monitor as it goes: its champion, its windows, decisions and retrains."""

    policy: Policy
    settings: Settings
    champion: Model
    served: dict[int, str] = field(default_factory=dict)
    """Hour -> the model that served it."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """The store's window rows (``WindowResult.row()``): the history ``decide`` reads."""
    windows: list[dict[str, Any]] = field(default_factory=list)
    retrains: list[dict[str, Any]] = field(default_factory=list)
    pending: tuple[int, Retrained, dict[str, Any]] | None = None
    """A retrain under way: the hour it is ready, what it produced, its record."""
    last: LastRetrain | None = None
    drift_key: str = field(init=False)
    """The drift settings that change ``drift.compute``'s result (the share threshold does not)."""
    analysis_key: str = field(init=False)
    """The monitor settings that change ``window.analyze``'s result (the decision's do not)."""

    def __post_init__(self) -> None:
        monitor = self.settings.monitor
        self.drift_key = monitor.drift.model_dump_json(exclude={"share_threshold"})
        self.analysis_key = monitor.model_dump_json(exclude={"decision"})


def served_hours(run: PolicyRun, hour: int, lookback_hours: float) -> tuple[int, ...]:
    """The hours of a lookback ending with ``hour`` that ``run``'s champion served."""
    first = max(0, hour - int(np.ceil(lookback_hours)))
    return tuple(k for k in range(first, hour + 1) if run.served.get(k) == run.champion.id)


def window_data(
    shared: Shared, run: PolicyRun, hour: int, served: tuple[int, ...], estimated: tuple[int, ...]
) -> WindowData:
    """The window ``[hour, hour+1)`` as ``reading.load_window`` would read it for ``run``: its
    predictions, those of the ``served`` performance-lookback hours whose labels had landed by
    its end, and the scores of the ``estimated`` estimation-lookback hours, labelled or not."""
    h, monitor, model = shared.history, run.settings.monitor, run.champion
    win = Window.of(h.at(hour), h.at(hour + 1))
    sample = shared.sample(hour, model)
    lookback_start = win.end - timedelta(hours=monitor.performance.lookback_hours)
    scores, labels = [], []
    for k in served:
        past = h.arrays[k]
        keep = (past.labeled_ns <= win.end.value) & (past.at_ns >= lookback_start.value)
        scores.append(shared.score(k, model)[keep])
        labels.append(past.label[keep])
    labelled = pd.DataFrame(
        {SCORE: np.concatenate([np.zeros(0), *scores]), LABEL: np.concatenate([np.zeros(0), *labels])}
    )
    estimate_start = win.end - timedelta(hours=monitor.estimation.lookback_hours)
    recent = np.concatenate(
        [np.zeros(0)] + [shared.score(k, model)[h.arrays[k].at_ns >= estimate_start.value] for k in estimated]
    )
    if len(recent) > monitor.estimation.max_rows:  # as the reader's uniform sample bounds it
        recent = recent[uniform_rows(len(recent), monitor.estimation.max_rows, monitor.drift.seed)]
    n = len(sample)
    return WindowData(win, n, sample, n, 0, {model.id: n}, labelled, lookback_start, recent, estimate_start)


def analyze(shared: Shared, run: PolicyRun, hour: int) -> WindowResult:
    """The window's result through ``window.analyze``, computed once per (hour, champion, hours
    it served, monitor settings but the decision's) and shared by the policies that agree on
    them; its drift once per (hour, champion, drift settings)."""
    monitor = run.settings.monitor
    served = served_hours(run, hour, monitor.performance.lookback_hours)
    estimated = served_hours(run, hour, monitor.estimation.lookback_hours)
    results = shared.cache(hour, "result")
    key = (run.champion.id, served, estimated, run.analysis_key)
    if key in results:
        out: WindowResult = results[key]
        return out
    started = time.perf_counter()
    data = window_data(shared, run, hour, served, estimated)
    shared.timed("window", started)
    drifts = shared.cache(hour, "drift")
    drift_key = (run.champion.id, run.drift_key)
    if drift_key not in drifts:
        started = time.perf_counter()
        found, _ = drift.compute(
            run.settings, data.sample, run.champion.reference, rows=data.rows, report=False
        )
        drifts[drift_key] = found
        shared.count("drift")
        shared.timed("drift", started)
    started = time.perf_counter()
    result, _ = window.analyze(run.settings, data, run.champion.reference, drifted=(drifts[drift_key], None))
    shared.count("analyze")
    shared.timed("analyze", started)
    results[key] = result
    return result


def last_retrain(run: PolicyRun, end: pd.Timestamp) -> LastRetrain | None:
    """The policy's last retrain as ``decide_and_record`` finds it: within a day and a cooldown."""
    if run.last is None:
        return None
    since = end - timedelta(hours=run.settings.monitor.decision.cooldown_hours, days=1)
    return run.last if run.last.decided_at >= since else None


def decide(run: PolicyRun, result: WindowResult) -> decision.Decision:
    """``decision.decide`` on the window, as the monitor DAG's ``decide`` task calls it. The
    history is the policy's latest ``confirm_windows`` rows: ``decide`` reads no further back."""
    end = pd.Timestamp(result.end)
    confirm = run.settings.monitor.decision.confirm_windows
    history = pd.DataFrame(run.rows[-confirm:]) if run.rows else None
    last = last_retrain(run, end)
    return decision.decide(
        run.settings,
        result,
        history=history,
        last_retrain_at=last.decided_at if last else None,
        retrain_running=run.pending is not None,
        now=end,
        last_retrain=last,
    )


def _land(run: PolicyRun, hour: int, deployed_at: pd.Timestamp) -> None:
    """A retrain that is ready: its champion serves from ``hour`` when it passed the gate."""
    if run.pending is None or run.pending[0] > hour:
        return
    _, made, record = run.pending
    record["passed"] = made.passed
    if made.model is not None:
        run.champion = made.model
        record["deployed_at"] = deployed_at.isoformat()
    if run.last is not None:
        run.last = LastRetrain(run.last.run_id, run.last.decided_at, "success")
    run.pending = None


def _first_trained(shared: Shared, spec: Spec, run: PolicyRun, made: decision.Decision) -> int:
    """The first hour a retrain trains on: ``train_days`` before the decision, or less where the
    train DAG's range is shorter (``dataset.time_range``: a performance-triggered retrain's)."""
    h = shared.history
    first = pd.Timestamp(made.end) - pd.Timedelta(hours=spec.train_hours)
    start = time_range(run.settings, made.conf())["start"]
    if start is not None:
        first = max(first, pd.Timestamp(start))
    return int(np.ceil((first - h.at(0)) / pd.Timedelta(hours=1)))


def _retrain(shared: Shared, spec: Spec, run: PolicyRun, hour: int, made: decision.Decision) -> None:
    """Train and gate a model on the labels landed by the decision; ready ``retrain_hours`` later."""
    end = pd.Timestamp(made.end)
    first = _first_trained(shared, spec, run, made)
    key = (first, hour + 1, run.champion.id)
    if key not in shared.models:
        started = time.perf_counter()
        frame = shared.history.labelled_by(first, hour + 1, end)
        settings = gate_settings(run.settings, spec.segment_gate)
        shared.models[key] = train(settings, frame, f"h{hour + 1}", run.champion)
        shared.timed("training", started)
    retrained = shared.models[key]
    record = {
        "window_id": made.window_id,
        "decided_at": made.end,
        "reason": made.reason,
        "triggers": made.triggers,
        "model": retrained.model.id if retrained.model else None,
        "candidates": retrained.candidates,
        "deployed_at": None,
    }
    run.retrains.append(record)
    run.pending = (hour + 1 + spec.retrain_hours, retrained, record)
    run.last = LastRetrain(run_id_for(made.window_id), end, "running")


Observe = Callable[["PolicyRun", WindowResult, decision.Decision], None]
"""Called with every window and its decision before the decision is acted on (tests compare it
with what the monitor DAG's own decide task would have decided)."""


def step(shared: Shared, spec: Spec, run: PolicyRun, hour: int, observe: Observe | None = None) -> None:
    """One replayed hour of one policy."""
    _land(run, hour, shared.history.at(hour))
    run.served[hour] = run.champion.id
    result = analyze(shared, run, hour)
    started = time.perf_counter()
    made = decide(run, result)
    shared.timed("decide", started)
    if observe is not None:
        observe(run, result, made)
    run.rows.append(result.row())
    run.windows.append(_record(result, made, run) | _quality(shared, spec, run, hour))
    if made.retrain:
        _retrain(shared, spec, run, hour, made)


def _record(result: WindowResult, made: decision.Decision, run: PolicyRun) -> dict[str, Any]:
    """What the report keeps of one window: the monitor's numbers and its decision."""
    est = result.estimate or {}
    perf = result.performance
    return {
        "end": result.end,
        "model": run.champion.id,
        "drift_share": result.drift.share,
        "prediction_score": result.drift.prediction.score if result.drift.prediction else None,
        "live_roc_auc": perf.live.roc_auc if perf.judged else None,
        "live_recall": perf.live.recall if perf.judged else None,
        "holdout_roc_auc": perf.baseline.roc_auc,
        "estimated_roc_auc": est.get("roc_auc"),
        "estimated_recall": est.get("recall"),
        "estimate_band_roc_auc": (est.get("bands") or {}).get("roc_auc"),
        "estimate_trusted": bool(est.get("trusted", False)),
        "reason": made.reason,
        "retrain": made.retrain,
        "blocked_by": made.blocked_by,
    }


def _quality(shared: Shared, spec: Spec, run: PolicyRun, hour: int) -> dict[str, Any]:
    """The quality curve: ROC AUC and recall of what the policy served over the last
    ``quality_hours``, every label known (what the business lost, not what the monitor saw);
    once per hour for the policies that served the same models."""
    first = max(shared.history.first_replayed, hour + 1 - spec.quality_hours)
    served = tuple((k, run.served[k]) for k in range(first, hour + 1))
    cache = shared.cache(hour, "quality")
    if served not in cache:
        started = time.perf_counter()
        y = np.concatenate([shared.history.arrays[k].label for k, _ in served])
        p = np.concatenate([shared.scores[key] for key in served])
        s = performance.scores(y, p, performance.threshold_for(run.settings))
        cache[served] = {"roc_auc": s.roc_auc, "recall": s.recall}
        shared.timed("quality", started)
    return dict(cache[served])
