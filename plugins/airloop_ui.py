"""The airloop view in the Airflow UI: drift reports, model cards and rollout histories.

An Airflow 3 plugin: a small FastAPI app mounted in the api-server at ``UI_PREFIX``
(``/airloop``) serves the reports ``tasks.common.reports`` indexes, and an external view puts
"airloop reports" in the UI's navigation. Task extra links (monitor, deploy, train) point at
``report_url(kind, name)``.
"""

from __future__ import annotations

import html
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from config import Settings, load_config
from tasks.common.reports import KINDS, UI_PREFIX, list_reports, read_report, report_url

app = FastAPI(title="airloop reports", docs_url=None, redoc_url=None)


def _settings() -> Settings:
    """Read per request: the configuration follows the api-server's environment."""
    return load_config()


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>airloop reports</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2937; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1.1rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e5e7eb; }}
.empty {{ color: #6b7280; }}
</style></head>
<body><h1>airloop reports</h1>
<p>Newest first. Drift reports come from the monitor DAG, model cards from training,
rollout histories from deployment.</p>
{sections}
</body></html>
"""


@app.get("/", response_class=HTMLResponse)
def index(kind: str | None = None, model_version: str | None = None) -> str:
    settings = _settings()
    sections = []
    for key, label in KINDS.items():
        if kind and key != kind:
            continue
        rows = [
            r
            for r in list_reports(settings, key)
            if model_version is None or r.model_version == model_version
        ]
        body = "".join(
            f'<tr><td><a href="{html.escape(report_url(key, r.name))}">{html.escape(r.title)}</a></td>'
            f"<td>{html.escape(r.model_version or '')}</td><td>{html.escape(r.created_at[:19])}</td></tr>"
            for r in rows
        )
        table = (
            f"<table><tr><th>report</th><th>model version</th><th>created (UTC)</th></tr>{body}</table>"
            if rows
            else '<p class="empty">none yet</p>'
        )
        sections.append(f"<h2>{html.escape(label)}</h2>{table}")
    return _PAGE.format(sections="".join(sections))


@app.get("/reports/{kind}/{name}", response_class=HTMLResponse)
def report(kind: str, name: str) -> str:
    try:
        return read_report(_settings(), kind, name)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    except FileNotFoundError as exc:
        raise HTTPException(status_code=404, detail=f"no {kind} report named {name}") from exc


@app.get("/api/reports")
def reports_json(kind: str | None = None) -> list[dict[str, Any]]:
    return [r.as_dict() for r in list_reports(_settings(), kind)]


class AirloopUIPlugin(AirflowPlugin):
    name = "airloop"
    fastapi_apps = [{"app": app, "url_prefix": UI_PREFIX, "name": "airloop reports"}]
    external_views = [
        {
            "name": "airloop reports",
            "href": f"{UI_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "airloop-reports",
        }
    ]
