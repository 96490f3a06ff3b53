"""The whole loop on the local profile, on simulated data: what ``airloop demo`` (``make demo``) runs.

Starts the local stack with the serving application, then plays the upstream systems: drops
transaction batches in the landing zone and posts an asset event for each (plus one bad batch, to
show quarantine), waits for the ingest runs they trigger and the features runs those trigger,
triggers a training run, waits for the deploy run its registered model triggers (the first model
goes live after its smoke test), sends live traffic with delayed labels to the served model, and
prints what happened and where to look. The monitor DAG takes it from there on its cron.

``until="features"`` stops after the features runs (no training, no serving).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from config import Settings
from tasks.common import storage
from tasks.common.clock import utc
from tasks.common.reports import UI_PREFIX
from tasks.features.materialization import watermarks
from tasks.ingest.curated import curated_row_count
from tasks.platform import simulate, stack, traffic
from tasks.platform.airflow_client import TERMINAL_RUN_STATES, AirflowAPIError, AirflowClient

Run = dict[str, Any]
"""A DAG run as Airflow's REST API returns it."""


@dataclass(frozen=True)
class DemoOptions:
    batches: int = 3
    rows: int | None = None
    """Rows per batch; None: ``simulate.batch_rows``."""
    bad: str | None = "nulls"
    """The kind of bad batch landed with the good ones (None: none)."""
    timeout: float = 600.0
    """Seconds to wait for each stage's runs."""
    until: str = "serve"
    """``features``: stop after the features runs; ``serve``: train, deploy and serve too."""
    traffic_seconds: float = 30.0


def _say(msg: str) -> None:
    print(msg, flush=True)


def _run_line(run: Run) -> str:
    return f"  {run['dag_run_id']:<60} {run['run_type']:<16} {run['state']}"


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


def _touched_since(runs: list[Run], since: datetime) -> list[Run]:
    """Runs still going or ended after ``since``: a cron run that began before the batches
    landed may be the one that swept them (the hourly sweep runs as soon as the stack starts)."""
    return [r for r in runs if not r.get("end_date") or utc(r["end_date"]) >= since]


def wait_for_ingest(client: AirflowClient, uris: list[str], since: datetime, timeout: float) -> list[Run]:
    """Poll until every landed file has left the landing zone and no ingest run is in flight.

    Waiting for files rather than for particular asset events: any run (asset-triggered or
    cron) may be the one that sweeps a file, and events that arrive together share a run.
    """
    deadline = time.monotonic() + timeout
    while True:
        runs = _touched_since(client.dag_runs("ingest"), since)
        waiting = [u for u in uris if storage.exists(u)]
        in_flight = [r for r in runs if r["state"] not in TERMINAL_RUN_STATES]
        if runs and not waiting and not in_flight:
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"ingest did not finish in {timeout:.0f}s: still landing {waiting}, "
                f"runs in flight {[r['dag_run_id'] for r in in_flight]}"
            )
        time.sleep(2)


def wait_for_runs(client: AirflowClient, dag_id: str, since: datetime, timeout: float) -> list[Run]:
    """Poll until ``dag_id`` has run since ``since`` and has no run in flight."""
    deadline = time.monotonic() + timeout
    while True:
        runs = _touched_since(client.dag_runs(dag_id), since)
        in_flight = [r for r in runs if r["state"] not in TERMINAL_RUN_STATES]
        if runs and not in_flight:
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{dag_id} did not finish in {timeout:.0f}s: runs {[r['state'] for r in runs]}"
            )
        time.sleep(2)


def ingest_and_features(settings: Settings, client: AirflowClient, options: DemoOptions, steps: int) -> None:
    """Steps 2-4: land batches as an upstream system, then wait for ingest and features."""
    rows = options.rows or settings.simulate.batch_rows
    landing = settings.storage.landing_uri
    _say(f"==> 2/{steps} upstream: {options.batches} batches of {rows} rows into {landing}")
    since = datetime.now(UTC)
    uris = land_batches(settings, options.batches, rows, options.bad)
    _say(f"==> 3/{steps} waiting for the ingest runs the asset events triggered")
    runs = wait_for_ingest(client, uris, since, options.timeout)
    for run in sorted(runs, key=lambda r: str(r["run_after"])):
        note = "  (red on purpose: it quarantined the bad batch)" if run["state"] == "failed" else ""
        _say(_run_line(run) + note)
    _say(f"==> 4/{steps} waiting for the features runs the curated asset triggered")
    for run in wait_for_runs(client, "features", since, options.timeout):
        _say(_run_line(run))


def _train(client: AirflowClient, timeout: float) -> bool:
    """Step 5: a training run now; whether it registered a model (its ``publish`` task ran)."""
    _say("==> 5/7 training: triggering the train DAG (reason: demo)")
    run = client.trigger("train", {"reason": "demo"})
    _say(_run_line(client.wait_for_run_state("train", run["dag_run_id"], timeout=timeout)))
    states = {t["task_id"]: t["state"] for t in client.task_instances("train", run["dag_run_id"])}
    return states.get("publish") == "success"


