"""The monitor's HTML: Evidently's report per window and one summary page over time.

Under ``storage.reports_uri/<monitor.reports_dir>/``::

    <window_id>.html          Evidently's report: per column, the drift test, its score and
                              threshold, and the reference vs window distributions (plots)
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
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.common import storage

if TYPE_CHECKING:
    import pandas as pd

    from config import Settings
    from tasks.monitoring.window import WindowResult

INDEX = "index.html"


def reports_dir(settings: Settings) -> str:
    return storage.join(settings.storage.reports_uri, settings.monitor.reports_dir)


def report_uri(settings: Settings, window_id: str) -> str:
    return storage.join(reports_dir(settings), f"{window_id}.html")


def numbers_uri(settings: Settings, window_id: str) -> str:
    return storage.join(reports_dir(settings), f"{window_id}.numbers.json")


def _index_entry(settings: Settings, uri: str, title: str, model_version: str | None, **meta: Any) -> None:
    """The report's entry in the reports index the UI lists (``tasks.common.reports``), beside it."""
    from tasks.common.reports import Report
    from tasks.monitoring.window import _plain

    name = uri.rsplit("/", 1)[-1].removesuffix(".html")
    entry = Report(
        kind=settings.monitor.reports_dir,
        name=name,
        title=title,
        created_at=datetime.now(UTC).isoformat(),
        model_version=model_version,
        meta=_plain(meta),
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
    if snapshot is not None:
        page = snapshot.get_html_str(as_iframe=False)
    else:
        why = "; ".join(result.notes) or "nothing to test"
        body = f"<p>No drift report for this window: {html.escape(why)}</p>"
        page = _page(f"Window {result.window_id}", body)
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


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def svg_chart(
    title: str,
    times: list[Any],
    series: dict[str, list[Any]],
    *,
    lines: dict[str, float] | None = None,
    width: int = 760,
    height: int = 170,
) -> str:
    """A small time-series chart as inline SVG: one polyline and dots per series, dashed
    horizontal lines for thresholds, the time range and value range on the axes."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    pad_l, pad_r, pad_t, pad_b = 48, 12, 22, 22
    xs = [t.timestamp() if hasattr(t, "timestamp") else float(t) for t in times]
    values = [float(v) for vs in series.values() for v in vs if _finite(v)] + list((lines or {}).values())
    head = f"<text x='{pad_l}' y='15' font-size='12' font-weight='600'>{html.escape(title)}</text>"
    if not xs or not values:
        empty = f"<text x='{pad_l}' y='60' font-size='12'>no data</text>"
        return f"<svg width='{width}' height='{height}'>{head}{empty}</svg>"
    lo, hi = min(0.0, *values), max(values)
    hi = hi if hi > lo else lo + 1.0
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1.0

    def px(x: float) -> float:
        return pad_l + (x - x0) / span * (width - pad_l - pad_r)

    def py(y: float) -> float:
        return height - pad_b - (y - lo) / (hi - lo) * (height - pad_t - pad_b)

    parts = [head]
    parts.append(
        f"<text x='4' y='{py(hi) + 4:.1f}' font-size='10'>{hi:.3g}</text>"
        f"<text x='4' y='{py(lo) + 4:.1f}' font-size='10'>{lo:.3g}</text>"
    )
    fmt = "%m-%d %H:%M"
    first, last = datetime.fromtimestamp(x0, UTC), datetime.fromtimestamp(x1, UTC)
    parts.append(
        f"<text x='{pad_l}' y='{height - 5}' font-size='10'>{first:{fmt}}</text>"
        f"<text x='{width - pad_r}' y='{height - 5}' font-size='10' text-anchor='end'>{last:{fmt}} UTC</text>"
    )
    for name, value in (lines or {}).items():
        y = py(value)
        parts.append(
            f"<line x1='{pad_l}' x2='{width - pad_r}' y1='{y:.1f}' y2='{y:.1f}' "
            "stroke='#888' stroke-dasharray='4 3'/>"
            f"<text x='{width - pad_r}' y='{y - 3:.1f}' font-size='10' text-anchor='end' fill='#666'>"
            f"{html.escape(name)} {value:g}</text>"
        )
    for i, (name, vs) in enumerate(series.items()):
        color = colors[i % len(colors)]
        pts = [(px(x), py(float(v))) for x, v in zip(xs, vs, strict=True) if _finite(v)]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            parts.append(f"<polyline points='{path}' fill='none' stroke='{color}' stroke-width='1.5'/>")
        parts += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5' fill='{color}'/>" for x, y in pts]
        legend_x = pad_l + 200 + 140 * i
        parts.append(f"<text x='{legend_x}' y='15' font-size='11' fill='{color}'>{html.escape(name)}</text>")
    return f"<svg width='{width}' height='{height}' role='img'>{''.join(parts)}</svg>"


def _cell(v: Any, digits: int = 3) -> str:
    return f"{float(v):.{digits}f}" if _finite(v) else "-"


def _decision_cell(row: pd.Series | None) -> str:
    if row is None:
        return "<td class='text'>-</td>"
    reason = html.escape(str(row["reason"]))
    if bool(row["retrain"]):
        return f"<td class='text retrain' title='{html.escape(str(row['detail']))}'>retrain: {reason}</td>"
    if row.get("blocked_by"):
        label = f"{reason} (blocked: {html.escape(str(row['blocked_by']))})"
        return f"<td class='text blocked' title='{html.escape(str(row['detail']))}'>{label}</td>"
    return f"<td class='text' title='{html.escape(str(row['detail']))}'>{reason}</td>"


def render_summary(settings: Settings, windows: pd.DataFrame, decisions: pd.DataFrame) -> str:
    """The summary page for these metrics and decision rows (``store.history`` / ``decisions``)."""
    title = f"Monitoring: {settings.mlflow.registered_model}"
    if windows.empty:
        return _page(title, "<p>No window monitored yet.</p>")
    w = windows.sort_values("end")
    times = list(w["end"])
    cfg = settings.monitor
    charts = [
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
            lines={"threshold": float(w["prediction_threshold"].dropna().iloc[-1])}
            if w["prediction_threshold"].notna().any()
            else None,
        ),
        svg_chart(
            f"Live ROC AUC (last {cfg.performance.lookback_hours:g} h of labels) vs hold-out",
            times,
            {"live": list(w["roc_auc"]), "hold-out": list(w["baseline_roc_auc"])},
        ),
    ]
    by_window = {} if decisions.empty else {r["window_id"]: r for _, r in decisions.iterrows()}
    rows = []
    for _, r in w[::-1].iterrows():
        link = f"<a href='{html.escape(r['window_id'])}.html'>{html.escape(r['window_id'])}</a>"
        drifted = ", ".join(json.loads(r["drifted_columns"] or "[]"))
        rows.append(
            "<tr>"
            f"<td>{link}</td><td class='text'>v{html.escape(str(r['model_version']))}</td>"
            f"<td>{int(r['rows'])}</td><td>{_cell(r['drift_share'], 2)}</td>"
            f"<td class='text'>{html.escape(drifted) or '-'}</td><td>{_cell(r['prediction_score'])}</td>"
            f"<td>{int(r['labelled_rows'])}</td>"
            f"<td>{_cell(r['roc_auc'])} / {_cell(r['baseline_roc_auc'])}</td>"
            f"<td>{_cell(r['recall'], 2)} / {_cell(r['baseline_recall'], 2)}</td>"
            f"{_decision_cell(by_window.get(r['window_id']))}</tr>"
        )
    head = (
        "<tr><th>window (report)</th><th>model</th><th>rows</th><th>drift share</th><th>drifted columns</th>"
        "<th>score drift</th><th>labelled</th><th>ROC AUC live / hold-out</th><th>recall live / hold-out</th>"
        "<th>decision</th></tr>"
    )
    note = (
        f"<p>Thresholds: drift share {cfg.drift.share_threshold:g}, score {cfg.drift.prediction_method} "
        f"{cfg.drift.prediction_threshold}, ROC AUC tolerance {cfg.performance.roc_auc_tolerance}, "
        f"cooldown {cfg.decision.cooldown_hours:g} h. Updated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>"
    )
    return _page(title, note + "".join(charts) + f"<table>{head}{''.join(rows)}</table>")


def write_summary(settings: Settings, now: Any = None) -> str:
    """Rewrite ``index.html`` from the store's last ``monitor.summary_days`` days; returns its URI."""
    import pandas as pd

    from tasks.monitoring import store

    storage.configure(settings.storage.s3_endpoint_url)
    end = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    end = end.tz_localize("UTC") if end.tzinfo is None else end
    since = end - timedelta(days=settings.monitor.summary_days)
    windows, decisions = store.history(settings, since=since), store.decisions(settings, since=since)
    page = render_summary(settings, windows, decisions)
    uri = storage.write_text(storage.join(reports_dir(settings), INDEX), page)
    days = f"{settings.monitor.summary_days:g}"
    _index_entry(settings, uri, f"Monitoring summary (last {days} days)", None, windows=len(windows))
    return uri
