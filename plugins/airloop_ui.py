"""The airloop view in the Airflow UI: drift reports, model cards, rollout histories and
quarantined batches.

An Airflow 3 plugin: a small FastAPI app mounted in the api-server at ``UI_PREFIX``
(``/airloop``) serves the reports ``tasks.common.reports`` indexes, and an external view puts
"airloop reports" in the UI's navigation. Task extra links (monitor, deploy, train) point at
``report_url(kind, name)``.

Airflow does not authenticate a plugin's app (a mount inherits none of the core API's
dependencies), so this one does it itself, with Airflow's own dependency: every route depends on
``airflow.api_fastapi.core_api.security.get_user``, which the api-server's auth manager answers
from a JWT bearer token (``POST /auth/token``) or the Airflow UI's session cookie. A request
without either gets 401; a browser asking for a page is sent to the auth manager's login page
and back. Reports hold transaction distributions and model internals: only Airflow users see them.

A stored report is HTML someone else's code wrote (Evidently's scripts, a model card), served on
the Airflow origin. Every one is served with ``Content-Security-Policy: sandbox allow-scripts``:
its scripts run (Evidently's plots need them) in an opaque origin, so they cannot read the
Airflow origin's cookies or storage, nor call its API with the viewer's session. The pages this
app renders itself allow no script at all.
"""

from __future__ import annotations

import html
from typing import Annotated, Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from config import Settings, load_config
from tasks.common.reports import KINDS, UI_PREFIX, list_reports, read_report, report_url

REPORT_CSP = "sandbox allow-scripts"
"""Stored reports: scripts run, in an opaque origin (no ``allow-same-origin``)."""
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'; form-action 'none'"
"""The pages this app renders: no script, no request, framed only by the Airflow UI."""
_bearer = HTTPBearer(auto_error=False)


async def airflow_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Any:
    """The caller, as the api-server's auth manager knows them: Airflow's ``get_user`` (a bearer
    JWT wins over the UI's session cookie; 401 without either, 403 for a bad token).

    Imported on the first request rather than with the module: every Airflow process that loads
    plugins (each task's, to integrate macros) imports this file, and Airflow's security module
    costs about 3 s of imports there for nothing.
    """
    from airflow.api_fastapi.core_api.security import get_user  # noqa: PLC0415 - see the docstring

    return await get_user(request, None, credentials)


app = FastAPI(
    title="airloop reports",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
    dependencies=[Depends(airflow_user)],
)


@app.exception_handler(HTTPException)
async def _login_or_error(request: Request, exc: HTTPException) -> Response:
    """A browser that is not logged in goes to the login page (and comes back); anything else
    gets the error as JSON."""
    if (
        exc.status_code == 401
        and request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
    ):
        from airflow.api_fastapi.app import get_auth_manager  # noqa: PLC0415 - see airflow_user

        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(get_auth_manager().get_url_login(next_url=here), status_code=302)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


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
rollout histories from deployment, quarantined batches (with their validation report) from
ingestion.</p>
{sections}
</body></html>
"""


def _section(settings: Settings, key: str, label: str, model_version: str | None) -> str:
    rows = [
        r for r in list_reports(settings, key) if model_version is None or r.model_version == model_version
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
    return f"<h2>{html.escape(label)}</h2>{table}"


@app.get("/", response_class=HTMLResponse)
def index(kind: str | None = None, model_version: str | None = None) -> HTMLResponse:
    settings = _settings()
    sections = [
        _section(settings, key, label, model_version)
        for key, label in KINDS.items()
        if not kind or key == kind
    ]
    page = _PAGE.format(sections="".join(sections))
    return HTMLResponse(
        page, headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"}
    )


@app.get("/reports/{kind}/{name}", response_class=HTMLResponse)
def report(kind: str, name: str) -> HTMLResponse:
    """A stored report, sandboxed. ``<name>.html`` is accepted too (links written as files)."""
    try:
        page = read_report(_settings(), kind, name.removesuffix(".html"))
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    except FileNotFoundError as exc:
        raise HTTPException(status_code=404, detail=f"no {kind} report named {name}") from exc
    headers = {"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff"}
    return HTMLResponse(page, headers=headers)


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
