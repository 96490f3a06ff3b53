"""The steps of a rollout, as the deploy DAG runs them: begin, smoke, shadow, canary, promote,
rollback. Each reads the rollout record, acts on the serving application through its control
API (``ServingClient``, plain HTTP, the same in both profiles) and on the MLflow registry, and
writes the record back, so every step can run in its own Airflow task, retried or not.

A failing step rolls back at once, inside the step (traffic is back on the champion before the
task even ends), then raises ``StepFailed``; the DAG's rollback task repeats the rollback if a
step died without doing it (killed worker, lost connection). Rolling back is idempotent.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasks.rollout import judge
from tasks.rollout.record import (
    FAILED,
    NOTHING_TO_DO,
    PASSED,
    PROMOTED,
    ROLLED_BACK,
    RUNNING,
    SKIPPED,
    RolloutRecord,
    StepRecord,
    new_id,
    now,
    save,
)

if TYPE_CHECKING:
    from config import Settings
    from tasks.serving.client import ServingClient

log = logging.getLogger(__name__)

TAG_ROLLOUT = "rollout_status"
TAG_ROLLOUT_ID = "rollout_id"
TAG_REJECTED_REASON = "rejected_reason"
TAG_REJECTED_STEP = "rejected_step"
TAG_PROMOTED_AT = "promoted_at"
TAG_RETIRED_AT = "retired_at"


class StepFailed(RuntimeError):
    """A step's judgment failed; traffic is already back on the champion."""


class Skip(RuntimeError):
    """Nothing for this step to do (the rollout ended, or a first model skips traffic steps)."""


def _say(msg: str) -> None:
    print(f"[rollout] {msg}", flush=True)


def client_for(settings: Settings) -> ServingClient:
    from tasks.serving.client import ServingClient

    return ServingClient(settings.serving.url, token=settings.serving.admin_token)


def _mlflow(settings: Settings):
    from tasks.common import registry

    return registry.client(settings.mlflow.url)


# --- the serving application ----------------------------------------------------------------


def _status(client: ServingClient) -> dict[str, Any] | None:
    """The control API's status, or None while the application does not answer. (Not
    ``/health``: an application without a champion yet is unhealthy, and it is what a first
    rollout starts from.)"""
    import requests

    from tasks.serving.client import ServingError

    try:
        return client.status()
    except (ServingError, requests.RequestException):
        return None


def wait_ready(settings: Settings, client: ServingClient) -> dict[str, Any]:
    """Wait for the application; in production put it on the cluster first when it is missing."""
    if _status(client) is None and settings.serving.dashboard_url:
        put_application(settings)
    deadline = time.monotonic() + settings.rollout.ready_timeout_seconds
    while (status := _status(client)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the serving application at {client.url} did not answer within "
                f"{settings.rollout.ready_timeout_seconds:.0f} s; start it with `python -m tasks.serving` "
                "(local) or check the Ray cluster (production)"
            )
        time.sleep(1.0)
    return status


def put_application(settings: Settings) -> None:
    """Deploy the application through the Ray Serve REST API (what KubeRay does from a
    RayService's ``serveConfigV2``)."""
    import requests

    from tasks.serving.process import serve_config

    url = f"{settings.serving.dashboard_url.rstrip('/')}/api/serve/applications/"
    _say(f"the application is not answering: PUT {url}")
    resp = requests.put(url, json=serve_config(settings), timeout=60)
    if resp.status_code >= 400:
        raise RuntimeError(f"PUT {url} failed: HTTP {resp.status_code}: {resp.text[:500]}")


# --- steps ----------------------------------------------------------------------------------


