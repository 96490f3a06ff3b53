"""One monitored window: read it, measure it, report it, store it.

``run_window(settings, Window(start, end))`` is what the monitor DAG's drift task runs
(``monitor_sensed`` takes the sensor's window as it comes from XCom):

1. ``reading.load_window`` reads the window's live predictions (a bounded uniform sample) and
   the champion's labelled predictions of the performance lookback from the inference log;
2. ``analyze`` computes drift (``drift.compute``) and live performance (``performance``);
3. the Evidently report and the summary page are written (``pages``) and the metrics row is
   stored (``store.record_window``).

Users run it through ``python -m tasks.monitoring.cli`` (``airloop monitor``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tasks.common import storage
from tasks.common.clock import now_iso
from tasks.monitoring import drift, estimation, pages, performance, store
from tasks.monitoring.reading import WindowData, load_window
from tasks.monitoring.reference import Reference, champion_reference
from tasks.monitoring.results import LABEL, SCORE, DriftResult, Window, WindowResult
from tasks.monitoring.sensing import SensedWindow

if TYPE_CHECKING:
    from config import Settings


def _other_versions(data: WindowData, reference: Reference) -> str | None:
    """A note when live predictions of the window came from versions other than the reference's."""
    others = {v: n for v, n in data.versions.items() if v != reference.model_version}
    if not others:
        return None
    return (
        f"{sum(others.values())} of {data.rows} live predictions came from other versions "
        f"({', '.join(f'v{v}: {n}' for v, n in sorted(others.items()))}): in data drift, not in "
        "prediction drift or performance"
    )


def analyze(
    settings: Settings,
    data: WindowData,
    reference: Reference,
    *,
    drifted: tuple[DriftResult, Any] | None = None,
) -> tuple[WindowResult, Any]:
    """Drift, live and estimated performance of a loaded window; returns the result and
    Evidently's snapshot. ``drifted``: this window's ``drift.compute`` against ``reference``,
    already done (the backtest computes it once for every policy that shares the window)."""
    started = time.perf_counter()
    found, snapshot = drifted or drift.compute(settings, data.sample, reference, rows=data.rows)
    found = replace(found, share_threshold=settings.monitor.drift.share_threshold)
    threshold = performance.threshold_for(settings)
    estimated = estimation.estimate(settings, data.scores, data.sample, reference, threshold)
    live = performance.scores(data.labelled[LABEL], data.labelled[SCORE], threshold)
    perf = performance.compare(
        settings,
        live,
        reference.baseline(threshold),
        start=data.lookback_start.isoformat(),
        end=data.window.end.isoformat(),
    )
    synthetic = (
        f"{data.synthetic_rows} synthetic predictions (benchmarks, load tests) left out"
        if data.synthetic_rows
        else ""
    )
    untrusted = "estimate not trusted: " + "; ".join(estimated.notes) if estimated and estimated.notes else ""
    notes = [n for n in (found.note, perf.note, _other_versions(data, reference), synthetic, untrusted) if n]
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
        drift=found,
        performance=perf,
        computed_at=now_iso(),
        notes=notes,
        estimate=estimated.as_dict() if estimated else None,
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
    """Load, analyze, report and store one window.

    ``reference`` defaults to the registered champion's (``reference.champion_reference``, which
    raises ``NoChampion``, a ``Skip``, when there is none).
    """
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


def monitor_sensed(settings: Settings, sensed: dict[str, Any]) -> dict[str, Any]:
    """The monitor DAG's drift task: the window the sensor returned (``SensedWindow.as_dict()``),
    run; its result as XCom gets it (``WindowResult.as_dict()``)."""
    return run_window(settings, SensedWindow.from_dict(sensed).window).as_dict()
