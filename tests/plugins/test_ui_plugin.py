"""The airloop UI plugin's app: behind Airflow's own authentication (the real auth manager, real
tokens checked against the migrated metadata DB), lists reports newest first per kind (the
quarantined batches too) and serves each sandboxed.

Over real HTTP, through the api-server, and in a browser: ``tests/e2e/test_reports_view_in_browser.py``.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tasks.common import reports


def authenticated_client(role: str = "viewer") -> TestClient:
    """A client of the plugin's app holding a session cookie, as the Airflow UI leaves in a
    browser: a JWT the api-server's auth manager (the test Airflow's SimpleAuthManager) issued."""
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from plugins.airloop_ui import app

    token = init_auth_manager().generate_jwt(SimpleAuthManagerUser(username=f"test-{role}", role=role))
    client = TestClient(app)
    client.cookies.set("_token", token)
    return client


@pytest.fixture
def client(settings, airflow_db):
    return authenticated_client()


@pytest.fixture
def anonymous(settings, airflow_db):
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


def test_quarantined_batches_are_listed_newest_first_with_their_validation_report(settings, client):
    for batch in ("stable-0001", "nulls-0002", "schema-0003"):  # published one after the other
        reports.publish(
            settings,
            "quarantine",
            batch,
            f"<html><body>validation of {batch}: 3 rows with nulls in amount</body></html>",
            title=f"Quarantined {batch}",
        )
    page = client.get("/").text
    assert "Quarantined batches" in page
    assert (
        page.index("Quarantined schema-0003")
        < page.index("Quarantined nulls-0002")
        < page.index("Quarantined stable-0001")
    )
    assert "/airloop/reports/quarantine/nulls-0002" in page
    only = client.get("/", params={"kind": "quarantine"}).text
    assert "Quarantined nulls-0002" in only and "Model cards" not in only
    shown = client.get("/reports/quarantine/nulls-0002")
    assert shown.status_code == 200 and "validation of nulls-0002" in shown.text
    names = [r["name"] for r in client.get("/api/reports", params={"kind": "quarantine"}).json()]
    assert names == ["schema-0003", "nulls-0002", "stable-0001"]


def test_every_stored_report_is_sandboxed_and_the_apps_own_pages_run_no_script(settings, client):
    reports.publish(settings, "rollouts", "r1", "<html><script>alert(1)</script></html>", title="r1")
    shown = client.get("/reports/rollouts/r1")
    assert shown.headers["content-security-policy"] == "sandbox allow-scripts"
    assert shown.headers["x-content-type-options"] == "nosniff"
    index = client.get("/").headers["content-security-policy"]
    assert "default-src 'none'" in index and "script" not in index


def test_summary_links_written_as_files_resolve_too(settings, client):
    """Pages that link to ``<window>.html`` (a summary written before the fix) still resolve."""
    reports.publish(settings, "monitoring", "w-1", "<html>window one</html>", title="w-1")
    assert client.get("/reports/monitoring/w-1.html").text == "<html>window one</html>"
    assert client.get("/reports/monitoring/w-1").text == "<html>window one</html>"


def test_without_a_login_nothing_is_served(settings, anonymous):
    reports.publish(settings, "model_cards", "secret-card", "<html>internals</html>", title="card")
    for path in ("/", "/reports/model_cards/secret-card", "/api/reports", "/reports/nope/x"):
        answer = anonymous.get(path, follow_redirects=False)
        assert answer.status_code == 401 and "internals" not in answer.text, path
    # a browser asking for a page is sent to Airflow's login page, and brought back after it
    page = anonymous.get(
        "/reports/model_cards/secret-card?x=1", headers={"accept": "text/html"}, follow_redirects=False
    )
    assert page.status_code == 302 and page.headers["location"].startswith("/auth/login?next=")
    assert "secret-card" in page.headers["location"]
    # a token that is not Airflow's is refused, not trusted
    forged = anonymous.get("/", headers={"Authorization": "Bearer eyJhbGciOiJIUzUxMiJ9.e30.x"})
    assert forged.status_code in (401, 403)


def test_a_bearer_token_works_as_well_as_the_session_cookie(settings, airflow_db):
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from plugins.airloop_ui import app

    token = init_auth_manager().generate_jwt(SimpleAuthManagerUser(username="api", role="viewer"))
    answer = TestClient(app).get("/api/reports", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json() == []


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


def test_loading_the_plugin_does_not_load_airflows_api_security():
    """Every task process loads plugins: the auth dependency is imported on the first request."""
    import subprocess
    import sys

    code = (
        "import sys, plugins.airloop_ui; "
        "assert 'airflow.api_fastapi.core_api.security' not in sys.modules, 'imported at load'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
