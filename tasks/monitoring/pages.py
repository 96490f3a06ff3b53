"""The monitor's HTML: Evidently's report per window and one summary page over time.

Under ``storage.reports_uri/<monitor.reports_dir>/``::

    <window_id>.html          Evidently's report: per column, the drift test, its score and
                              threshold, and the reference vs window distributions (plots);
                              above it, realised vs estimated performance with their bands
    <window_id>.json          its entry in the reports index (``tasks.common.reports``: title, model
                              version, creation time, the headline numbers in ``meta``)
    <window_id>.numbers.json  the window's numbers (``WindowResult.as_dict()``), for tools
    index.html, index.json    summary: drift share, score drift and live ROC AUC over the last
                              ``monitor.summary_days`` days (inline SVG, no scripts, no network),
                              and a table of windows, latest first, with their decisions and
                              report links; and its index entry

Pages are self-contained (Evidently inlines its scripts), so the Airflow UI plugin lists and serves
them as files: with ``monitor.reports_dir: monitoring`` (the default) they are the UI's
``monitoring`` reports, at ``/airloop/reports/monitoring/<window_id>``.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.common import storage
from tasks.common.clock import now_iso, utc_timestamp
from tasks.common.reports import Report
from tasks.common.values import json_safe
from tasks.monitoring import store
from tasks.monitoring.charts import finite, svg_chart, svg_intervals
from tasks.monitoring.results import SUMMARY, WindowResult
from tasks.monitoring.retrain import FAILED, MISSING, text

if TYPE_CHECKING:
    import pandas as pd

    from config import Settings

INDEX = f"{SUMMARY}.html"


def reports_dir(settings: Settings) -> str:
    return storage.join(settings.storage.reports_uri, settings.monitor.reports_dir)


def report_uri(settings: Settings, window_id: str) -> str:
    return storage.join(reports_dir(settings), f"{window_id}.html")


def numbers_uri(settings: Settings, window_id: str) -> str:
    return storage.join(reports_dir(settings), f"{window_id}.numbers.json")


def _index_entry(settings: Settings, uri: str, title: str, model_version: str | None, **meta: Any) -> None:
    """The report's entry in the reports index the UI lists (``tasks.common.reports``), beside it."""
    name = uri.rsplit("/", 1)[-1].removesuffix(".html")
    entry = Report(
        kind=settings.monitor.reports_dir,
        name=name,
        title=title,
        created_at=now_iso(),
        model_version=model_version,
        meta=json_safe(meta),
    )
    text = json.dumps(entry.as_dict(), indent=2, default=str)
    storage.write_text(uri.removesuffix(".html") + ".json", text)


def _title(result: WindowResult) -> str:
    w, d = result.window, result.drift
    span = f"{w.start:%Y-%m-%d %H:%M} to {w.end:%Y-%m-%d %H:%M} UTC"
    if not d.judged:
        return f"Window {span}: not judged"
    found = []
    if d.data_drift:
        found.append(f"data drift ({len(d.drifted_columns)} of {len(d.tested)} columns)")
    if d.prediction_drift:
        found.append("score drift")
    if result.performance.is_degraded:
        found.append("performance degraded")
    return f"Window {span}: {', '.join(found) or 'no drift'}"


def write_report(settings: Settings, result: WindowResult, snapshot: Any) -> str:
    """Write the window's Evidently report (or, when nothing could be tested, a page that says
    why), its numbers as JSON and its entry in the reports index; returns the report's URI."""
    storage.configure(settings.storage.s3_endpoint_url)
    uri = report_uri(settings, result.window_id)
    section = performance_section(result)
    if snapshot is not None:
        page = _after_body_tag(snapshot.get_html_str(as_iframe=False), section)
    else:
        why = "; ".join(result.notes) or "nothing to test"
        body = f"<p>No drift report for this window: {html.escape(why)}</p>"
        page = _page(f"Window {result.window_id}", section + body)
    storage.write_text(uri, page)
    storage.write_text(numbers_uri(settings, result.window_id), json.dumps(result.as_dict(), indent=2))
    d = result.drift
    _index_entry(
        settings,
        uri,
        _title(result),
        result.model_version,
        model_name=result.model_name,
        window_id=result.window_id,
        start=result.start,
        end=result.end,
        rows=result.rows,
        drift_share=d.share,
        drifted_columns=d.drifted_columns,
        data_drift=d.data_drift,
        prediction_drift=d.prediction_drift,
        degraded=result.performance.is_degraded,
    )
    return uri


def _after_body_tag(page: str, block: str) -> str:
    """``block`` at the top of an HTML page's body (at its start when it has no body tag)."""
    at = page.find("<body")
    end = page.find(">", at) + 1 if at >= 0 else 0
    return page[:end] + block + page[end:]


