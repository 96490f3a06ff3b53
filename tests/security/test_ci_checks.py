"""The CI checks of issue 18.7: the secret scanner (``tools/secret_scan.py``, detect-secrets against
``.secrets.baseline``) and the dependency audit (``tools/dependency_audit.py``), each shown to fail
on what it must catch. The audit's network sources are a local PyPI-shaped server here, and
pip-audit is shown unreachable through a proxy that refuses connections: no traffic leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.common.net import free_port
from tools import dependency_audit, secret_scan

ROOT = Path(__file__).resolve().parents[2]
PLANTED = 'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n'


# --------------------------------------------------------------------------------------------
# Secret scanner
# --------------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text(".env\n")
    (tmp_path / "app.py").write_text("print('hello')\n")
    git(tmp_path, "add", ".")
    return tmp_path


def scan(repo: Path, *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "tools.secret_scan", "--root", str(repo), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_a_secret_in_a_new_file_fails_until_audited_and_an_ignored_file_is_not_scanned(repo):
    (repo / ".env").write_text(PLANTED)  # ignored, like the deployment's .env
    assert scan(repo)[0] == 0
    (repo / "settings.py").write_text(PLANTED)  # untracked but not ignored: about to be committed
    code, out = scan(repo)
    assert code == 1 and "settings.py:1" in out and "new: not in .secrets.baseline" in out
    assert "wJalrXUtnFEMI" not in out, "the scanner names where, never the secret"
    code, out = scan(repo, "--update")
    assert code == 1 and "not audited" in out, "a baseline entry counts once someone audited it"
    assert scan(repo, "--update", "--mark-false-positives")[0] == 0
    baseline = json.loads((repo / ".secrets.baseline").read_text())
    marks = [entry["is_secret"] for entry in baseline["results"]["settings.py"]]
    assert marks and set(marks) == {False}  # keyword, AWS key and entropy detectors: one line
    (repo / "settings.py").write_text(PLANTED.replace("EXAMPLEKEY", "OTHERKEY12"))
    assert scan(repo)[0] == 1, "a different secret in the same place is a new finding"


def test_an_entry_audited_as_a_real_secret_fails(repo):
    (repo / "settings.py").write_text(PLANTED)
    scan(repo, "--update", "--mark-false-positives")
    baseline = json.loads((repo / ".secrets.baseline").read_text())
    baseline["results"]["settings.py"][0]["is_secret"] = True
    (repo / ".secrets.baseline").write_text(json.dumps(baseline))
    code, out = scan(repo)
    assert code == 1 and "audited as a real secret" in out


def test_an_audited_baseline_holds_in_another_clone_of_the_repository(repo, tmp_path_factory):
    """CI scans a fresh clone in another folder: findings are matched by path in the repository."""
    (repo / "settings.py").write_text(PLANTED)
    assert scan(repo, "--update", "--mark-false-positives")[0] == 0
    git(repo, "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "baseline")
    clone = tmp_path_factory.mktemp("elsewhere") / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, capture_output=True)
    code, out = scan(clone)
    assert code == 0 and "0 not audited away" in out, out


def test_the_repository_baseline_holds_only_audited_false_positives():
    baseline = json.loads((ROOT / ".secrets.baseline").read_text())
    entries = [entry for found in baseline["results"].values() for entry in found]
    assert entries and all(entry.get("is_secret") is False for entry in entries)
    assert ".env" not in secret_scan.repository_files(ROOT), "a deployment's .env is never committed"


# --------------------------------------------------------------------------------------------
# Dependency audit
# --------------------------------------------------------------------------------------------

PROJECTS = {
    # pinned == latest, one advisory (and one withdrawn, which does not count)
    "vulnerable": {"info": {"version": "1.0"}, "vulnerabilities": [
        {"id": "GHSA-aaaa-bbbb-cccc", "aliases": ["CVE-2099-0001"], "fixed_in": ["1.1"]},
        {"id": "GHSA-dddd-eeee-ffff", "aliases": [], "fixed_in": [], "withdrawn": "2099-01-01T00:00:00"},
    ]},
    "clean": {"info": {"version": "2.0"}, "vulnerabilities": []},  # pinned == latest, nothing known
    "old": {"info": {"version": "9.0"}, "vulnerabilities": []},  # pinned 1.0: no advisory data
}  # fmt: skip


@pytest.fixture
def fake_pypi():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            parts = self.path.strip("/").split("/")  # pypi/<name>/json or pypi/<name>/<version>/json
            name = parts[1] if parts[0] == "pypi" else None
            body = json.dumps(PROJECTS[name]).encode() if name in PROJECTS else b"{}"
            self.send_response(200 if name in PROJECTS else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/pypi"
    server.shutdown()
    server.server_close()


@pytest.fixture
def lock(tmp_path):
    path = tmp_path / "requirements.lock"
    path.write_text("# a lock\nvulnerable==1.0\nclean==2.0\nold==1.0\n")
    return path


def audit_with_pip(lock: Path, url: str, capsys, *extra: str) -> tuple[int, str]:
    code = dependency_audit.main(["--lock", str(lock), "--pypi-url", url, *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def audit(lock: Path, url: str, capsys, *extra: str) -> tuple[int, str]:
    return audit_with_pip(lock, url, capsys, "--no-pip-audit", *extra)


def test_a_finding_fails_and_every_unaudited_pin_is_named(lock, fake_pypi, capsys, tmp_path):
    code, out = audit(lock, fake_pypi, capsys, "--exceptions", str(tmp_path / "none.toml"))
    assert code == 1
    assert "VULNERABLE vulnerable==1.0: GHSA-aaaa-bbbb-cccc, fixed in 1.1" in out
    assert "GHSA-dddd" not in out, "a withdrawn advisory is not a finding"
    assert "audited 2 (2 by pypi-latest); NOT audited 1" in out
    assert "PARTLY AUDITED" in out and "not audited: old==1.0" in out


def test_an_explained_finding_passes_until_its_date(lock, fake_pypi, capsys, tmp_path):
    exceptions = tmp_path / "exceptions.toml"
    entry = (
        '[[exception]]\nid = "CVE-2099-0001"\npackage = "vulnerable"\nreason = "{reason}"\nuntil = {until}\n'
    )
    exceptions.write_text(entry.format(reason="not reachable from airloop", until="2999-01-01"))
    code, out = audit(lock, fake_pypi, capsys, "--exceptions", str(exceptions))
    assert code == 0 and "accepted   vulnerable==1.0: GHSA-aaaa-bbbb-cccc" in out
    exceptions.write_text(entry.format(reason="not reachable from airloop", until="2000-01-01"))
    assert audit(lock, fake_pypi, capsys, "--exceptions", str(exceptions))[0] == 1
    exceptions.write_text(entry.format(reason="", until="2999-01-01"))
    code, out = audit(lock, fake_pypi, capsys, "--exceptions", str(exceptions))
    assert code == 1 and "no reason given" in out


def test_nothing_reachable_is_reported_as_not_audited_never_as_clean(lock, capsys, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/pypi"
    code, out = audit(lock, dead, capsys, "--exceptions", str(tmp_path / "none.toml"))
    assert code == 0 and "NOTHING WAS AUDITED" in out and "No known vulnerabilities" not in out
    code, _ = audit(lock, dead, capsys, "--exceptions", str(tmp_path / "none.toml"), "--require-audit")
    assert code == 3


def test_a_service_that_cannot_answer_skips_pip_audit_and_says_so(lock, capsys, tmp_path, fake_pypi):
    """Where PyPI's per-version JSON answers 404 (this machine, CI), pip-audit is not waited for."""
    url = fake_pypi.replace("/pypi", "/elsewhere")
    code, out = audit_with_pip(lock, url, capsys, "--exceptions", str(tmp_path / "none.toml"))
    assert code == 0 and "NOTHING WAS AUDITED" in out
    assert "pip-audit's service (PyPI per-version JSON): HTTP 404 for vulnerable==1.0" in out


def test_pip_audit_unable_to_reach_its_service_counts_as_not_audited(lock, fake_pypi, tmp_path):
    """pip-audit itself, its service (pypi.org) behind a proxy that refuses connections."""
    refused = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "HTTPS_PROXY": refused, "HTTP_PROXY": refused, "NO_PROXY": "127.0.0.1"}
    args = ["--lock", str(lock), "--pypi-url", fake_pypi, "--exceptions", str(tmp_path / "none.toml")]
    done = subprocess.run(
        [sys.executable, "-m", "tools.dependency_audit", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert "pip-audit failed" in out, out
    assert "2 by pypi-latest" in out and done.returncode == 1  # the fallback still found the advisory
