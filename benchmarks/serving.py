"""Serving speed: the full Ray Serve path against in-process predict and ``mlflow models serve``.

One run, one machine, one model version (a real XGBoost model trained and registered by
``tasks.training.run`` on simulated data), measured three ways:

- **in-process**: ``LoadedModel.predict`` of one row (the model alone), and the same with the
  online feature lookup in front (``tasks.features.store.online_features`` + predict): the floor of
  any serving path with and without features;
- **mlflow models serve** (``--env-manager local``, one worker, the baseline): ``POST /invocations``
  with the model's full input (it cannot fetch features, so the client sends them);
- **Ray Serve** (``tasks.serving``): ``POST /score`` with the raw transaction; the ingress fetches
  features from Feast, routes, calls the champion slot, logs and counts.

Both servers run at once and are measured alternately at each load point. For each: open-loop
load at fixed rates (requests sent on schedule whatever the answers do, latency measured from the
scheduled time so queueing is not hidden) reporting p50, p99 and the rate achieved, then a closed
loop at fixed concurrency for the maximum throughput.
Where the Ray Serve time goes comes from its own ``/metrics`` (queue, features and model stages
per batch, batch sizes) and from the difference between the client's and the ingress's latency.
Last, the ingress's adaptive batcher is compared with ``@serve.batch`` on a synthetic stage with
the online store's cost shape (a fixed cost per call), at the same open-loop rates.

Run: ``python -m benchmarks.serving [--rates 50,200 --seconds 15 --concurrency 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

START = "2026-01-01T00:00:00+00:00"

GOAL_P50_MS, GOAL_P99_MS, GOAL_RATE, GOAL_THROUGHPUT_RATIO = 3.0, 10.0, 200, 1.5


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
    from tasks.features import store as feature_store
    from tasks.features import tables as features
    from tasks.ingest.batches import ingest_batch, read_curated
    from tasks.platform import simulate, stack
    from tasks.training import dataset as training_data
    from tasks.training import run as train

    env = {
        "AIRLOOP_HOME": str(home),
        "AIRLOOP__MLFLOW__PORT": str(free_port()),
        "AIRLOOP__SERVING__PORT": str(free_port()),
        "AIRLOOP__SIMULATE__BATCH_MINUTES": "120",
        "AIRLOOP__TRAIN__FAMILIES": "[xgboost]",
        "AIRLOOP__TRAIN__XGBOOST__GRID__MAX_DEPTH": "[6]",
        "AIRLOOP__TRAIN__XGBOOST__MAX_ROUNDS": "200",
        "AIRLOOP__TRAIN__DEVICE": "cpu",
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
    mlflow_up = ThreadPoolExecutor(1).submit(
        stack.start, settings, services=[stack.MLFLOW], timeout=240, quiet=True
    )
    started = time.perf_counter()
    for i in range(hours):
        frame = simulate.generate_batch(settings, "stable", index=i, rows=rows, start=START)
        uri = simulate.write_batch(frame, settings.storage.landing_uri, simulate.batch_name("stable", i))
        assert ingest_batch(uri, settings).status == "ingested"
    changed = features.refresh(settings)
    feature_store.apply(settings)
    feature_store.materialize(settings, changed)
    version = training_data.build(settings)
    mlflow_up.result()
    _say(f"data and features ready in {time.perf_counter() - started:.0f} s ({hours} h x {rows} rows)")
    result = train.run(settings, version.uri, tracking_uri=settings.mlflow.url, say=lambda m: None)
    if result["status"] != "registered":
        raise SystemExit(f"training registered nothing: {result.get('reasons')}")
    _say(f"model {settings.mlflow.registered_model} v{result['version']} trained and registered")
    return settings, result["version"], read_curated(settings)


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

    from tasks.features import store as feature_store

    request = pd.DataFrame(txns)
    request["event_timestamp"] = pd.to_datetime(request["event_timestamp"], utc=True)
    feats = feature_store.online_features(settings, request)
    return model.frame(pd.concat([request, feats], axis=1))


# --- in-process -------------------------------------------------------------------------------


def _request_columns(txn: dict[str, Any]) -> dict[str, list[Any]]:
    """One transaction as the ingress hands it on: columns of plain values, the time parsed."""
    from datetime import datetime

    return {k: [datetime.fromisoformat(v) if k == "event_timestamp" else v] for k, v in txn.items()}


def in_process(settings: Any, model: Any, txns: list[dict[str, Any]], inputs: Any, n: int) -> dict[str, Any]:
    """The serving path's own calls without Serve: ``LoadedModel.predict`` of one row, and
    ``online_columns`` + predict as the ingress and the model slot run them."""
    from tasks.features import store as feature_store

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
        feats = feature_store.online_columns(settings, request)
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
                async with session.post(
                    url, data=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
                ) as resp:
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
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as resp:
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


FLOOR_APP, FLOOR_ROUTE = "floor", "/floor"
MLFLOW, RAY, FLOOR = "mlflow models serve", "ray serve /score", "ray serve no-op floor"


def deploy_floor(settings: Any) -> str:
    """The named baseline for what Ray Serve itself costs here: an application of the same shape
    (FastAPI ingress -> one call to a model deployment) that does no work
    (``benchmarks/serve_floor.py``), in the same Serve instance and mode as airloop's (no CPUs
    reserved, so it fits beside it). Its latency is the floor any Serve application pays on this
    machine; airloop's minus it is what features, models, routing and logging cost."""
    from ray import serve

    from benchmarks.serve_floor import app

    serve.run(app, name=FLOOR_APP, route_prefix=FLOOR_ROUTE)
    return f"{settings.serving.url}{FLOOR_ROUTE}/score"


