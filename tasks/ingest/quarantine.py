"""A bad batch's place in quarantine: its validation result, its page, and the reports view.

``quarantine/<batch_id>/`` holds ``validation.json`` (the summary and GE's result) and
``validation.html``, and the landed file is moved in beside them (``tasks.ingest.batches``).
The page is airloop's own, with every value escaped: it shows the batch's data (unexpected
columns, example values), which is user input. The same page is published as a report of kind
``quarantine`` (``tasks.common.reports``), so the reports view lists quarantined batches, newest
first, with the batch id, the reason and the row count.
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import TYPE_CHECKING, Any

from tasks.common import reports, storage
from tasks.common.clock import now_iso

if TYPE_CHECKING:
    from config import Settings
    from tasks.ingest.validation import ValidationReport

KIND = "quarantine"
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;"
    "font-size:.9em;text-align:left;vertical-align:top}th{background:#f3f3f3}code{background:#f3f3f3}"
)


def folder(settings: Settings, batch_id: str) -> str:
    return storage.join(settings.storage.quarantine_uri, batch_id)


def report_name(batch_id: str) -> str:
    """The batch id as a report name (letters, digits and ``._=+-`` only)."""
    name = re.sub(r"[^A-Za-z0-9._=+-]", "_", batch_id)[:200]
    return name if name[:1].isalnum() else f"b{name[:199]}"


def _row(*cells: Any) -> str:
    return "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>"


def render_html(report: ValidationReport, batch_id: str, source: str) -> str:
    """The quarantine page: what was rejected and why, every value escaped."""
    stats = (report.result or {}).get("statistics") or {}
    about = "".join(
        _row(k, v)
        for k, v in (
            ("file", source),
            ("batch id", batch_id),
            ("rows", report.rows),
            ("checked at", report.checked_at),
            ("checks evaluated", stats.get("evaluated_expectations", "-")),
            ("checks failed", stats.get("unsuccessful_expectations", len(report.failures))),
        )
    )
    failures = "".join(
        _row(
            f.expectation,
            f.column or "(file)",
            "-" if f.unexpected_count is None else f.unexpected_count,
            f.message,
            json.dumps(f.examples, default=str),
        )
        for f in report.failures
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Quarantined batch {escape(batch_id)}</title>
<style>{STYLE}</style></head><body>
<h1>Batch quarantined</h1>
<p><strong>{escape(report.reason)}</strong></p>
<table>{about}</table>
<h2>Failed checks</h2>
<table><tr><th>check</th><th>column</th><th>count</th><th>message</th><th>examples</th></tr>{failures}</table>
<p>The file lies in quarantine beside <code>validation.json</code> (Great Expectations' full result).
Fix it and land it again; nothing of it was curated.</p>
</body></html>
"""


def record(settings: Settings, batch_uri: str, batch_id: str, report: ValidationReport) -> str:
    """Write the validation result and page into the batch's quarantine folder and publish the
    page in the reports view; returns the folder (the file is moved in afterwards)."""
    where = folder(settings, batch_id)
    source = storage.basename(batch_uri)
    summary = {**report.summary(), "batch_id": batch_id, "quarantined_at": now_iso()}
    storage.write_text(
        storage.join(where, "validation.json"),
        json.dumps({"summary": summary, "great_expectations": report.result}, indent=2, default=str),
    )
    page = render_html(report, batch_id, source)
    storage.write_text(storage.join(where, "validation.html"), page)
    reports.publish(
        settings,
        KIND,
        report_name(batch_id),
        page,
        title=f"Quarantined batch {report_name(batch_id)}",
        batch_id=batch_id,
        source=source,
        reason=report.reason,
        rows=report.rows,
        failed_checks=[f.expectation for f in report.failures],
        location=where,
    )
    return where
