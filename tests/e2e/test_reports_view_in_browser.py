"""The airloop reports view, served by the real api-server and looked at in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests

from tasks.common import reports
from tasks.platform import stack


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("chromium is not installed (CI installs it: see .ci/run)")


def _dump_dom(url: str) -> str:
    """The page as a real browser renders it (scripts run), printed by headless Chromium."""
    result = subprocess.run(
        [
            _chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_reports_view_lists_and_shows_a_report_in_a_browser(airflow_stack):
    settings, client, _ = airflow_stack
    reports.publish(
        settings,
        "monitoring",
        "window-e2e",
        "<html><body><h1>Drift window e2e</h1><p id='share'>share of drifted features 0.42</p></body></html>",
        title="drift window e2e",
        model_version="7",
    )
    base = stack.api_url(settings)

    index = _dump_dom(f"{base}/airloop/")
    assert "airloop reports" in index and "drift window e2e" in index
    page = _dump_dom(f"{base}/airloop/reports/monitoring/window-e2e")
    assert "share of drifted features 0.42" in page

    # the api-server registered the plugin's nav view for the React UI
    plugins = client.get("/plugins")["plugins"]
    [airloop] = [p for p in plugins if p["name"] == "airloop"]
    assert any(v["href"] == "/airloop/" for v in airloop["external_views"])
    assert requests.get(f"{base}/airloop/reports/monitoring/nope", timeout=10).status_code == 404
