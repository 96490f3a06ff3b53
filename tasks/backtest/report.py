"""The backtest's report: one self-contained HTML page (inline SVG, no scripts) and its JSON.

Per policy: the true ROC AUC and recall of what it served over time (every label known, over the
spec's ``quality_hours``) with a marker at each retrain that reached serving, the ROC AUC its
monitor estimated from scores alone, and a table of the headline numbers side by side (retrains,
time from the drift's onset to detection and to the retrained champion, area lost under the
quality curve), and what they compare with: the quality a model trained on the new traffic alone
reaches (``yardsticks``' reference, also drawn on each quality chart) and the first champion's,
never retrained. Published as a ``backtests`` report (``tasks.common.reports``), so the Airflow UI's
airloop view lists it; ``write`` also writes both files where the caller asks.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from tasks.common import reports, storage
from tasks.monitoring.charts import finite, svg_chart

if TYPE_CHECKING:
    from config import Settings

KIND = "backtests"
MAX_POINTS = 600
"""Points per chart series (longer replays are thinned evenly; the JSON keeps every window)."""


def _thin(frame: pd.DataFrame) -> pd.DataFrame:
    step = max(1, -(-len(frame) // MAX_POINTS))
    return frame.iloc[::step]


def _marks(result: dict[str, Any], policy: str) -> list[Any]:
    return [pd.Timestamp(r["deployed_at"]) for r in result["retrains"][policy] if r.get("deployed_at")]


def charts(result: dict[str, Any], policy: str, title: str | None = None) -> list[str]:
    """A policy's quality over time, retrains marked, and its estimate beside the truth
    (``title``: the first chart's, when not the page's)."""
    w = pd.DataFrame(result["windows"][policy])
    reference = result.get("reference")
    quality = {"ROC AUC": "roc_auc", "recall": "recall"}
    if reference:  # what a retrain on the new traffic alone reaches (``yardsticks``)
        w["reference_roc_auc"] = [x["roc_auc"] for x in reference["windows"]]
        quality["reference ROC AUC"] = "reference_roc_auc"
    w = _thin(w)
    times = list(pd.to_datetime(w["end"], utc=True))
    marks = _marks(result, policy)
    onset = [pd.Timestamp(result["onset"])] if result.get("onset") else []
    hours = result["spec"]["quality_hours"]
    return [
        svg_chart(
            title
            or f"{policy}: true ROC AUC and recall over the last {hours} h (| retrained champion serving)",
            times,
            {name: list(w[column]) for name, column in quality.items()},
            marks={"retrain": marks, "onset": onset},
        ),
        svg_chart(
            f"{policy}: ROC AUC estimated from the champion's recent scores vs the true one",
            times,
            {"estimated (scores)": list(w["estimated_roc_auc"]), f"true ({hours} h)": list(w["roc_auc"])},
            marks={"retrain": marks, "onset": onset},
        ),
    ]


def _cell(value: Any, digits: int = 2) -> str:
    return f"{float(value):.{digits}f}" if finite(value) else "-"


_HEAD = (
    "<tr><th>policy</th><th>retrains (served / gate said no)</th><th>drift detected after (h)</th>"
    "<th>retrained champion after (h)</th><th>ROC AUC lost (AUC x h)</th><th>recall lost (x h)</th>"
    "<th>mean ROC AUC after onset</th><th>estimate within its band</th><th>monitor overrides</th></tr>"
)


def table(result: dict[str, Any]) -> str:
    rows = []
    for p in result["policies"]:
        est = p["estimate"]
        rows.append(
            f"<tr><td>{html.escape(p['policy'])}</td>"
            f"<td>{p['retrains']} ({p['deployed']} / {p['rejected_by_gate']})</td>"
            f"<td>{_cell(p['detected_after_hours'], 0)}</td><td>{_cell(p['restored_after_hours'], 0)}</td>"
            f"<td>{_cell(p['area_lost_roc_auc'])}</td><td>{_cell(p['area_lost_recall'])}</td>"
            f"<td>{_cell(p['mean_roc_auc_after_onset'], 3)}</td>"
            f"<td>{_cell(est['share_within_band'])}</td>"
            f"<td><code>{html.escape(json.dumps(p['monitor']))}</code></td></tr>"
        )
    return f"<table>{_HEAD}{''.join(rows)}</table>{_yardsticks(result)}"


def _yardsticks(result: dict[str, Any]) -> str:
    """What the policies' quality after the onset compares with (``yardsticks``)."""
    reference, first = result.get("reference"), result.get("first_champion") or {}
    if not reference:
        return ""
    return (
        f"<p>Achievable on the new traffic: a model of the same training code and scale trained on "
        f"{result['spec']['train_days']:g} days of it alone (the reference) has a mean ROC AUC of "
        f"{_cell(reference['mean_roc_auc_after_onset'], 3)} after the onset; the first champion, never "
        f"retrained, {_cell(first.get('mean_roc_auc_after_onset'), 3)}.</p>"
    )


def _history(spec: dict[str, Any]) -> str:
    """What was replayed, for titles: the scenario, or the project's own history."""
    return "project history" if spec.get("history") == "project" else str(spec["scenario"])


