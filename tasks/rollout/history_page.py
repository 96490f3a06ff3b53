"""The rollout history page: this rollout's steps on a timeline, their judgments, and the model's
earlier rollouts. Published after every step into the reports the Airflow UI lists (kind
``rollouts``), so the deploy run's link shows a rollout in progress too."""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasks.common import reports
from tasks.rollout.record import FAILED, PASSED, RolloutRecord, history, safe
from tasks.rollout.scores import BaseRate

if TYPE_CHECKING:
    from config import Settings

KIND = "rollouts"
COLORS = {PASSED: "#2ca02c", FAILED: "#d62728", "running": "#1f77b4", "skipped": "#bbb"}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 16px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
.passed, .promoted { color: #2ca02c; font-weight: 600; }
.failed, .rolled_back { color: #d62728; font-weight: 600; }
.running { color: #1f77b4; font-weight: 600; }
.skipped, .samples { color: #777; }
svg { background: #fafafa; border: 1px solid #eee; margin: 4px 0 16px; }
"""


def report_name(record: RolloutRecord) -> str:
    return safe(f"{record.model}-{record.id}")


def _t(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def timeline(record: RolloutRecord, width: int = 760, height: int = 150) -> str:
    """Each step as a bar from its start to its end, as high as the challenger's traffic share
    (shadow and smoke steps are drawn low), coloured by outcome."""
    steps = [s for s in record.steps if s.started_at]
    if not steps:
        return ""
    t0 = _t(record.started_at) or 0.0
    t1 = max(_t(s.ended_at) or _t(s.started_at) or t0 for s in steps)
    t1 = max(t1, _t(record.ended_at) or t1)
    span = max(t1 - t0, 1e-3)
    pad_l, pad_r, pad_t, pad_b = 40, 12, 20, 34
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    parts = [
        "<text x='40' y='14' font-size='12' font-weight='600'>challenger traffic share per step</text>",
        f"<text x='4' y='{pad_t + 4}' font-size='10'>100%</text>",
        f"<text x='4' y='{pad_t + plot_h + 4}' font-size='10'>0%</text>",
    ]
    for s in steps:
        start = _t(s.started_at) or t0
        end = _t(s.ended_at) or t1
        x = pad_l + (start - t0) / span * plot_w
        w = max((end - start) / span * plot_w, 2.0)
        share = s.weight if s.weight else 0.05
        h = max(share * plot_h, 3.0)
        y = pad_t + plot_h - h
        color = COLORS.get(s.status, "#888")
        label = html.escape(f"{s.name}: {s.status} ({s.seconds or 0:.1f} s)")
        parts.append(
            f"<rect x='{x:.1f}' y='{y:.1f}' width='{w:.1f}' height='{h:.1f}' fill='{color}' opacity='0.8'>"
            f"<title>{label}</title></rect>"
            f"<text x='{x + 2:.1f}' y='{height - 18}' font-size='10'>{html.escape(s.name)}</text>"
        )
    parts.append(
        f"<text x='{width - pad_r}' y='{height - 4}' font-size='10' text-anchor='end'>"
        f"{span:.1f} s in all</text>"
    )
    return f"<svg width='{width}' height='{height}' role='img'>{''.join(parts)}</svg>"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _samples(c: dict[str, Any]) -> str:
    """A check's sample sizes and p-value, as the judge recorded them (``stats.Check.samples``)."""
    got = c.get("samples") or {}
    if "reference_n" in got:
        text = f"{got['events']}/{got['n']} vs champion {got['reference_events']}/{got['reference_n']}"
        p = got.get("p_value")
        text += f", p={p:.3g}" if p is not None else ", not tested"
    else:
        text = ", ".join(f"{k}={v}" for k, v in got.items() if not isinstance(v, dict))
    return f" <span class='samples'>[{html.escape(text)}]</span>" if text else ""


def _check(c: dict[str, Any]) -> str:
    judged = c.get("judged", True)
    css = "skipped" if not judged else (PASSED if c["passed"] else FAILED)
    what = "not judged" if not judged else f"{_fmt(c['value'])} (limit {_fmt(c['limit'])})"
    title = html.escape(str(c.get("detail", "")), quote=True)
    return f"<span class='{css}' title='{title}'>{html.escape(c['name'])}</span> {what}{_samples(c)}"


def _steps_table(record: RolloutRecord) -> str:
    rows = []
    for s in record.steps:
        checks = "<br>".join(_check(c) for c in s.checks)
        traffic = "shadow" if s.shadow else ("-" if s.weight is None else f"{s.weight:.0%}")
        rows.append(
            f"<tr><td>{html.escape(s.name)}</td><td class='{s.status}'>{s.status}</td><td>{traffic}</td>"
            f"<td>{_fmt(s.requests)}</td><td>{_fmt(s.seconds)}</td><td>{checks or '-'}</td>"
            f"<td>{html.escape(s.reason or '')}</td></tr>"
        )
    return (
        "<table><tr><th>step</th><th>outcome</th><th>traffic</th><th>challenger calls</th>"
        "<th>seconds</th><th>checks (value, limit)</th><th>reason</th></tr>" + "".join(rows) + "</table>"
    )


def _base_rate(record: RolloutRecord) -> str:
    rate = BaseRate.from_dict(record.base_rate)
    if rate is None:
        return ""
    return f"<p>Scores held to the observed {html.escape(rate.describe())} (newest curated data).</p>"


def _history_table(records: list[RolloutRecord]) -> str:
    rows = []
    for r in records:
        started, ended = _t(r.started_at), _t(r.ended_at)
        seconds = ended - started if started is not None and ended is not None else None
        steps = " → ".join(f"<span class='{s.status}'>{html.escape(s.name)}</span>" for s in r.steps)
        rows.append(
            f"<tr><td>{html.escape(r.started_at[:19])}</td><td>{html.escape(r.version)}</td>"
            f"<td>{_fmt(r.champion_version)}</td><td class='{r.status}'>{r.status}</td>"
            f"<td>{steps}</td><td>{_fmt(seconds)}</td><td>{html.escape(r.reason or '')}</td></tr>"
        )
    return (
        "<table><tr><th>started (UTC)</th><th>version</th><th>against champion</th><th>outcome</th>"
        "<th>steps</th><th>seconds</th><th>reason</th></tr>" + "".join(rows) + "</table>"
    )


def render(record: RolloutRecord, earlier: list[RolloutRecord]) -> str:
    title = f"Rollout of {record.model} version {record.version}"
    against = "first model" if record.first else f"against champion version {record.champion_version}"
    source = record.context.get("dag_run_id") or record.context.get("run_id") or ""
    body = (
        f"<p><span class='{record.status}'>{record.status.replace('_', ' ')}</span> · {html.escape(against)}"
        f" · started {html.escape(record.started_at[:19])} UTC"
        + (f" · run {html.escape(str(source))}" if source else "")
        + "</p>"
        + (f"<p>{html.escape(record.reason)}</p>" if record.reason else "")
        + _base_rate(record)
        + timeline(record)
        + "<h2>Steps and judgments</h2>"
        + _steps_table(record)
        + "<h2>Rollout history of this model</h2>"
        + _history_table(earlier)
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def publish(settings: Settings, record: RolloutRecord) -> reports.Report:
    """Write the page for ``record`` (with the model's 50 latest rollouts) into the reports."""
    page = render(record, history(settings, limit=50))
    return reports.publish(
        settings,
        KIND,
        report_name(record),
        page,
        title=f"Rollout of version {record.version}: {record.status.replace('_', ' ')}",
        model_version=record.version,
        status=record.status,
        champion_version=record.champion_version,
        rollout_id=record.id,
    )


def url(record: RolloutRecord) -> str:
    """Where the Airflow UI plugin serves the page."""
    return reports.report_url(KIND, report_name(record))