def _deploy(settings: Settings, client: AirflowClient, since: datetime, timeout: float) -> None:
    """Step 6: wait for the deploy run, playing traffic meanwhile: shadow and canary steps are
    judged on live traffic (a first model goes live right after its smoke test and needs none)."""
    _say("==> 6/7 deploying: the registered model triggered the deploy DAG")
    during = threading.Event()
    player = threading.Thread(
        target=traffic.play,
        args=(settings,),
        kwargs={
            "rate": 20,
            "seconds": timeout,
            "label_delay": 5.0,
            "progress": None,
            "stop": during,
            "first_index": traffic.FIRST_INDEX + 10_000,  # transaction ids apart from step 7's
        },
        daemon=True,
    )
    player.start()
    try:
        for deploy in wait_for_runs(client, "deploy", since, timeout):
            _say(_run_line(deploy))
    finally:
        during.set()
        player.join(timeout=30)


def train_deploy_and_serve(settings: Settings, client: AirflowClient, options: DemoOptions) -> str:
    """Steps 5-7: train now, wait for the deploy run that follows, send traffic; what served it."""
    since = datetime.now(UTC)
    if not _train(client, options.timeout):
        return (
            "nothing: the gate registered no model on this little data (the train task's log says "
            "which check failed); land more batches with `make demo` and train again"
        )
    _deploy(settings, client, since, options.timeout)
    seconds = options.traffic_seconds
    _say(f"==> 7/7 live traffic for {seconds:.0f} s (labels posted 5 s after each answer)")
    stats = traffic.play(
        settings, rate=20, seconds=seconds, label_delay=5.0, progress=_say, progress_every=10.0
    )
    versions = ", ".join(f"version {v}: {n}" for v, n in sorted(stats.versions.items())) or "none"
    return f"{stats.ok} of {stats.sent} requests answered ({versions}), {stats.labels_posted} labels posted"


def _quarantine_dirs(settings: Settings) -> list[str]:
    fs, path = storage.filesystem(settings.storage.quarantine_uri)
    if not fs.exists(path):
        return []
    return sorted(storage.to_uri(fs, p) for p in fs.ls(path, detail=False) if fs.isdir(p))


def _summary(settings: Settings, served: str | None) -> None:
    _say("\nsummary")
    _say(f"  curated rows     {curated_row_count(settings)}  ({settings.storage.curated_uri})")
    for view, mark in watermarks(settings).items():
        _say(f"  online features  {view} materialized through {mark}")
    quarantined = _quarantine_dirs(settings)
    _say(f"  quarantined      {len(quarantined)} batch(es) in {settings.storage.quarantine_uri}")
    for folder in quarantined:
        summary = json.loads(storage.read_bytes(storage.join(folder, "validation.json")))["summary"]
        _say(f"    {storage.basename(folder)}: {summary['reason']}")
        _say(f"      report {folder}/validation.html")
    if served:
        url = settings.serving.url
        _say(f"  served           {served}")
        _say(f"  MLflow           {settings.mlflow.url}  (model {settings.mlflow.registered_model})")
        _say(f"  scoring          POST {url}/score   metrics {url}/metrics")
        _say(f"  reports          {settings.airflow.url}{UI_PREFIX}/  (model cards, rollouts, drift)")
        _say("  more traffic     .venv/bin/airloop traffic --rate 50 --seconds 600")
    airflow = settings.airflow
    _say(f"  Airflow UI       {airflow.url}/dags/ingest  ({airflow.username} / {airflow.password})")
    _say("  stop the stack   make down   (or .venv/bin/airloop down)")


def _steps(settings: Settings, options: DemoOptions) -> None:
    whole = options.until == "serve"
    steps = 7 if whole else 4
    _say(f"==> 1/{steps} starting the local stack" + (" and the serving application" if whole else ""))
    stack.start(settings, services=stack.LOOP if whole else stack.SERVICES)
    client = AirflowClient.from_settings(settings)
    client.wait_for_dag("ingest", timeout=180)
    ingest_and_features(settings, client, options, steps)
    served = train_deploy_and_serve(settings, client, options) if whole else None
    _summary(settings, served)


def run(settings: Settings, options: DemoOptions) -> int:
    """The demo, step by step with a progress line each, then a summary; 0 when it got through,
    1 with the reason when a step failed or timed out (what runs is left up, to look at)."""
    try:
        _steps(settings, options)
    except (stack.StackError, simulate.NotifyError, AirflowAPIError, TimeoutError) as exc:
        _say(f"\nerror: {exc}")
        _say(f"  see `airloop status` and the logs in {stack.log_dir(settings)}; stop with `make down`")
        return 1
    return 0
