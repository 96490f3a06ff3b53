"""Serving speed: both model placements against no-op Serve floors and mlflow models serve.

Both placements of ``tasks.serving``, the floors and the baseline are measured in one run.

One machine, one model version (a real XGBoost model trained and registered by
``tasks.training.run`` on simulated data), these systems up at once:

- **airloop, ingress placement** (``serving.placement: ingress``, the default): ``POST /score``
  with the raw transaction; the ingress fetches features from Feast, routes, scores in its own
  process (no Ray hop), logs and counts;
- **airloop, deployments placement**: the same application with each model slot its own Serve
  deployment (one Ray hop per batch);
- **airloop ingress, in-memory log**: the ingress placement with the last round's inference log
  (rows buffered in memory) instead of the write-ahead log: what fsync'ing every prediction before
  its answer costs (``benchmarks/serve_floor.memlog_app``);
- **no-op floors** (``benchmarks/serve_floor.py``): Serve applications of the same two shapes
  doing no work, in the same Serve instance and mode: what Serve itself costs here;
- **mlflow models serve** (``--env-manager local``, one worker, the baseline): ``POST /invocations``
  with the model's full input (it cannot fetch features, so the client sends them).

Load points, each system measured in turn at each point (background load on a shared machine
drifts; alternating exposes all to the same drift): a closed loop with one client (c=1), an open
loop at a fixed rate (requests sent on schedule whatever the answers do, latency measured from
the scheduled time so queueing is not hidden), and a closed loop at high concurrency (the
throughput). Where airloop's time goes comes from its own ``/metrics`` (queue, features and model
stages per batch). Every request is marked ``X-Airloop-Traffic: synthetic``, so the monitor leaves
it out. The in-process cost of the model and of features + model is printed first;
last, the ingress's adaptive batcher is compared with ``@serve.batch`` on a synthetic stage.

Run: ``python -m benchmarks.serving [--quick] [--seconds 15 --rate 50 --concurrency 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.common.net import free_port
from tasks.common.secrets import use_mlflow_credentials

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback, read when Ray is imported

START = "2026-01-01T00:00:00+00:00"

GOAL_P50_MS, GOAL_P99_MS, GOAL_THROUGHPUT_RATIO = 3.0, 10.0, 3.0
"""For the ingress placement: p50 and p99 at c=1 and at the open-loop rate, c=64 throughput
against ``mlflow models serve``."""

MLFLOW = "mlflow models serve"
INGRESS, DEPLOYMENTS = "airloop ingress", "airloop deployments"
MEMLOG = "ingress, in-memory log"
HEADERS = {"Content-Type": "application/json", "X-Airloop-Traffic": "synthetic"}
"""Load-test traffic is marked, so the monitor leaves it out (issue 14.5)."""
FLOOR, FLOOR_HOP = "no-op floor", "no-op floor + hop"
AIRLOOP = {INGRESS: "ingress", DEPLOYMENTS: "deployments"}
"""The airloop systems and their ``serving.placement``."""
FLOORS = {FLOOR: ("ingress_app", "floor", "/floor"), FLOOR_HOP: ("hop_app", "floor-hop", "/floor-hop")}
"""No-op systems: the application in ``benchmarks.serve_floor``, its name and route prefix."""


def _say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# --- the world: data, features, a trained and registered model ------------------------------


def prepare(home: Path, hours: int, rows: int) -> tuple[Any, str, Any]:
    """Simulated hours ingested, features materialized, one XGBoost model trained and registered."""
    from config import read_config
    from tasks.features import store, tables
    from tasks.features.materialization import materialize
    from tasks.ingest.batches import ingest_batch
    from tasks.ingest.curated import read_curated
    from tasks.platform import simulate, stack
    from tasks.training import dataset
    from tasks.training import run as training

    env = {
        "AIRLOOP_HOME": str(home),
        "AIRLOOP__MLFLOW__PORT": str(free_port()),
        "AIRLOOP__METADATA_DB__MLFLOW_DATABASE": "null",  # MLflow on its SQLite file: no Postgres here
        "AIRLOOP__MLFLOW__SIGNING_KEY": secrets.token_urlsafe(24),
        "AIRLOOP__SERVING__ADMIN_TOKEN": secrets.token_urlsafe(24),
        "AIRLOOP__SERVING__PORT": str(free_port()),
        "AIRLOOP__SERVING__REPLICA_CPUS": "0.2",  # five replicas (two placements, in-memory log), two cores
        "AIRLOOP__SIMULATE__BATCH_MINUTES": "120",
        "AIRLOOP__TRAIN__FAMILIES": "[xgboost]",
        "AIRLOOP__TRAIN__XGBOOST__GRID__MAX_DEPTH": "[6]",
        "AIRLOOP__TRAIN__XGBOOST__MAX_ROUNDS": "200",
        "AIRLOOP__TRAIN__DEVICE": "cpu",
        "AIRLOOP__TRAIN__WARMUP_HOURS": "0",  # hours of history, not the 7 days a settled 7-day window needs
        "AIRLOOP__TRAIN__LATENCY_ROWS": "500",
        # the gate is not what is measured here: a model that trains is served
        "AIRLOOP__GATE__MIN_ROC_AUC": "0.5",
        "AIRLOOP__GATE__MIN_PR_AUC": "0.0",
        "AIRLOOP__GATE__MAX_LOG_LOSS": "10",
        "AIRLOOP__GATE__MAX_ECE": "1",
        "AIRLOOP__GATE__MIN_HOLDOUT_POSITIVES": "1",
        "AIRLOOP__GATE__MAX_LATENCY_MS_PER_ROW": "1000",
        "AIRLOOP__GATE__FAIRNESS__MAX_TPR_GAP": "1",
    }
    settings = read_config("local", env)
    use_mlflow_credentials(settings)
    mlflow_up = ThreadPoolExecutor(1).submit(
        stack.start, settings, services=[stack.MLFLOW], timeout=240, quiet=True
    )
    started = time.perf_counter()
    for i in range(hours):
        frame = simulate.generate_batch(settings, "stable", index=i, rows=rows, start=START)
        uri = simulate.write_batch(frame, settings.storage.landing_uri, simulate.batch_name("stable", i))
        assert ingest_batch(uri, settings).status == "ingested"
    changed = tables.refresh(settings)
    store.apply(settings)
    materialize(settings, changed)
    version = dataset.build(settings)
    mlflow_up.result()
    _say(f"data and features ready in {time.perf_counter() - started:.0f} s ({hours} h x {rows} rows)")
    result = training.run(settings, version.uri, tracking_uri=settings.mlflow.url, say=lambda m: None)
    if result.status != "registered":
        raise SystemExit(f"training registered nothing: {result.reasons}")
    _say(f"model {settings.mlflow.registered_model} v{result.version} trained and registered")
    return settings, result.version, read_curated(settings)


def transactions(settings: Any, events: Any, n: int) -> list[dict[str, Any]]:
    """Requests for known entities, one hour after the data (features exist for most of them)."""
    import pandas as pd

    sample = events.sample(n, random_state=7, replace=len(events) < n).reset_index(drop=True)
    when = pd.Timestamp(events["event_timestamp"].max()) + pd.Timedelta(hours=1)
    return [
        {
            "transaction_id": f"bench-{i}",
            "customer_id": int(r.customer_id),
            "merchant_id": int(r.merchant_id),
            "amount": float(r.amount),
            "merchant_category": r.merchant_category,
            "channel": r.channel,
            "region": r.region,
            "event_timestamp": when.isoformat(),
        }
        for i, r in enumerate(sample.itertuples())
    ]


def model_inputs(settings: Any, model: Any, txns: list[dict[str, Any]]) -> Any:
    """What the model takes for each transaction: the online features joined to the request."""
    import pandas as pd

    from tasks.features.online import online_features

    request = pd.DataFrame(txns)
    request["event_timestamp"] = pd.to_datetime(request["event_timestamp"], utc=True)
    feats = online_features(settings, request)
    return model.frame(pd.concat([request, feats], axis=1))


# --- in-process -------------------------------------------------------------------------------


def _request_columns(txn: dict[str, Any]) -> dict[str, list[Any]]:
    """One transaction as the ingress hands it on: columns of plain values, the time parsed."""
    from datetime import datetime

    return {k: [datetime.fromisoformat(v) if k == "event_timestamp" else v] for k, v in txn.items()}


def in_process(settings: Any, model: Any, txns: list[dict[str, Any]], inputs: Any, n: int) -> dict[str, Any]:
    """The serving path's own calls without Serve: ``LoadedModel.predict`` of one row, and
    ``online_columns`` + predict as the ingress and the model slot run them."""
    from tasks.features.online import online_columns

    rows = [inputs.iloc[[i % len(inputs)]] for i in range(n)]
    for row in rows[:50]:
        model.predict(row)
    times = []
    for row in rows:
        t = time.perf_counter()
        model.predict(row)
        times.append(time.perf_counter() - t)
    requests = [_request_columns(txns[i % len(txns)]) for i in range(min(n, 1000))]
    with_features = []
    for request in requests:
        t = time.perf_counter()
        feats = online_columns(settings, request)
        model.predict({**request, **feats})
        with_features.append(time.perf_counter() - t)
    return {
        "model_p50_ms": _pct(times, 50) * 1000,
        "model_p99_ms": _pct(times, 99) * 1000,
        "model_rps": 1.0 / statistics.mean(times),
        "features_model_p50_ms": _pct(with_features, 50) * 1000,
        "features_model_p99_ms": _pct(with_features, 99) * 1000,
    }


# --- HTTP load --------------------------------------------------------------------------------


@dataclass
class Load:
    name: str
    mode: str
    target: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def achieved(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        p50, p99 = _pct(self.latencies, 50) * 1000, _pct(self.latencies, 99) * 1000
        target = f"{self.target:.0f} rps" if self.mode == "open" else f"c={self.target:.0f}"
        return (
            f"{self.name:<22} {self.mode:<6} {target:>8} {self.achieved:9.1f} {p50:9.2f} {p99:9.2f} "
            f"{self.errors:7d}"
        )


async def _open_loop(url: str, bodies: list[bytes], rate: float, seconds: float, name: str) -> Load:
    import aiohttp

    n = int(rate * seconds)
    result = Load(name, "open", rate)
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = loop.time() + 0.2

        async def one(i: int) -> None:
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            try:
                async with session.post(url, data=bodies[i % len(bodies)], headers=HEADERS) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            if ok:
                result.latencies.append(loop.time() - scheduled)
            else:
                result.errors += 1

        await asyncio.gather(*(one(i) for i in range(n)))
        result.seconds = loop.time() - start
    return result


async def _closed_loop(url: str, bodies: list[bytes], concurrency: int, seconds: float, name: str) -> Load:
    import aiohttp

    result = Load(name, "closed", concurrency)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    counter = iter(range(10**9))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
    ) as session:

        async def worker() -> None:
            while loop.time() < deadline:
                body = bodies[next(counter) % len(bodies)]
                t = loop.time()
                try:
                    async with session.post(url, data=body, headers=HEADERS) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                if ok:
                    result.latencies.append(loop.time() - t)
                else:
                    result.errors += 1

        started = loop.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = loop.time() - started
    return result


# --- servers ----------------------------------------------------------------------------------


def start_mlflow_serve(settings: Any, version: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    import requests

    port = free_port()
    log = Path(tempfile.mkstemp(prefix="mlflow-serve-", suffix=".log")[1])
    from config import PROJECT_ROOT

    bin_dir = str(Path(sys.executable).parent)  # mlflow execs `uvicorn` from PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": settings.mlflow.url,
        "PYTHONPATH": str(PROJECT_ROOT),
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
    }
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{settings.mlflow.registered_model}/{version}",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "-p",
        str(port),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mlflow models serve exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                return proc, f"http://127.0.0.1:{port}", log
        except requests.RequestException:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit("mlflow models serve did not come up in 180 s")


def deploy_floors(settings: Any) -> dict[str, str]:
    """The no-op applications (``benchmarks/serve_floor.py``) in the same Serve instance and mode
    as airloop's (no CPUs reserved, so they fit beside it); their ``/score`` URLs."""
    from ray import serve

    from benchmarks import serve_floor

    base = settings.serving.url.removesuffix(settings.serving.route_prefix.rstrip("/"))
    urls = {}
    for name, (attr, app_name, prefix) in FLOORS.items():
        serve.run(getattr(serve_floor, attr), name=app_name, route_prefix=prefix)
        urls[name] = f"{base}{prefix}/score"
    return urls