def performance_section(result: WindowResult) -> str:
    """Realised performance (labels landed in the lookback) beside the estimate from the scores
    alone (CBPE, with its band), and the champion's hold-out by both measures: the window
    report's first picture."""
    perf, est = result.performance, result.estimate or {}
    live, base, bands, held = perf.live, perf.baseline, est.get("bands") or {}, est.get("holdout") or {}
    rows = {
        metric: {
            f"realised ({live.rows} labels)": (getattr(live, metric), None),
            f"estimated ({est.get('rows', 0)} scores)": (est.get(metric), bands.get(metric)),
            "hold-out": (getattr(base, metric), None),
            "hold-out, estimated": (held.get(metric), None),
        }
        for metric in ("roc_auc", "precision", "recall")
    }
    span = f"{est['hours']:g} h" if est.get("hours") else "the window"
    if not est:
        trust = "No estimate (turned off, or too few scored rows)."
    elif est.get("trusted"):
        trust = "The estimate is trusted."
    else:
        trust = "The estimate is <b>not trusted</b>: " + html.escape("; ".join(est.get("notes") or []))
    return (
        "<div style='font-family: system-ui, sans-serif; margin: 16px 24px'>"
        "<h2 style='font-size: 16px'>Performance: realised and estimated</h2>"
        + svg_intervals(f"Realised (labels since {perf.start[:16]}) vs estimated (scores of {span})", rows)
        + f"<p style='font-size: 13px'>Estimated: expected from the calibrated scores before labels "
        f"arrive (CBPE); the bar is its {est.get('confidence', 0.95):.0%} band. {trust}</p></div>"
    )