def _replayed(spec: dict[str, Any]) -> str:
    lo, hi = spec["label_delay_hours"]
    if spec.get("history") == "project":
        return (
            f"{spec['days']:g} days of the project's curated transactions, by hour of event time, after "
            f"{spec['train_days']:g} days of training history; drift believed to start on day "
            f"{spec['onset_day']:g}; labels land when they were posted to serving, else {lo:g} to {hi:g} h "
            "after their transaction"
        )
    return (
        f"{spec['days']:g} simulated days of hourly windows ({spec['rows_per_hour']} transactions an "
        f"hour) after {spec['train_days']:g} days of stable training history; scenario "
        f"<b>{html.escape(spec['scenario'])}</b> from day {spec['onset_day']:g}; labels land "
        f"{lo:g} to {hi:g} h after their prediction"
    )


def render(result: dict[str, Any]) -> str:
    """The whole page."""
    spec = result["spec"]
    title = f"Retraining policy backtest: {_history(spec)}, {spec['days']:g} days"
    intro = (
        f"<p>{_replayed(spec)}; a retrain serves {spec['retrain_hours']} h after "
        "its decision if it passes the gate. Every window went through the monitor's own code "
        "(window.analyze, decision.decide); retrains through the training code and gate at reduced "
        "scale (the feature service's features computed from the history, no MLflow). "
        f"Took {result['seconds']['total']:g} s.</p>"
    )
    body = intro + table(result)
    for p in result["policies"]:
        body += f"<h2>{html.escape(p['policy'])}</h2>" + "".join(charts(result, p["policy"]))
    style = (
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


_PICTURE_COLUMNS = (
    ("policy", 0),
    ("retrains (served / gate no)", 100),
    ("drift found after", 275),
    ("new champion after", 390),
    ("ROC AUC lost (x h)", 532),
    ("recall lost (x h)", 652),
)


def _picture_row(p: dict[str, Any]) -> list[str]:
    hours = [
        _cell(p[k], 0) + " h" if finite(p[k]) else "-"
        for k in ("detected_after_hours", "restored_after_hours")
    ]
    served = f"{p['retrains']} ({p['deployed']} / {p['rejected_by_gate']})"
    return [p["policy"], served, *hours, _cell(p["area_lost_roc_auc"]), _cell(p["area_lost_recall"])]


def picture(result: dict[str, Any], width: int = 760) -> str:
    """The report's table and each policy's quality chart as one standalone SVG file (what the
    README shows; ``tools.backtest_picture`` writes it): the same charts as the page."""
    spec = result["spec"]
    text = "<text x='{x}' y='{y}' font-size='{size}'{extra}>{body}</text>"
    title = f"Retraining policy backtest: {_history(spec)}, {spec['days']:g} days"
    parts = [text.format(x=8, y=20, size=15, extra=" font-weight='600'", body=html.escape(title))]
    y = 44
    for label, x in _PICTURE_COLUMNS:
        parts.append(text.format(x=8 + x, y=y, size=11, extra=" font-weight='600'", body=html.escape(label)))
    for p in result["policies"]:
        y += 17
        for (_, x), value in zip(_PICTURE_COLUMNS, _picture_row(p), strict=True):
            parts.append(text.format(x=8 + x, y=y, size=11, extra="", body=html.escape(value)))
    y += 22
    hours = spec["quality_hours"]
    legend = (
        f"Charts: true ROC AUC and recall of what each policy served (last {hours} h, every label "
        "known); dotted: onset, retrained champion"
    )
    parts.append(text.format(x=8, y=y, size=11, extra=" fill='#444'", body=html.escape(legend)))
    y += 8
    for p in result["policies"]:
        chart = charts(result, p["policy"], title=p["policy"])[0]
        parts.append(f"<g transform='translate(0,{y})'>{chart}</g>")
        y += 175
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{y}' "
        f"viewBox='0 0 {width} {y}' font-family='sans-serif'>"
        f"<rect width='{width}' height='{y}' fill='white'/>{''.join(parts)}</svg>\n"
    )


def write(
    settings: Settings, result: dict[str, Any], name: str, out_dir: str | None = None
) -> dict[str, str]:
    """Publish the report (the UI's ``backtests`` reports) and, with ``out_dir``, write
    ``<name>.html`` and ``<name>.json`` there too; atomically (``storage``). Returns the URIs."""
    page = render(result)
    summary = {
        p["policy"]: {k: p[k] for k in ("retrains", "deployed", "area_lost_roc_auc")}
        for p in result["policies"]
    }
    spec = result["spec"]
    reports.publish(
        settings,
        KIND,
        name,
        page,
        title=f"Backtest: {_history(spec)}, {spec['days']:g} days",
        policies=summary,
    )
    uris = {"report": reports.report_uri(settings, KIND, name)}
    data = storage.join(settings.storage.reports_uri, KIND, f"{name}.result.json")
    uris["json"] = storage.write_text(data, json.dumps(result, indent=1))
    if out_dir:
        uris["html_copy"] = storage.write_text(storage.join(out_dir, f"{name}.html"), page)
        uris["json_copy"] = storage.write_text(
            storage.join(out_dir, f"{name}.json"), json.dumps(result, indent=1)
        )
    return uris