def begin(
    settings: Settings, *, version: str | None = None, context: dict[str, Any] | None = None
) -> RolloutRecord:
    """Start a rollout of ``version`` (default: the ``challenger`` alias) and record it."""
    from tasks.common import registry

    mc = _mlflow(settings)
    name = settings.mlflow.registered_model
    if version is None:
        mv = registry.version_for_alias(mc, name, registry.CHALLENGER)
        if mv is None:
            raise ValueError(f"no version given and {name} has no {registry.CHALLENGER!r} alias")
        version = str(mv.version)
    mv = mc.get_model_version(name, str(version))
    client = client_for(settings)
    status = wait_ready(settings, client)
    serving = (status["slots"].get("champion") or {}).get("version")
    champion = registry.version_for_alias(mc, name, registry.CHAMPION)
    if serving is None and champion is not None and str(champion.version) != str(version):
        # The registry has a champion the application is not serving (it restarted and could
        # not load it then): serve it again first, it is what the challenger is judged against.
        client.load("champion", version=str(champion.version))
        serving = str(champion.version)
    first = serving is None
    record = RolloutRecord(
        id=new_id(str(version)),
        model=name,
        version=str(version),
        champion_version=None if serving is None else str(serving),
        first=first,
        status=RUNNING,
        started_at=now(),
        context=dict(context or {}),
    )
    if serving is not None and str(serving) == str(version):
        record.status, record.reason, record.ended_at = (
            NOTHING_TO_DO,
            f"version {version} is already the champion",
            now(),
        )
    elif mv.tags.get(TAG_ROLLOUT) == ROLLED_BACK:
        record.status, record.ended_at = NOTHING_TO_DO, now()
        record.reason = f"version {version} was rejected before: {mv.tags.get(TAG_REJECTED_REASON)}"
    save(settings, record)
    _say(
        f"{record.id}: {name} version {version} "
        + (record.reason or ("first model: smoke, then 100 %" if first else f"against champion {serving}"))
    )
    return record


def _start(record: RolloutRecord, name: str, kind: str, **kw: Any) -> StepRecord:
    if record.finished:
        raise Skip(f"the rollout already ended: {record.status} ({record.reason})")
    step = StepRecord(name=name, kind=kind, status=RUNNING, started_at=now(), **kw)
    record.steps = [s for s in record.steps if s.name != name] + [step]
    return step


def _end(step: StepRecord, status: str, reason: str | None = None) -> None:
    step.status, step.reason, step.ended_at = status, reason, now()
    step.seconds = round(
        (datetime.fromisoformat(step.ended_at) - datetime.fromisoformat(step.started_at)).total_seconds(), 3
    )


def _fail(
    settings: Settings, client: ServingClient, record: RolloutRecord, step: StepRecord, reason: str
) -> None:
    _end(step, FAILED, reason)
    _say(f"{step.name} failed: {reason}")
    rollback(settings, record, reason=f"{step.name}: {reason}", client=client)
    raise StepFailed(f"{step.name}: {reason}")