def placed(settings: Any, placement: str) -> Any:
    """``settings`` for one placement: the configured one keeps its name and route; the other
    gets its own, so both run in one Serve instance."""
    serving = settings.serving
    if placement != serving.placement:
        serving = serving.model_copy(
            update={
                "placement": placement,
                "app_name": f"airloop-{placement}",
                "route_prefix": f"/{placement}",
            }
        )
    return settings.model_copy(update={"serving": serving})


def _stage_means(before: dict, after: dict) -> dict[str, float]:
    """Mean per batch of each stage, rows per batch and the ingress's own latency, over a window."""

    def grown(name: str, labels: tuple = ()) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    out = {}
    for stage in ("queue", "features", "model_champion", "compute_champion"):
        count = grown("airloop_serving_stage_latency_seconds_count", (("stage", stage),))
        if count:
            out[f"{stage}_ms"] = (
                grown("airloop_serving_stage_latency_seconds_sum", (("stage", stage),)) / count * 1000
            )
    batches = grown("airloop_serving_batch_rows_count")
    if batches:
        out["rows_per_batch"] = grown("airloop_serving_batch_rows_sum") / batches
    n = grown("airloop_serving_request_latency_seconds_count", (("endpoint", "score"),))
    if n:
        out["ingress_ms"] = (
            grown("airloop_serving_request_latency_seconds_sum", (("endpoint", "score"),)) / n * 1000
        )
    return out


