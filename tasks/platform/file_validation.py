"""``airloop validate FILE``: the ingest DAG's validation suite on a file of the user's, by hand.

The same suite a landed batch meets (``tasks.ingest.validation.validate_batch``), run on a local
CSV or Parquet file (or a storage URI); the file is only read: nothing is moved, quarantined or
written, so a data engineer can check a file before landing it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from config import Settings
from tasks.common import storage
from tasks.ingest.validation import ValidationReport, validate_batch


def file_uri(name: str) -> str:
    """A storage URI for ``name``: a URI as given, a local path made absolute as ``file://``."""
    if "://" in name:
        return name
    return "file://" + str(Path(name).expanduser().resolve())


def report_lines(report: ValidationReport) -> list[str]:
    """Pass or fail with the row count, then one line per failed check."""
    stats = (report.result or {}).get("statistics") or {}
    checks = stats.get("evaluated_expectations")
    if report.success:
        counted = f", {checks} checks" if checks else ""
        return [f"PASS  {report.batch_uri}: {report.rows} rows{counted}, every check passed"]
    lines = [f"FAIL  {report.batch_uri}: {report.rows} rows, {len(report.failures)} failed check(s)"]
    for failure in report.failures:
        where = f" [{failure.column}]" if failure.column else ""
        lines.append(f"  - {failure.expectation}{where}: {failure.message}")
    return lines


def validate_file(
    name: str, settings: Settings, *, as_json: bool = False, out: Callable[[str], None] = print
) -> int:
    """Validate one file and print its report; 0 when it passes, 1 when a check fails, 2 when
    there is no such local file."""
    uri = file_uri(name)
    if uri.startswith("file://") and not Path(uri.removeprefix("file://")).is_file():
        print(f"error: no such file: {name}", file=sys.stderr)
        return 2
    storage.configure(settings.storage.s3_endpoint_url)
    report, _ = validate_batch(uri, settings)
    if as_json:
        out(json.dumps(report.summary(), indent=2, default=str))
    else:
        for line in report_lines(report):
            out(line)
    return 0 if report.success else 1
