"""The airloop reports view, served by the real api-server behind Airflow's authentication and
looked at in headless Chromium (driven over the DevTools protocol, so that it holds a real
Airflow session cookie): without a login nothing is served; with one the pages come with their
Content-Security-Policy; a stored report's script runs but cannot read the Airflow origin's
cookies nor call its API with the viewer's session, which a script on that origin could."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from tasks.common import reports
from tasks.common.net import free_port
from tasks.platform import stack

pytestmark = pytest.mark.e2e

PROBE = """<!doctype html><html><body><h1>Drift window e2e</h1>
<p id='share'>share of drifted features 0.42</p><p id='out'>script did not run</p>
<script>
(async () => {
  const out = [];
  try { out.push('cookie=' + JSON.stringify(document.cookie)); }
  catch (e) { out.push('cookie blocked: ' + e.name); }
  try { localStorage.setItem('k', 'v'); out.push('storage=open'); }
  catch (e) { out.push('storage blocked: ' + e.name); }
  try {
    const r = await fetch('/api/v2/dags', {credentials: 'include'});
    out.push('api=' + r.status);
  } catch (e) { out.push('api blocked: ' + e.name); }
  document.getElementById('out').textContent = 'script ran; ' + out.join('; ');
})();
</script></body></html>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("chromium is not installed (CI installs it: see .ci/run)")


class Browser:
    """One headless Chromium tab over the DevTools protocol (``websocket-client``, in the lock)."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:  # events come in between; the answer carries our id
            message = json.loads(self.ws.recv())
            if message.get("id") == n:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, until: str = "document.readyState === 'complete'", timeout: float = 60) -> None:
        """Navigate and wait (polling, no sleeps as synchronisation) until ``until`` holds."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        here = f"location.href === {json.dumps(url)}"
        while not self.evaluate(
            f"(() => {{ try {{ return {here} && {until}; }} catch (e) {{ return false; }} }})()"
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: {until} never held")
            time.sleep(0.1)

    def text(self, element_id: str) -> str:
        return str(self.evaluate(f"document.getElementById({element_id!r}).textContent"))


@contextmanager
def chromium(tmp_path) -> Iterator[Browser]:
    port = free_port()
    proc = subprocess.Popen(
        [
            _chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, page = time.monotonic() + 60, None
        while page is None:
            try:
                targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                page = next((t for t in targets if t.get("type") == "page"), None)
            except requests.ConnectionError:
                pass
            if page is None and time.monotonic() > deadline:
                raise TimeoutError("chromium's DevTools endpoint never answered")
            time.sleep(0.2)
        browser = Browser(page["webSocketDebuggerUrl"])
        browser.call("Page.enable")
        browser.call("Network.enable")
        yield browser
        browser.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def test_without_a_login_the_reports_view_answers_401_or_sends_to_the_login(airflow_stack):
    settings, _, _ = airflow_stack
    reports.publish(settings, "model_cards", "secret-card", "<html>model internals</html>", title="card")
    base = stack.api_url(settings)
    for path in ("/airloop/", "/airloop/reports/model_cards/secret-card", "/airloop/api/reports"):
        answer = requests.get(f"{base}{path}", timeout=30, allow_redirects=False)
        assert answer.status_code == 401 and "internals" not in answer.text, path
    page = requests.get(
        f"{base}/airloop/reports/model_cards/secret-card",
        headers={"accept": "text/html"},
        timeout=30,
        allow_redirects=False,
    )
    assert page.status_code == 302 and "/auth/login" in page.headers["location"]
    assert "next=%2Fairloop%2Freports%2Fmodel_cards%2Fsecret-card" in page.headers["location"]
    forged = requests.get(f"{base}/airloop/", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
    assert forged.status_code in (401, 403)


def test_with_a_login_pages_come_sandboxed_and_a_reports_script_cannot_reach_the_session(
    airflow_stack, tmp_path
):
    settings, client, _ = airflow_stack
    reports.publish(settings, "monitoring", "window-e2e", PROBE, title="drift window e2e", model_version="7")
    base = stack.api_url(settings)
    token = client.login()

    page = requests.get(
        f"{base}/airloop/reports/monitoring/window-e2e", cookies={"_token": token}, timeout=30
    )
    assert page.status_code == 200 and page.headers["content-security-policy"] == "sandbox allow-scripts"
    bearer = requests.get(f"{base}/airloop/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert bearer.status_code == 200 and "default-src 'none'" in bearer.headers["content-security-policy"]

    with chromium(tmp_path) as browser:
        # the session cookie the Airflow UI sets at login (HttpOnly), and one any script could read
        for name, value, http_only in (("_token", token, True), ("airloop_canary", "readable", False)):
            browser.call("Network.setCookie", name=name, value=value, url=base, httpOnly=http_only)
        # the index, logged in by the cookie alone; its own CSP lets no script make a request
        browser.open(f"{base}/airloop/")
        assert "drift window e2e" in browser.evaluate("document.body.innerText")
        blocked = "fetch('/api/v2/version').then(r => 'sent', e => 'refused: ' + e.name)"
        assert browser.evaluate(blocked) == "refused: TypeError"
        # control: a script on the Airflow origin without the sandbox reads the readable cookie
        # and calls the API with the viewer's session (the HttpOnly cookie authenticates it)
        browser.open(f"{base}/api/v2/version")
        assert "airloop_canary=readable" in browser.evaluate("document.cookie")
        assert browser.evaluate("fetch('/api/v2/dags').then(r => r.status)") == 200
        # the report: its script runs, in an opaque origin, and reaches none of that
        browser.open(
            f"{base}/airloop/reports/monitoring/window-e2e",
            until="document.getElementById('out').textContent.startsWith('script ran')",
        )
        assert browser.text("share") == "share of drifted features 0.42"
        seen = browser.text("out")
        assert "cookie blocked: SecurityError" in seen and "readable" not in seen, seen
        assert "storage blocked" in seen and "api=200" not in seen, seen
        assert browser.evaluate("self.origin") == "null"

    # the api-server registered the plugin's nav view for the React UI
    plugins = client.get("/plugins")["plugins"]
    [airloop] = [p for p in plugins if p["name"] == "airloop"]
    assert any(v["href"] == "/airloop/" for v in airloop["external_views"])
    missing = requests.get(f"{base}/airloop/reports/monitoring/nope", cookies={"_token": token}, timeout=30)
    assert missing.status_code == 404