# --- batching policies ----------------------------------------------------------------------

BATCH_FIXED_S, BATCH_PER_ROW_S = 0.010, 0.0002
"""A synthetic first stage shaped like the online-store call: a fixed cost per call plus a little
per row (Feast's lookup here is ~10 ms whatever the rows, ~0.2 ms more per row)."""


async def _policy(kind: str, rate: float, seconds: float, wait_s: float) -> str:
    from ray import serve

    from tasks.serving.batching import MicroBatcher

    sizes: list[int] = []

    def work(n: int) -> None:
        time.sleep(BATCH_FIXED_S + BATCH_PER_ROW_S * n)

    async def stage(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.to_thread(work, len(items))
        return items

    if kind == "@serve.batch":

        class Handler:
            @serve.batch(max_batch_size=256, batch_wait_timeout_s=wait_s)
            async def handle(self, items: list[int]) -> list[int]:
                return await stage(items)

        submit = Handler().handle
    else:

        async def finish(items: list[int], state: list[int]) -> list[int]:
            return state

        submit = MicroBatcher(stage, finish, max_batch_size=256, max_in_flight=1).submit
    loop = asyncio.get_running_loop()
    start, latencies = loop.time() + 0.05, []

    async def one(i: int) -> None:
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        await submit(i)
        latencies.append(loop.time() - scheduled)

    await asyncio.gather(*(one(i) for i in range(int(rate * seconds))))
    name = kind if kind != "@serve.batch" else f"{kind} (wait {wait_s * 1000:.0f} ms)"
    return (
        f"{name:<26} {rate:5.0f} rps  p50 {_pct(latencies, 50) * 1000:8.1f} ms  "
        f"p99 {_pct(latencies, 99) * 1000:8.1f} ms  rows/batch {statistics.mean(sizes):5.1f}"
    )


def batching_policies(rates: list[float], seconds: float = 4.0) -> list[str]:
    """The ingress's adaptive batcher against ``@serve.batch`` on the same synthetic first stage."""
    import ray.serve.batching

    # Outside a replica, @serve.batch's only use of the replica context is a warning check.
    ray.serve.batching._BatchQueue._warn_if_max_batch_size_exceeds_max_ongoing_requests = lambda self: None
    lines = []
    for rate in rates:
        lines.append(asyncio.run(_policy("adaptive (tasks.serving)", rate, seconds, 0.0)))
        for wait_s in (0.002, 0.010):
            lines.append(asyncio.run(_policy("@serve.batch", rate, seconds, wait_s)))
    return lines


# --- main -------------------------------------------------------------------------------------

POINTS = ("c=1", "rate", "c=max")
"""Load points: closed loop with one client, open loop at ``--rate``, closed loop at ``--concurrency``."""


def _one(url: str, bodies: list[bytes], point: str, args: argparse.Namespace, name: str) -> Load:
    if point == "c=1":
        return asyncio.run(_closed_loop(url, bodies, 1, args.seconds, name))
    if point == "rate":
        return asyncio.run(_open_loop(url, bodies, args.rate, args.seconds, name))
    return asyncio.run(_closed_loop(url, bodies, args.concurrency, args.seconds, name))


def _mlflow_bodies(inputs: Any) -> list[bytes]:
    split = json.loads(inputs.to_json(orient="split", index=False))
    return [
        json.dumps({"dataframe_split": {"columns": split["columns"], "data": [row]}}).encode()
        for row in split["data"]
    ]


def start_airloop(
    settings: Any, version: str, model: Any, txns: list[dict[str, Any]], inputs: Any
) -> tuple[dict[str, str], dict[str, Any]]:
    """Both placements' applications on one local Ray; each answers the in-process model's score."""
    from ray import serve as ray_serve

    from benchmarks import serve_floor
    from tasks.serving import process as serve
    from tasks.serving.client import ServingClient

    urls, clients = {}, {}
    for name, placement in AIRLOOP.items():
        url = serve.start(placed(settings, placement))
        urls[name], clients[name] = (
            f"{url}/score",
            ServingClient.from_settings(settings, url=url, synthetic=True),
        )
    base = settings.serving.url.removesuffix(settings.serving.route_prefix.rstrip("/"))
    ray_serve.run(serve_floor.memlog_app(settings), name="airloop-memlog", route_prefix="/memlog")
    urls[MEMLOG] = f"{base}/memlog/score"
    clients[MEMLOG] = ServingClient.from_settings(settings, url=f"{base}/memlog", synthetic=True)
    for name, client in clients.items():
        assert client.status()["slots"]["champion"]["version"] == version, name
        first = client.score(txns[0])
        expected = float(model.predict(inputs.iloc[[0]])[0])
        assert abs(first["score"] - expected) < 1e-9, (name, first, expected)  # same model, same features
    return urls, clients


def run(args: argparse.Namespace, settings: Any, version: str, events: Any) -> dict[str, Any]:
    """Every system up at once, measured in turn at each load point."""
    import requests

    from tasks.features.store import feature_names
    from tasks.serving import models
    from tasks.serving import process as serve

    model = models.load(settings, version=version, features=feature_names(settings))
    txns = transactions(settings, events, args.requests)
    inputs = model_inputs(settings, model, txns)
    found = float(inputs[feature_names(settings)[0]].notna().mean())
    _say(f"model v{version} ({len(model.columns)} inputs); {found:.0%} of the requests' customers known")
    local = in_process(settings, model, txns, inputs, 1000 if args.quick else 3000)

    mlflow_proc, mlflow_url, _ = start_mlflow_serve(settings, version)
    try:
        mlflow_bodies = _mlflow_bodies(inputs)
        check = requests.post(
            f"{mlflow_url}/invocations",
            data=mlflow_bodies[0],
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert check.status_code == 200, check.text
        targets, clients = start_airloop(settings, version, model, txns, inputs)
        targets.update(deploy_floors(settings))
        targets[MLFLOW] = f"{mlflow_url}/invocations"
        _say("servers up (both placements answer the in-process model's score); measuring")
        ray_bodies = [json.dumps(t).encode() for t in txns]
        bodies = {name: mlflow_bodies if name == MLFLOW else ray_bodies for name in targets}
        for name, target in targets.items():  # warm up
            asyncio.run(_closed_loop(target, bodies[name], 4, 1.0 if args.quick else 3.0, name))
        runs: dict[str, dict[str, Load]] = {name: {} for name in targets}
        stages: dict[str, dict[str, dict[str, float]]] = {name: {} for name in clients}
        for point in POINTS:
            for name, target in targets.items():
                snap = clients[name].metrics() if name in clients else None
                runs[name][point] = _one(target, bodies[name], point, args, name)
                if snap is not None:
                    stages[name][point] = _stage_means(snap, clients[name].metrics())
        serve.stop(settings, shutdown_ray=True)
    finally:
        mlflow_proc.terminate()
        mlflow_proc.wait(timeout=30)
    return {"local": local, "runs": runs, "stages": stages}


def _label(point: str, args: argparse.Namespace) -> str:
    return {"c=1": "c=1", "rate": f"{args.rate:.0f} rps", "c=max": f"c={args.concurrency}"}[point]


def _goals(args: argparse.Namespace, runs: dict[str, dict[str, Load]]) -> list[str]:
    """The ingress placement's figures against the issue's goals (and the others' beside them)."""
    lines = []
    for name in (INGRESS, DEPLOYMENTS):
        for point in ("c=1", "rate"):
            load = runs[name][point]
            p50, p99 = _pct(load.latencies, 50) * 1000, _pct(load.latencies, 99) * 1000
            met = "met" if p50 <= GOAL_P50_MS and p99 <= GOAL_P99_MS else "missed"
            goal = f" (goal p50 <= {GOAL_P50_MS}, p99 <= {GOAL_P99_MS}: {met})" if name == INGRESS else ""
            floor = runs[FLOOR if name == INGRESS else FLOOR_HOP][point]
            f50 = _pct(floor.latencies, 50) * 1000
            lines.append(
                f"{name} at {_label(point, args)}: p50 {p50:.2f} ms, p99 {p99:.2f} ms{goal}; "
                f"its floor's p50 {f50:.2f} ms (airloop adds {p50 - f50:.2f} ms)"
            )
    for point in ("c=1", "rate"):
        wal, mem = runs[INGRESS][point], runs[MEMLOG][point]
        lines.append(
            f"write-ahead log (fsync before the answer) vs the in-memory log at {_label(point, args)}: "
            f"p50 {_pct(wal.latencies, 50) * 1000:.2f} vs {_pct(mem.latencies, 50) * 1000:.2f} ms, "
            f"p99 {_pct(wal.latencies, 99) * 1000:.2f} vs {_pct(mem.latencies, 99) * 1000:.2f} ms"
        )
    ratio = runs[INGRESS]["c=max"].achieved / max(runs[MEMLOG]["c=max"].achieved, 1e-9)
    lines.append(f"throughput write-ahead log / in-memory log at c={args.concurrency}: {ratio:.2f}x")
    base = runs[MLFLOW]["c=max"].achieved
    for name in (INGRESS, MEMLOG, DEPLOYMENTS, FLOOR, FLOOR_HOP):
        ratio = runs[name]["c=max"].achieved / base if base else float("nan")
        goal = f" (goal >= {GOAL_THROUGHPUT_RATIO}x: {'met' if ratio >= GOAL_THROUGHPUT_RATIO else 'missed'})"
        lines.append(
            f"throughput {name} / {MLFLOW} at c={args.concurrency}: {ratio:.2f}x"
            + (goal if name == INGRESS else "")
        )
    return lines


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    local, runs, stages = result["local"], result["runs"], result["stages"]
    mode = "throughput-optimized behind HAProxy" if args.throughput_optimized else "default proxy"
    print()
    print(f"Ray Serve mode: {mode}; {args.seconds:.0f} s per measurement")
    print(
        f"in-process predict, 1 row:            p50 {local['model_p50_ms']:.3f} ms  "
        f"p99 {local['model_p99_ms']:.3f} ms  ({local['model_rps']:.0f} rows/s on one thread)"
    )
    print(
        f"in-process online features + predict: p50 {local['features_model_p50_ms']:.2f} ms  "
        f"p99 {local['features_model_p99_ms']:.2f} ms"
    )
    print()
    print(
        f"{'system':<22} {'mode':<6} {'target':>8} {'achieved':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}"
    )
    for point in POINTS:
        for name in runs:
            print(runs[name][point].row())
    print()
    for name, by_point in stages.items():
        for point, stage in by_point.items():
            parts = ", ".join(f"{k} {v:.2f}" for k, v in stage.items())
            print(f"{name}, where the time goes at {_label(point, args)}: {parts}")
    print()
    for line in _goals(args, runs):
        print(line)
    if result.get("batching"):
        print()
        print(f"batching policies on a synthetic first stage ({BATCH_FIXED_S * 1000:.0f} ms per call "
              f"+ {BATCH_PER_ROW_S * 1000:.1f} ms per row), open loop:")  # fmt: skip
        for line in result["batching"]:
            print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short measurements, less data, no batching comparison"
    )
    parser.add_argument("--seconds", type=float, default=None, help="per measurement (default 15, quick 5)")
    parser.add_argument("--rate", type=float, default=50.0, help="open-loop rate, requests per second")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop clients (max throughput)")
    parser.add_argument(
        "--hours", type=int, default=None, help="simulated hours of data (default 8, quick 4)"
    )
    parser.add_argument("--rows", type=int, default=2000, help="transactions per simulated batch")
    parser.add_argument("--requests", type=int, default=500, help="distinct transactions replayed")
    parser.add_argument(
        "--default-proxy",
        dest="throughput_optimized",
        action="store_false",
        help="Serve's default Python proxy instead of serving.throughput_optimized (HAProxy)",
    )
    parser.add_argument("--skip-batching", action="store_true", help="skip the batching-policy comparison")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (5.0 if args.quick else 15.0)
    args.hours = args.hours or (4 if args.quick else 8)

    from tasks.platform import stack

    home = Path(tempfile.mkdtemp(prefix="airloop-bench-serving-"))
    settings, version, events = prepare(home, args.hours, args.rows)
    serving = settings.serving.model_copy(update={"throughput_optimized": args.throughput_optimized})
    settings = settings.model_copy(update={"serving": serving})
    try:
        result = run(args, settings, version, events)
    finally:
        stack.stop(settings, services=[stack.MLFLOW], quiet=True)
    skip = args.skip_batching or args.quick
    result["batching"] = [] if skip else batching_policies([args.rate, 200.0, 400.0])
    report(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
