"""The whole loop on the local profile, on simulated data: what `make demo` runs.

Starts the local stack with the serving application, then plays the upstream systems: drops
transaction batches in the landing zone and posts an asset event for each (plus one bad batch, to
show quarantine), waits for the ingest runs they trigger and the features runs those trigger,
triggers a training run, waits for the deploy run its registered model triggers (the first model
goes live after its smoke test), sends live traffic with delayed labels to the served model, and
prints what happened and where to look. The monitor DAG takes it from there on its cron.

``--until features`` stops after the features runs (no training, no serving).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import UTC, datetime

from config import Settings, load_config
from tasks.common import storage
from tasks.ingest.batches import curated_row_count
from tasks.platform import airflow_client as airflow_api
from tasks.platform import simulate, stack


def _say(msg: str) -> None:
    print(msg, flush=True)


def _next_index(settings: Settings) -> int:
    """Continue the simulated history where the last demo stopped (so reruns add new rows)."""
    done = storage.list_files(storage.join(settings.storage.curated_uri, "_sources"), ["*.json"])
    return len(done)


def land_batches(settings: Settings, batches: int, rows: int, bad_kind: str | None) -> list[str]:
    """Write batches into the landing zone and tell Airflow about each, like an upstream system."""
    first = _next_index(settings)
    uris = []
    for index in range(first, first + batches):
        df = simulate.generate_batch(settings, "stable", index=index, rows=rows)
        uri = simulate.write_batch(df, settings.storage.landing_uri, simulate.batch_name("stable", index))
        simulate.notify_airflow(uri, settings, rows=len(df))
        _say(f"  landed {storage.basename(uri)}  {len(df)} rows, asset event posted")
        uris.append(uri)
    if bad_kind:
        bad = simulate.make_bad_batch(settings, bad_kind, index=first, rows=rows)
        uri = simulate.write_bad_batch(bad, settings.storage.landing_uri)
        simulate.notify_airflow(uri, settings)
        _say(f"  landed {storage.basename(uri)}  (bad on purpose: {bad.description})")
        uris.append(uri)
    return uris


def _touched_since(runs: list[dict], since: datetime) -> list[dict]:
    """Runs still going or ended after ``since``: a cron run that began before the batches
    landed may be the one that swept them (the hourly sweep runs as soon as the stack starts)."""
    return [r for r in runs if not r.get("end_date") or datetime.fromisoformat(r["end_date"]) >= since]


def wait_for_ingest(
    client: airflow_api.AirflowClient, uris: list[str], since: datetime, timeout: float
) -> list[dict]:
    """Poll until every landed file has left the landing zone and no ingest run is in flight.

    Waiting for files rather than for particular asset events: any run (asset-triggered or
    cron) may be the one that sweeps a file, and events that arrive together share a run.
    """
    deadline = time.monotonic() + timeout
    while True:
        runs = _touched_since(client.dag_runs("ingest"), since)
        waiting = [u for u in uris if storage.exists(u)]
        in_flight = [r for r in runs if r["state"] not in airflow_api.TERMINAL_RUN_STATES]
        if runs and not waiting and not in_flight:
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"ingest did not finish in {timeout:.0f}s: still landing {waiting}, "
                f"runs in flight {[r['dag_run_id'] for r in in_flight]}"
            )
        time.sleep(2)


def wait_for_runs(
    client: airflow_api.AirflowClient, dag_id: str, since: datetime, timeout: float
) -> list[dict]:
    """Poll until ``dag_id`` has run since ``since`` and has no run in flight."""
    deadline = time.monotonic() + timeout
    while True:
        runs = _touched_since(client.dag_runs(dag_id), since)
        in_flight = [r for r in runs if r["state"] not in airflow_api.TERMINAL_RUN_STATES]
        if runs and not in_flight:
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{dag_id} did not finish in {timeout:.0f}s: runs {[r['state'] for r in runs]}"
            )
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.platform.demo", description=__doc__)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--rows", type=int, default=None, help="rows per batch (default: config)")
    parser.add_argument("--bad", default="nulls", choices=[*simulate.BAD_KINDS, "none"])
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--until", choices=["features", "serve"], default="serve")
    parser.add_argument("--traffic-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    settings = load_config()
    rows = args.rows or settings.simulate.batch_rows
    whole = args.until == "serve"
    steps = 7 if whole else 4

    _say(f"==> 1/{steps} starting the local stack" + (" and the serving application" if whole else ""))
    stack.start(settings, services=stack.LOOP if whole else stack.SERVICES)
    client = airflow_api.AirflowClient.from_settings(settings)
    client.wait_for_dag("ingest", timeout=180)

    _say(f"==> 2/{steps} upstream: {args.batches} batches of {rows} rows into {settings.storage.landing_uri}")
    since = datetime.now(UTC)
    uris = land_batches(settings, args.batches, rows, None if args.bad == "none" else args.bad)

    _say(f"==> 3/{steps} waiting for the ingest runs the asset events triggered")
    runs = wait_for_ingest(client, uris, since, args.timeout)
    for run in sorted(runs, key=lambda r: r["run_after"]):
        note = "  (red on purpose: it quarantined the bad batch)" if run["state"] == "failed" else ""
        _say(f"  {run['dag_run_id']:<60} {run['run_type']:<16} {run['state']}{note}")
    _say(f"==> 4/{steps} waiting for the features runs the curated asset triggered")
    for run in wait_for_runs(client, "features", since, args.timeout):
        _say(f"  {run['dag_run_id']:<60} {run['run_type']:<16} {run['state']}")
    from tasks.features.store import watermarks

    served = train_deploy_and_serve(settings, client, args) if whole else None
    quarantined = _quarantine_dirs(settings)
    _say("\nsummary")
    _say(f"  curated rows     {curated_row_count(settings)}  ({settings.storage.curated_uri})")
    for view, mark in watermarks(settings).items():
        _say(f"  online features  {view} materialized through {mark}")
    _say(f"  quarantined      {len(quarantined)} batch(es) in {settings.storage.quarantine_uri}")
    for folder in quarantined:
        summary = json.loads(storage.read_bytes(storage.join(folder, "validation.json")))["summary"]
        _say(f"    {storage.basename(folder)}: {summary['reason']}")
        _say(f"      report {folder}/validation.html")
    if served:
        _say(f"  served           {served}")
        _say(f"  MLflow           {settings.mlflow.url}  (model {settings.mlflow.registered_model})")
        _say(f"  scoring          POST {settings.serving.url}/score   metrics {settings.serving.url}/metrics")
        _say(f"  reports          {settings.airflow.url}/airloop/  (model cards, rollouts, drift)")
        _say("  more traffic     .venv/bin/python -m tasks.platform.traffic --rate 50 --seconds 600")
    _say(
        f"  Airflow UI       {settings.airflow.url}/dags/ingest  ({settings.airflow.username} / "
        f"{settings.airflow.password})"
    )
    _say("  stop the stack   make down")
    return 0


def _run_line(run: dict) -> str:
    return f"  {run['dag_run_id']:<60} {run['run_type']:<16} {run['state']}"


def train_deploy_and_serve(
    settings: Settings, client: airflow_api.AirflowClient, args: argparse.Namespace
) -> str:
    """Train now, wait for the deploy run that follows, send traffic; what served it, in a line."""
    from tasks.platform import traffic

    _say("==> 5/7 training: triggering the train DAG (reason: demo)")
    since = datetime.now(UTC)
    run = client.trigger("train", {"reason": "demo"})
    done = client.wait_for_run_state("train", run["dag_run_id"], timeout=args.timeout)
    _say(_run_line(done))
    tasks_done = {t["task_id"]: t["state"] for t in client.task_instances("train", run["dag_run_id"])}
    if tasks_done.get("publish") != "success":
        return (
            "nothing: the gate registered no model on this little data (the train task's log says "
            "which check failed); land more batches with `make demo` and train again"
        )
    _say("==> 6/7 deploying: the registered model triggered the deploy DAG")
    # Shadow and canary steps are judged on live traffic: play it while the deploy run holds them
    # (a first model goes live right after its smoke test and needs none).
    during = threading.Event()
    player = threading.Thread(
        target=traffic.play,
        args=(settings,),
        kwargs={
            "rate": 20,
            "seconds": args.timeout,
            "label_delay": 5.0,
            "progress": None,
            "stop": during,
            "first_index": traffic.FIRST_INDEX + 10_000,  # transaction ids apart from step 7's
        },
        daemon=True,
    )
    player.start()
    try:
        for deploy in wait_for_runs(client, "deploy", since, args.timeout):
            _say(_run_line(deploy))
    finally:
        during.set()
        player.join(timeout=30)
    _say(f"==> 7/7 live traffic for {args.traffic_seconds:.0f} s (labels posted 5 s after each answer)")
    stats = traffic.play(
        settings,
        rate=20,
        seconds=args.traffic_seconds,
        label_delay=5.0,
        progress=_say,
        progress_every=10.0,
    )
    versions = ", ".join(f"version {v}: {n}" for v, n in sorted(stats.versions.items())) or "none"
    return f"{stats.ok} of {stats.sent} requests answered ({versions}), {stats.labels_posted} labels posted"


def _quarantine_dirs(settings: Settings) -> list[str]:
    fs, path = storage.filesystem(settings.storage.quarantine_uri)
    if not fs.exists(path):
        return []
    return sorted(storage.to_uri(fs, p) for p in fs.ls(path, detail=False) if fs.isdir(p))


if __name__ == "__main__":
    raise SystemExit(main())
