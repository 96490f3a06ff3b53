"""The airloop UI plugin's app: lists reports newest first per kind and serves them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tasks.common import reports


@pytest.fixture
def client(settings):
    from plugins.airloop_ui import app

    return TestClient(app)


def test_index_lists_reports_newest_first_and_serves_them(settings, client):
    reports.publish(
        settings,
        "model_cards",
        "fraud-v1",
        "<html><body>card one</body></html>",
        title="fraud-detector v1",
        model_version="1",
    )
    reports.publish(
        settings,
        "model_cards",
        "fraud-v2",
        "<html><body>card two</body></html>",
        title="fraud-detector v2",
        model_version="2",
    )
    reports.publish(
        settings,
        "monitoring",
        "window-2026-01-02T00",
        "<html>drift</html>",
        title="drift 2026-01-02 00:00",
        model_version="2",
    )

    page = client.get("/").text
    assert page.index("fraud-detector v2") < page.index("fraud-detector v1")
    assert "drift 2026-01-02 00:00" in page and "Rollout history" in page
    only_v1 = client.get("/", params={"model_version": "1"}).text
    assert "fraud-detector v1" in only_v1 and "fraud-detector v2" not in only_v1
    assert client.get("/reports/model_cards/fraud-v2").text == "<html><body>card two</body></html>"
    listed = client.get("/api/reports", params={"kind": "monitoring"}).json()
    assert [r["name"] for r in listed] == ["window-2026-01-02T00"]


def test_unknown_or_unsafe_reports_are_4xx(client):
    assert client.get("/reports/model_cards/nope").status_code == 404
    assert client.get("/reports/secrets/x").status_code == 400
    assert client.get("/reports/model_cards/..%2f..%2fetc").status_code in (400, 404)


def test_reports_written_without_an_index_entry_are_listed_too(settings, client):
    from tasks.common import storage

    storage.write_text(
        storage.join(settings.storage.reports_uri, "monitoring", "raw.html"), "<html>raw</html>"
    )
    assert [r.name for r in reports.list_reports(settings, "monitoring")] == ["raw"]
    assert "raw" in client.get("/").text


def test_plugin_registers_the_app_and_a_nav_view():
    from plugins.airloop_ui import AirloopUIPlugin

    [mounted] = AirloopUIPlugin.fastapi_apps
    assert mounted["url_prefix"] == reports.UI_PREFIX == "/airloop"
    [view] = AirloopUIPlugin.external_views
    assert view["destination"] == "nav" and view["href"] == f"{reports.UI_PREFIX}/"
