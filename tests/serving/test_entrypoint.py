"""``python -m tasks.serve``: the container's command, and the Serve config it prints."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from config import PROJECT_ROOT, read_config
from tasks import serve


def test_serve_config_points_at_the_app_builder():
    settings = read_config("production", {"POSTGRES_PASSWORD": "x"})
    config = serve.serve_config(settings)
    app = config["applications"][0]
    assert app["import_path"] == "tasks.serving.app:app_builder" == serve.IMPORT_PATH
    assert app["args"] == {"profile": "production"} and app["route_prefix"] == "/"
    assert config["http_options"] == {"host": "0.0.0.0", "port": 8000}
    module, _, attr = app["import_path"].partition(":")
    assert callable(getattr(__import__(module, fromlist=[attr]), attr))


def test_config_command_prints_yaml():
    env = {**os.environ, "AIRLOOP_PROFILE": "local", "PYTHONPATH": str(PROJECT_ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "tasks.serve", "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=120,
        check=True,
    )
    assert yaml.safe_load(out.stdout)["applications"][0]["name"] == "airloop"


def test_process_env_puts_the_project_on_the_pythonpath():
    settings = read_config("local", {})
    env = serve.process_env(settings)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(PROJECT_ROOT)
    assert "RAY_SERVE_THROUGHPUT_OPTIMIZED" not in env
    fast = read_config("local", {"AIRLOOP__SERVING__THROUGHPUT_OPTIMIZED": "true"})
    assert serve.process_env(fast)["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