def _stage_means(before: dict, after: dict) -> dict[str, float]:
    out = {}
    for stage in ("queue", "features", "model_champion", "compute_champion"):
        key_sum = ("airloop_serving_stage_latency_seconds_sum", (("stage", stage),))
        key_count = ("airloop_serving_stage_latency_seconds_count", (("stage", stage),))
        count = after.get(key_count, 0) - before.get(key_count, 0)
        if count:
            out[f"{stage}_ms"] = (after.get(key_sum, 0) - before.get(key_sum, 0)) / count * 1000
    rows_sum = after.get(("airloop_serving_batch_rows_sum", ()), 0) - before.get(
        ("airloop_serving_batch_rows_sum", ()), 0
    )
    batches = after.get(("airloop_serving_batch_rows_count", ()), 0) - before.get(
        ("airloop_serving_batch_rows_count", ()), 0
    )
    if batches:
        out["rows_per_batch"] = rows_sum / batches
    req_sum = ("airloop_serving_request_latency_seconds_sum", (("endpoint", "score"),))
    req_count = ("airloop_serving_request_latency_seconds_count", (("endpoint", "score"),))
    n = after.get(req_count, 0) - before.get(req_count, 0)
    if n:
        out["ingress_ms"] = (after.get(req_sum, 0) - before.get(req_sum, 0)) / n * 1000
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


def _one(url: str, bodies: list[bytes], point: float | None, args: argparse.Namespace, name: str) -> Load:
    if point is None:
        return asyncio.run(_closed_loop(url, bodies, args.concurrency, args.seconds, name))
    return asyncio.run(_open_loop(url, bodies, point, args.seconds, name))


def _mlflow_bodies(inputs: Any) -> list[bytes]:
    split = json.loads(inputs.to_json(orient="split", index=False))
    return [
        json.dumps({"dataframe_split": {"columns": split["columns"], "data": [row]}}).encode()
        for row in split["data"]
    ]


