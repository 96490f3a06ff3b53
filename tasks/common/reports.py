"""The HTML reports users look at: drift reports, model cards and rollout histories.

Every report is one self-contained HTML file under ``storage.reports_uri/<kind>/<name>.html``,
with an optional ``<name>.json`` beside it (title, model version, creation time, links). The
Airflow UI plugin lists and serves them from here; tasks that make reports call ``publish``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tasks.common import storage

if TYPE_CHECKING:
    from config import Settings

UI_PREFIX = "/airloop"
"""Where the Airflow UI plugin (``plugins.airloop_ui``) mounts the reports app in the api-server."""

KINDS = {
    "monitoring": "Drift and performance",
    "model_cards": "Model cards",
    "rollouts": "Rollout history",
    "quarantine": "Quarantined batches",
    "backtests": "Retraining policy backtests",
}
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,200}$")


@dataclass
class Report:
    kind: str
    name: str
    title: str
    created_at: str
    model_version: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def url(self) -> str:
        return report_url(self.kind, self.name)


def report_url(kind: str, name: str) -> str:
    """Where the airloop view in the Airflow UI serves a report (the page, not the file)."""
    return f"{UI_PREFIX}/reports/{kind}/{name}"


def _check(kind: str, name: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r}; one of {sorted(KINDS)}")
    if not _SAFE.match(name):
        raise ValueError(f"bad report name {name!r}")


def report_uri(settings: Settings, kind: str, name: str) -> str:
    _check(kind, name)
    return storage.join(settings.storage.reports_uri, kind, f"{name}.html")


def publish(
    settings: Settings,
    kind: str,
    name: str,
    html: str,
    *,
    title: str,
    model_version: str | None = None,
    **meta: Any,
) -> Report:
    """Write a report and its index entry; returns what the UI will list."""
    report = Report(
        kind=kind,
        name=name,
        title=title,
        created_at=datetime.now(UTC).isoformat(),
        model_version=None if model_version is None else str(model_version),
        meta=meta,
    )
    uri = report_uri(settings, kind, name)
    storage.write_text(uri, html)
    storage.write_text(uri[: -len(".html")] + ".json", json.dumps(report.as_dict(), indent=2, default=str))
    return report


def list_reports(settings: Settings, kind: str | None = None) -> list[Report]:
    """Every report, newest first (files without an index entry use their modification time)."""
    reports = []
    for k in [kind] if kind else list(KINDS):
        folder = storage.join(settings.storage.reports_uri, k)
        fs, path = storage.filesystem(folder)
        if not fs.exists(path):
            continue
        for info in fs.ls(path, detail=True):
            name = info["name"].rsplit("/", 1)[-1]
            if not name.endswith(".html"):
                continue
            stem = name[: -len(".html")]
            meta_uri = storage.join(folder, f"{stem}.json")
            if storage.exists(meta_uri):
                reports.append(Report(**json.loads(storage.read_bytes(meta_uri))))
            else:
                modified = info.get("mtime") or info.get("LastModified") or datetime.now(UTC)
                if isinstance(modified, int | float):
                    modified = datetime.fromtimestamp(modified, UTC)
                reports.append(Report(kind=k, name=stem, title=stem, created_at=modified.isoformat()))
    return sorted(reports, key=lambda r: r.created_at, reverse=True)


def read_report(settings: Settings, kind: str, name: str) -> str:
    return storage.read_bytes(report_uri(settings, kind, name)).decode()