# --- summary page ------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
.retrain { color: #b00020; font-weight: 600; }
.blocked { color: #a15c00; }
svg { background: #fafafa; border: 1px solid #eee; margin: 4px 0 16px; }
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _cell(v: Any, digits: int = 3) -> str:
    return f"{float(v):.{digits}f}" if finite(v) else "-"


def _decision_cell(row: pd.Series | None) -> str:
    if row is None:
        return "<td class='text'>-</td>"
    reason = html.escape(str(row["reason"]))
    if bool(row["retrain"]):
        retry = " (retry)" if text(row.get("retry_of")) else ""
        title = html.escape(str(row["detail"]))
        return f"<td class='text retrain' title='{title}'>retrain: {reason}{retry}</td>"
    if row.get("blocked_by"):
        label = f"{reason} (blocked: {html.escape(str(row['blocked_by']))})"
        return f"<td class='text blocked' title='{html.escape(str(row['detail']))}'>{label}</td>"
    return f"<td class='text' title='{html.escape(str(row['detail']))}'>{reason}</td>"


def _charts(settings: Settings, w: pd.DataFrame) -> list[str]:
    """Drift share, score drift and live ROC AUC over the windows (oldest first)."""
    cfg = settings.monitor
    times = list(w["end"])
    known = w["prediction_threshold"].dropna()
    return [
        svg_chart(
            "Share of drifted input columns",
            times,
            {"drift share": list(w["drift_share"])},
            lines={"threshold": cfg.drift.share_threshold},
        ),
        svg_chart(
            f"Prediction drift ({cfg.drift.prediction_method} on the score)",
            times,
            {"score drift": list(w["prediction_score"])},
            lines={"threshold": float(known.iloc[-1])} if len(known) else None,
        ),
        svg_chart(
            f"Live ROC AUC (last {cfg.performance.lookback_hours:g} h of labels), estimated from "
            f"the scores (last {cfg.estimation.lookback_hours:g} h), and hold-out",
            times,
            {
                "live": list(w["roc_auc"]),
                "estimated": _column(w, "estimated_roc_auc"),
                "hold-out": list(w["baseline_roc_auc"]),
            },
        ),
    ]


def _column(w: pd.DataFrame, name: str) -> list[Any]:
    """A column of the windows, ``None`` for rows stored before it existed."""
    return list(w[name]) if name in w else [None] * len(w)


def _estimated(r: pd.Series, metric: str, digits: int) -> str:
    """An estimated metric (CBPE) for the table; ``?`` marks an estimate that is not trusted."""
    value = r.get(f"estimated_{metric}")
    if not finite(value):
        return "-"
    return _cell(value, digits) + ("" if bool(r.get("estimate_trusted", False)) else "?")


_TABLE_HEAD = (
    "<tr><th>window (report)</th><th>model</th><th>rows</th><th>drift share</th><th>drifted columns</th>"
    "<th>score drift</th><th>labelled</th><th>ROC AUC live / estimated / hold-out</th>"
    "<th>recall live / estimated / hold-out</th>"
    "<th>decision</th></tr>"
)


def _table(w: pd.DataFrame, decisions: pd.DataFrame) -> str:
    """One row per window, latest first, with its decision and a link to its report."""
    by_window = {} if decisions.empty else {r["window_id"]: r for _, r in decisions.iterrows()}
    rows = []
    for _, r in w[::-1].iterrows():
        # relative to the summary's own address (/airloop/reports/<kind>/index): the report's page
        link = f"<a href='{html.escape(r['window_id'])}'>{html.escape(r['window_id'])}</a>"
        drifted = ", ".join(json.loads(r["drifted_columns"] or "[]"))
        rows.append(
            "<tr>"
            f"<td>{link}</td><td class='text'>v{html.escape(str(r['model_version']))}</td>"
            f"<td>{int(r['rows'])}</td><td>{_cell(r['drift_share'], 2)}</td>"
            f"<td class='text'>{html.escape(drifted) or '-'}</td><td>{_cell(r['prediction_score'])}</td>"
            f"<td>{int(r['labelled_rows'])}</td>"
            f"<td>{_cell(r['roc_auc'])} / {_estimated(r, 'roc_auc', 3)} / {_cell(r['baseline_roc_auc'])}</td>"
            f"<td>{_cell(r['recall'], 2)} / {_estimated(r, 'recall', 2)} / "
            f"{_cell(r['baseline_recall'], 2)}</td>"
            f"{_decision_cell(by_window.get(r['window_id']))}</tr>"
        )
    return f"<table>{_TABLE_HEAD}{''.join(rows)}</table>"


def _last_retrain(settings: Settings, decisions: pd.DataFrame) -> str:
    """A line on the last retrain the monitor triggered, from the latest decision: where it
    failed, the loop is stalled on it and the page says so, with when the next retry may come."""
    if decisions.empty or "last_retrain_state" not in decisions:
        return ""
    latest = decisions.sort_values("decided_at", kind="stable").iloc[-1]
    state, run_id = text(latest.get("last_retrain_state")), text(latest.get("last_retrain_run_id"))
    if run_id is None:
        return ""
    if bool(latest["retrain"]) and text(latest.get("retry_of")):
        line = f"The last retrain ({run_id}) failed; window {latest['window_id']} retried it."
        return f"<p class='blocked'>{html.escape(line)}</p>"
    if state not in (FAILED, MISSING):
        return (
            f"<p>Last retrain: train run {html.escape(run_id)}: {html.escape(state or 'state unknown')}.</p>"
        )
    hours = min(settings.monitor.decision.failed_retry_hours, settings.monitor.decision.cooldown_hours)
    what = "was never created" if state == MISSING else "failed"
    line = (
        f"The last retrain failed: train run {run_id} {what}. The next window that calls for a retrain "
        f"retries it once {hours:g} h have passed since it was decided (monitor.decision.failed_retry_hours)."
    )
    return f"<p class='retrain'>{html.escape(line)}</p>"


def render_summary(settings: Settings, windows: pd.DataFrame, decisions: pd.DataFrame) -> str:
    """The summary page for these metrics and decision rows (``store.history`` / ``decisions``)."""
    title = f"Monitoring: {settings.mlflow.registered_model}"
    if windows.empty:
        return _page(title, "<p>No window monitored yet.</p>" + _last_retrain(settings, decisions))
    w = windows.sort_values("end")
    cfg = settings.monitor
    note = (
        f"<p>Thresholds: drift share {cfg.drift.share_threshold:g}, score {cfg.drift.prediction_method} "
        f"{cfg.drift.prediction_threshold}, ROC AUC tolerance {cfg.performance.roc_auc_tolerance}, "
        f"cooldown {cfg.decision.cooldown_hours:g} h. Updated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>"
        "<p><i>Estimated</i>: performance expected from the champion's calibrated scores of the last "
        f"{cfg.estimation.lookback_hours:g} h before their labels arrive (CBPE, "
        "tasks.monitoring.estimation); <b>?</b> marks an estimate not to trust "
        "(scores not calibrated on the hold-out, or inputs outside the training data's support).</p>"
    )
    return _page(
        title,
        note + _last_retrain(settings, decisions) + "".join(_charts(settings, w)) + _table(w, decisions),
    )


def write_summary(settings: Settings, now: Any = None) -> str:
    """Rewrite ``index.html`` from the store's last ``monitor.summary_days`` days; returns its URI."""
    storage.configure(settings.storage.s3_endpoint_url)
    end = utc_timestamp(now if now is not None else datetime.now(UTC))
    since = end - timedelta(days=settings.monitor.summary_days)
    windows, decisions = store.history(settings, since=since), store.decisions(settings, since=since)
    page = render_summary(settings, windows, decisions)
    uri = storage.write_text(storage.join(reports_dir(settings), INDEX), page)
    days = f"{settings.monitor.summary_days:g}"
    _index_entry(settings, uri, f"Monitoring summary (last {days} days)", None, windows=len(windows))
    return uri