def run(args: argparse.Namespace, settings: Any, version: str, events: Any) -> dict[str, Any]:
    """Both servers up at once, measured alternately at each load point (background load on a
    shared machine drifts; alternating exposes both to the same drift)."""
    import requests

    from tasks.features import store as feature_store
    from tasks.serving import models
    from tasks.serving import process as serve
    from tasks.serving.client import ServingClient

    rates = [float(r) for r in args.rates.split(",") if r]
    model = models.load(settings, version=version, features=feature_store.feature_names(settings))
    txns = transactions(settings, events, args.requests)
    inputs = model_inputs(settings, model, txns)
    found = float(inputs[feature_store.feature_names(settings)[0]].notna().mean())
    _say(f"model v{version} ({len(model.columns)} inputs); {found:.0%} of the requests' customers known")
    local = in_process(settings, model, txns, inputs, 3000)

    mlflow_proc, mlflow_url, _ = start_mlflow_serve(settings, version)
    try:
        mlflow_bodies = _mlflow_bodies(inputs)
        headers = {"Content-Type": "application/json"}
        check = requests.post(f"{mlflow_url}/invocations", data=mlflow_bodies[0], headers=headers, timeout=60)
        assert check.status_code == 200, check.text
        url = serve.start(settings, include_dashboard=False)
        client = ServingClient(url)
        assert client.status()["slots"]["champion"]["version"] == version
        ray_bodies = [json.dumps(t).encode() for t in txns]
        first = client.score(txns[0])
        expected = float(model.predict(inputs.iloc[[0]])[0])
        assert abs(first["score"] - expected) < 1e-9, (first, expected)  # same model, same features
        floor_url = deploy_floor(settings)
        _say("servers up (Ray Serve's score equals the in-process model's); measuring")
        targets = {
            MLFLOW: f"{mlflow_url}/invocations",
            FLOOR: floor_url,
            RAY: f"{url}/score",
        }
        bodies = {MLFLOW: mlflow_bodies, FLOOR: ray_bodies, RAY: ray_bodies}
        for name, target in targets.items():  # warm up
            asyncio.run(_closed_loop(target, bodies[name], 4, 3.0, name))
        runs: dict[str, list[Load]] = {name: [] for name in targets}
        stages = []
        for point in [*rates, None]:
            for name, target in targets.items():
                snap = client.metrics() if name == RAY else None
                runs[name].append(_one(target, bodies[name], point, args, name))
                if snap is not None:
                    stages.append(_stage_means(snap, client.metrics()))
        serve.stop(settings, shutdown_ray=True)
    finally:
        mlflow_proc.terminate()
        mlflow_proc.wait(timeout=30)
    return {"local": local, "rates": rates, "runs": runs, "stages": stages}


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    local, rates, stages, runs = result["local"], result["rates"], result["stages"], result["runs"]
    mlflow_runs, ray_runs, floor_runs = runs[MLFLOW], runs[RAY], runs[FLOOR]
    mode = "throughput-optimized behind HAProxy" if args.throughput_optimized else "default proxy"
    print()
    print(f"Ray Serve mode: {mode}")
    print(
        f"in-process predict, 1 row:            p50 {local['model_p50_ms']:.3f} ms  "
        f"p99 {local['model_p99_ms']:.3f} ms  ({local['model_rps']:.0f} rows/s on one thread)"
    )
    print(
        f"in-process online features + predict: p50 {local['features_model_p50_ms']:.2f} ms  "
        f"p99 {local['features_model_p99_ms']:.2f} ms"
    )
    print()
    header = (
        f"{'system':<22} {'mode':<6} {'target':>8} {'achieved':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}"
    )
    print(header)
    for group in zip(mlflow_runs, floor_runs, ray_runs, strict=True):
        for one in group:
            print(one.row())
    print()
    labels = [f"{r:.0f} rps" for r in rates] + [f"c={args.concurrency}"]
    for label, stage in zip(labels, stages, strict=True):
        parts = ", ".join(f"{k} {v:.2f}" for k, v in stage.items())
        print(f"ray serve, where the time goes at {label}: {parts}")
    ray_max, mlflow_max, floor_max = ray_runs[-1].achieved, mlflow_runs[-1].achieved, floor_runs[-1].achieved
    print()
    print(
        f"throughput ratio ray serve / mlflow models serve (c={args.concurrency}): "
        f"{ray_max / mlflow_max:.2f}x (goal >= {GOAL_THROUGHPUT_RATIO}x); "
        f"ray serve / no-op floor {ray_max / floor_max:.2f}x"
    )
    if result.get("batching"):
        print()
        print(f"batching policies on a synthetic first stage ({BATCH_FIXED_S * 1000:.0f} ms per call "
              f"+ {BATCH_PER_ROW_S * 1000:.1f} ms per row), open loop:")  # fmt: skip
        for line in result["batching"]:
            print(f"  {line}")
    print()
    for i, rate in enumerate(rates):
        ray, base, floor = ray_runs[i], mlflow_runs[i], floor_runs[i]
        p50, p99 = _pct(ray.latencies, 50) * 1000, _pct(ray.latencies, 99) * 1000
        f50, f99 = _pct(floor.latencies, 50) * 1000, _pct(floor.latencies, 99) * 1000
        goal = f" (goal p50 <= {GOAL_P50_MS}, p99 <= {GOAL_P99_MS})" if rate == GOAL_RATE else ""
        print(
            f"at {rate:.0f} rps: ray serve p50 {p50:.2f} ms, p99 {p99:.2f} ms{goal}; "
            f"no-op floor p50 {f50:.2f} ms, p99 {f99:.2f} ms (airloop adds {p50 - f50:.2f} ms at p50); "
            f"p50 ratio to mlflow models serve {_pct(ray.latencies, 50) / _pct(base.latencies, 50):.2f}x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="50,200", help="open-loop rates, requests per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop clients (max throughput)")
    parser.add_argument("--hours", type=int, default=8)
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

    from tasks.platform import stack

    home = Path(tempfile.mkdtemp(prefix="airloop-bench-serving-"))
    settings, version, events = prepare(home, args.hours, args.rows)
    serving = settings.serving.model_copy(update={"throughput_optimized": args.throughput_optimized})
    settings = settings.model_copy(update={"serving": serving})
    try:
        result = run(args, settings, version, events)
    finally:
        stack.stop(settings, services=[stack.MLFLOW], quiet=True)
    result["batching"] = batching_policies([50.0, 200.0, 400.0]) if not args.skip_batching else []
    report(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