def smoke_rows(settings: Settings, n: int) -> list[dict[str, Any]]:
    """The newest ``n`` curated transactions, as scoring requests (known, valid inputs)."""
    import pyarrow.dataset as ds

    from tasks.common import storage

    fs, path = storage.filesystem(settings.storage.curated_uri)
    if not fs.exists(path):
        raise RuntimeError(f"no curated data at {settings.storage.curated_uri} to smoke-test with")
    files = sorted(ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive").files)
    frames, have = [], 0
    for file in reversed(files):
        frame = ds.dataset(file, filesystem=fs, format="parquet").to_table().to_pandas()
        frames.append(frame)
        have += len(frame)
        if have >= n:
            break
    import pandas as pd

    schema = settings.schema_
    data = pd.concat(frames).sort_values(schema.timestamp).tail(n)
    columns = [c.name for c in schema.columns if c.name != schema.label]
    rows = data[columns].to_dict("records")
    for row in rows:
        row[schema.timestamp] = pd.Timestamp(row[schema.timestamp]).isoformat()
    return rows


def smoke(settings: Settings, rollout_id: str) -> RolloutRecord:
    """Load the version into the challenger slot (hash checked) and score known inputs on it."""
    from tasks.rollout.record import load
    from tasks.serving.client import ServingError

    record = load(settings, rollout_id)
    step = _start(record, "smoke", "smoke")
    client = client_for(settings)
    try:
        client.load("challenger", version=record.version)
    except ServingError as exc:
        _fail(settings, client, record, step, f"load refused ({exc.kind or exc.status}): {exc.body}")
    rows = smoke_rows(settings, settings.rollout.smoke_rows)
    started = time.perf_counter()
    try:
        predictions = client.smoke("challenger", rows)
    except ServingError as exc:
        _fail(
            settings,
            client,
            record,
            step,
            f"scoring known inputs failed ({exc.kind or exc.status}): {exc.body}",
        )
    seconds = time.perf_counter() - started
    scores = [p["score"] for p in predictions]
    bad = [s for s in scores if not (isinstance(s, float) and math.isfinite(s) and 0.0 <= s <= 1.0)]
    versions = {p["model_version"] for p in predictions}
    found = [
        judge.Check(
            "rows_scored", len(scores) == len(rows), len(scores), len(rows), "every known input scored"
        ),
        judge.Check("scores_in_0_1", not bad, len(bad), 0, "finite probabilities in [0, 1]"),
        judge.Check("version", versions == {record.version}, None, None, f"answered by {sorted(versions)}"),
    ]
    step.checks = [c.as_dict() for c in found]
    step.requests = len(rows)
    step.measured = {
        "rows": len(rows),
        "seconds": round(seconds, 4),
        "score_mean": round(sum(scores) / len(scores), 6) if scores else None,
        "score_min": min(scores, default=None),
        "score_max": max(scores, default=None),
    }
    if reason := judge.failed(found):
        _fail(settings, client, record, step, reason)
    _end(step, PASSED)
    save(settings, record)
    _say(f"smoke passed: {len(rows)} known inputs scored in {seconds * 1000:.0f} ms")
    return record


def _hold(
    settings: Settings,
    client: ServingClient,
    record: RolloutRecord,
    step: StepRecord,
    *,
    route: str,
    hold_seconds: float,
    min_requests: int,
    sleep: Callable[[float], None] = time.sleep,
) -> judge.Measure:
    """Keep the step's traffic for its window, then measure it; fail early on errors."""
    cfg = settings.rollout
    started = time.monotonic()
    before = client.metrics()
    while True:
        sleep(cfg.poll_seconds)
        elapsed = time.monotonic() - started
        try:
            window = judge.delta(client.metrics(), before)
        except judge.CounterReset as exc:
            _fail(settings, client, record, step, str(exc))
        m = judge.measure(
            window,
            route=route,
            version=record.version,
            champion_version=record.champion_version,
            reference=record.champion_reference,
        )
        enough = m.requests >= min_requests
        if enough and m.error_rate > cfg.judge.max_error_rate:
            step.measured = m.summary()
            step.requests = m.requests
            return m  # judged (and failed) now: no need to keep sending traffic to a failing model
        if enough and elapsed >= hold_seconds:
            return m
        if elapsed >= cfg.max_hold_seconds:
            step.measured, step.requests = m.summary(), m.requests
            _fail(
                settings,
                client,
                record,
                step,
                f"too little traffic to judge: the challenger answered {m.requests} of the "
                f"{min_requests} requests needed in {elapsed:.0f} s",
            )
        slot = (client.status()["slots"].get("challenger") or {}).get("version")
        if slot != record.version:
            _fail(
                settings,
                client,
                record,
                step,
                f"the challenger slot now serves {slot!r}, not {record.version}",
            )


def _judge_step(
    settings: Settings, client: ServingClient, record: RolloutRecord, step: StepRecord, m: judge.Measure
) -> None:
    found = judge.checks(m, settings.rollout.judge)
    step.checks = [c.as_dict() for c in found]
    step.measured = m.summary()
    step.requests = m.requests
    if ref := judge.reference(m):
        record.champion_reference = ref
    if reason := judge.failed(found):
        _fail(settings, client, record, step, reason)
    _end(step, PASSED)
    save(settings, record)
    _say(
        f"{step.name} passed: {m.requests} challenger calls, error rate {m.error_rate:.4f}, "
        f"p99 {m.p99_ms} ms, score PSI {m.score_psi}"
    )


def shadow(
    settings: Settings, rollout_id: str, *, sleep: Callable[[float], None] = time.sleep
) -> RolloutRecord:
    """Mirror live requests to the challenger (logged, never returned) and judge it."""
    from tasks.rollout.record import load

    record = load(settings, rollout_id)
    cfg = settings.rollout.shadow
    if record.first or not cfg.enabled:
        if not record.finished:
            step = _start(record, "shadow", "shadow")
            _end(step, SKIPPED, "first model" if record.first else "shadow is off in config")
            save(settings, record)
        raise Skip("first model: no champion to shadow" if record.first else "shadow is off in config")
    step = _start(record, "shadow", "shadow", weight=0.0, shadow=True)
    client = client_for(settings)
    client.set_traffic(challenger_weight=0.0, shadow=True)
    save(settings, record)
    m = _hold(settings, client, record, step, route=judge.SHADOW, hold_seconds=cfg.hold_seconds,
              min_requests=cfg.min_requests, sleep=sleep)  # fmt: skip
    client.set_traffic(shadow=False)
    _judge_step(settings, client, record, step, m)
    return record


def canary(
    settings: Settings, rollout_id: str, index: int, *, sleep: Callable[[float], None] = time.sleep
) -> RolloutRecord:
    """Route ``rollout.canary[index].weight`` of live traffic to the challenger and judge it."""
    from tasks.rollout.record import load

    record = load(settings, rollout_id)
    spec = settings.rollout.canary[index]
    name = spec.name
    if record.first:
        if not record.finished:
            _end(_start(record, name, "canary", weight=spec.weight), SKIPPED, "first model")
            save(settings, record)
        raise Skip("first model: it takes all traffic after the smoke test")
    step = _start(record, name, "canary", weight=spec.weight)
    client = client_for(settings)
    client.set_traffic(challenger_weight=spec.weight, shadow=False)
    save(settings, record)
    m = _hold(settings, client, record, step, route=judge.CHALLENGER, hold_seconds=spec.hold_seconds,
              min_requests=spec.min_requests, sleep=sleep)  # fmt: skip
    _judge_step(settings, client, record, step, m)
    return record


def promote(settings: Settings, rollout_id: str) -> RolloutRecord:
    """Make the version the champion: in serving (zero downtime), then the MLflow alias."""
    from tasks.common import registry
    from tasks.rollout.record import load

    record = load(settings, rollout_id)
    step = _start(record, "promote", "promote", weight=1.0)
    client = client_for(settings)
    client.load("champion", version=record.version)
    client.set_traffic(challenger_weight=0.0, shadow=False)
    client.unload("challenger")
    mc = _mlflow(settings)
    name = record.model
    previous = registry.version_for_alias(mc, name, registry.CHAMPION)
    mc.set_registered_model_alias(name, registry.CHAMPION, record.version)
    challenger = registry.version_for_alias(mc, name, registry.CHALLENGER)
    if challenger is not None and str(challenger.version) == record.version:
        mc.delete_registered_model_alias(name, registry.CHALLENGER)
    at = now()
    for key, value in ((TAG_ROLLOUT, PROMOTED), (TAG_ROLLOUT_ID, record.id), (TAG_PROMOTED_AT, at)):
        mc.set_model_version_tag(name, record.version, key, value)
    if previous is not None and str(previous.version) != record.version:
        mc.set_model_version_tag(name, str(previous.version), TAG_RETIRED_AT, at)
    _end(step, PASSED)
    step.measured = {"previous_champion": None if previous is None else str(previous.version)}
    record.status, record.ended_at = PROMOTED, now()
    record.reason = "first model, smoke test passed" if record.first else "every step passed"
    save(settings, record)
    _say(f"promoted {name} version {record.version} to champion")
    return record


def rollback(
    settings: Settings, record: RolloutRecord, *, reason: str, client: ServingClient | None = None
) -> RolloutRecord:
    """All traffic back to the champion, the challenger slot emptied, the version tagged rejected."""
    from tasks.common import registry
    from tasks.serving.client import ServingError

    if record.status in (ROLLED_BACK, PROMOTED, NOTHING_TO_DO):
        return record
    client = client or client_for(settings)
    step = StepRecord(name="rollback", kind="rollback", status=RUNNING, started_at=now(), reason=reason)
    status = client.status()
    if status["challenger_weight"] or status["shadow"]:
        client.set_traffic(challenger_weight=0.0, shadow=False)
    serving = (status["slots"].get("champion") or {}).get("version")
    if record.champion_version and serving != record.champion_version:
        client.load("champion", version=record.champion_version)  # a promotion that died halfway
    try:
        client.unload("challenger")
    except ServingError as exc:
        log.warning("could not empty the challenger slot: %s", exc)
    mc = _mlflow(settings)
    name = record.model
    failed_step = next((s.name for s in reversed(record.steps) if s.status == FAILED), None)
    tags = {TAG_ROLLOUT: ROLLED_BACK, TAG_ROLLOUT_ID: record.id, TAG_REJECTED_REASON: reason[:4900]}
    if failed_step:
        tags[TAG_REJECTED_STEP] = failed_step
    for key, value in tags.items():
        mc.set_model_version_tag(name, record.version, key, value)
    challenger = registry.version_for_alias(mc, name, registry.CHALLENGER)
    if challenger is not None and str(challenger.version) == record.version:
        mc.delete_registered_model_alias(name, registry.CHALLENGER)
    champion = registry.version_for_alias(mc, name, registry.CHAMPION)
    if record.first and champion is not None and str(champion.version) == record.version:
        mc.delete_registered_model_alias(name, registry.CHAMPION)  # a first model that failed its smoke test
    _end(step, PASSED, reason)
    record.steps.append(step)
    record.status, record.reason, record.ended_at = ROLLED_BACK, reason, now()
    save(settings, record)
    _say(f"rolled back {name} version {record.version}: {reason}")
    return record
