"""A real Prometheus server for the tests (the Debian package's ``/usr/bin/prometheus``, which
``.ci/run`` installs), scraping small HTTP servers that stand in for serving replicas."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml

from tasks.common.net import free_port
from tasks.serving.metrics import ServingMetrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"


def tool(name: str) -> str:
    """The path of ``name``; the test fails (not skips) without it: CI installs it."""
    path = shutil.which(name)
    assert path, f"{name} is not installed: apt-get install prometheus (.ci/run installs it)"
    return path


class Replica:
    """One stand-in serving replica: the real ``ServingMetrics``, served as Prometheus scrapes
    the application (``/metrics?scope=replicas``: its counters labelled with its id)."""

    def __init__(self, replica_id: str) -> None:
        self.id, self.metrics = replica_id, ServingMetrics()
        metrics = self.metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = metrics.render_replicas({replica_id: metrics.samples()})
                self.send_response(200)
                self.send_header("Content-Type", metrics.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def poll(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """``check()``'s first truthy answer, asked every 0.1 s; AssertionError after ``timeout``."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        threading.Event().wait(0.1)
    raise AssertionError(f"{what}: not within {timeout} s (last answer {last!r})")


@contextmanager
def prometheus(tmp_path: Path, targets: list[str]) -> Iterator[str]:
    """A Prometheus scraping ``targets`` every second the way deploy/prometheus/prometheus.yml
    scrapes serving (same path and params); yields its URL."""
    deployed = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    serving = next(job for job in deployed["scrape_configs"] if job["job_name"] == "airloop-serving")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "airloop-serving",
                "metrics_path": serving["metrics_path"],
                "params": serving["params"],
                "static_configs": [{"targets": targets}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",  # POST /-/reload
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        poll("prometheus ready", lambda: proc.poll() is not None or _ready(url))
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False
