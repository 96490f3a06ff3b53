"""The steps of a rollout, as the deploy DAG runs them: begin, smoke, shadow, canary, promote.
Each reads the rollout record, acts on the serving application through its control API
(``application``) and on the MLflow registry, and writes the record back, so every step can run
in its own Airflow task, retried or not.

A failing step rolls back at once, inside the step (traffic is back on the champion before the
task even ends), then raises ``holding.StepFailed`` (a ``Fail``); a step with nothing to do
raises ``Skip``. The DAG's rollback teardown (``rollback.after_failed_task``) repeats the
rollback if a step died without doing it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import pandas as pd
import pyarrow.dataset as ds

from tasks.common import registry, storage
from tasks.common.clock import now_iso
from tasks.common.outcomes import Skip
from tasks.rollout import judge
from tasks.rollout.application import client_for, say, slot_version, wait_ready
from tasks.rollout.holding import Hold, fail_step, hold, judge_step, start_step
from tasks.rollout.plan import CANARY, PROMOTE, SHADOW, SMOKE
from tasks.rollout.record import (
    NOTHING_TO_DO,
    PASSED,
    PROMOTED,
    RUNNING,
    SKIPPED,
    RolloutRecord,
    load,
    new_id,
    save,
)
from tasks.rollout.scores import BaseRate
from tasks.serving.client import ServingClient, ServingError

if TYPE_CHECKING:
    from config import Settings


def _serving_champion(settings: Settings, client: ServingClient, version: str) -> str | None:
    """What the champion slot serves, once the application answers. When the registry has a
    champion the application is not serving (it restarted and could not load it then), it is
    served again first: it is what the challenger is judged against."""
    serving = slot_version(wait_ready(settings, client), "champion")
    champion = registry.version_for_alias(
        registry.client(settings.mlflow.url), settings.mlflow.registered_model, registry.CHAMPION
    )
    if serving is None and champion is not None and str(champion.version) != version:
        client.load("champion", version=str(champion.version))
        serving = str(champion.version)
    return serving


def _never_rolled_out(mv: Any, serving: str | None, version: str) -> bool:
    """The application serves ``version`` without any rollout having passed it: an application
    created after the first registration (on a cluster the deploy DAG creates it) loads the
    ``champion`` alias that registration gave the first model. It is rolled out as the first model
    all the same (smoke test, then promotion), not taken for a champion that passed its steps."""
    return serving == version and (mv.tags or {}).get(registry.TAG_ROLLOUT_STATUS) != registry.PROMOTED


def _version_to_roll_out(settings: Settings, version: str | None) -> str:
    """``version``, else the one behind the ``challenger`` alias."""
    if version is not None:
        return str(version)
    name = settings.mlflow.registered_model
    mv = registry.version_for_alias(registry.client(settings.mlflow.url), name, registry.CHALLENGER)
    if mv is None:
        raise ValueError(f"no version given and {name} has no {registry.CHALLENGER!r} alias")
    return str(mv.version)


def begin(
    settings: Settings, *, version: str | None = None, context: dict[str, Any] | None = None
) -> RolloutRecord:
    """Start a rollout of ``version`` (default: the ``challenger`` alias) and record it."""
    name = settings.mlflow.registered_model
    version = _version_to_roll_out(settings, version)
    mv = registry.client(settings.mlflow.url).get_model_version(name, version)
    serving = _serving_champion(settings, client_for(settings), version)
    if _never_rolled_out(mv, serving, version):
        say(f"version {version} serves since the application started, but no rollout passed it yet")
        serving = None
    record = RolloutRecord(
        id=new_id(version),
        model=name,
        version=version,
        champion_version=serving,
        first=serving is None,
        status=RUNNING,
        started_at=now_iso(),
        context=dict(context or {}),
    )
    if serving == version:
        record.end(NOTHING_TO_DO, f"version {version} is already the champion")
    elif (why := registry.rejection(mv)) is not None:
        record.end(NOTHING_TO_DO, f"version {version} was rejected before: {why}")
    save(settings, record)
    plan = "first model: smoke, then 100 %" if record.first else f"against champion {serving}"
    say(f"{record.id}: {name} version {version} {record.reason or plan}")
    return record


def newest_curated(settings: Settings, n: int) -> pd.DataFrame:
    """The newest ``n`` curated transactions (with their labels), oldest first."""
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
    return pd.concat(frames).sort_values(settings.schema_.timestamp).tail(n)


def smoke_rows(settings: Settings, n: int, data: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """The newest ``n`` curated transactions (of ``data``, default: read them), as scoring
    requests (known, valid inputs)."""
    schema = settings.schema_
    data = (newest_curated(settings, n) if data is None else data).tail(n)
    columns = [c.name for c in schema.columns if c.name != schema.label]
    rows: list[dict[str, Any]] = data[columns].to_dict("records")
    for row in rows:
        row[schema.timestamp] = pd.Timestamp(row[schema.timestamp]).isoformat()
    return rows


def base_rate(settings: Settings, data: pd.DataFrame) -> BaseRate:
    """The fraud rate of the newest ``rollout.judge.base_rate_rows`` labelled transactions of
    ``data``: what the challenger's scores are held to (``tasks.rollout.scores``)."""
    labels = pd.to_numeric(data[settings.schema_.label], errors="coerce").dropna()
    labels = labels.tail(settings.rollout.judge.base_rate_rows)
    return BaseRate.of(int((labels > 0).sum()), len(labels))


def _smoke_checks(record: RolloutRecord, rows: int, predictions: list[dict[str, Any]]) -> list[judge.Check]:
    """Every known input scored, by the version, with a probability."""
    scores = [p["score"] for p in predictions]
    bad = [s for s in scores if not (isinstance(s, float) and math.isfinite(s) and 0.0 <= s <= 1.0)]
    versions = {p["model_version"] for p in predictions}
    return [
        judge.Check("rows_scored", len(scores) == rows, len(scores), rows, "every known input scored"),
        judge.Check("scores_in_0_1", not bad, len(bad), 0, "finite probabilities in [0, 1]"),
        judge.Check("version", versions == {record.version}, None, None, f"answered by {sorted(versions)}"),
    ]


def _smoke_numbers(rows: int, seconds: float, scores: list[float]) -> dict[str, Any]:
    return {
        "rows": rows,
        "seconds": round(seconds, 4),
        "score_mean": round(sum(scores) / len(scores), 6) if scores else None,
        "score_min": min(scores, default=None),
        "score_max": max(scores, default=None),
    }


def smoke(settings: Settings, rollout_id: str) -> RolloutRecord:
    """Load the version into the challenger slot (hash checked) and score known inputs on it."""
    record = load(settings, rollout_id)
    step = start_step(record, SMOKE, SMOKE)
    client = client_for(settings)
    try:
        client.load("challenger", version=record.version)
    except ServingError as exc:
        fail_step(settings, client, record, step, f"load refused ({exc.kind or exc.status}): {exc.body}")
    data = newest_curated(settings, max(settings.rollout.smoke_rows, settings.rollout.judge.base_rate_rows))
    record.base_rate = base_rate(settings, data).as_dict()
    rows = smoke_rows(settings, settings.rollout.smoke_rows, data)
    started = time.perf_counter()
    try:
        predictions = client.smoke("challenger", rows)
    except ServingError as exc:
        why = f"scoring known inputs failed ({exc.kind or exc.status}): {exc.body}"
        fail_step(settings, client, record, step, why)
    seconds = time.perf_counter() - started
    found = _smoke_checks(record, len(rows), predictions)
    step.checks = [c.as_dict() for c in found]
    step.requests = len(rows)
    step.measured = _smoke_numbers(len(rows), seconds, [p["score"] for p in predictions])
    if reason := judge.failed(found):
        fail_step(settings, client, record, step, reason)
    step.end(PASSED)
    save(settings, record)
    say(f"smoke passed: {len(rows)} known inputs scored in {seconds * 1000:.0f} ms")
    return record


def _skip_step(
    settings: Settings, record: RolloutRecord, name: str, kind: str, *, note: str, why: str, **kw: Any
) -> NoReturn:
    """Record ``name`` as skipped for ``note`` (unless the rollout already ended), then ``Skip``."""
    if not record.finished:
        record.start(name, kind, **kw).end(SKIPPED, note)
        save(settings, record)
    raise Skip(why)


def shadow(
    settings: Settings, rollout_id: str, *, sleep: Callable[[float], None] = time.sleep
) -> RolloutRecord:
    """Mirror live requests to the challenger (logged, never returned) and judge it."""
    record = load(settings, rollout_id)
    cfg = settings.rollout.shadow
    if record.first:
        _skip_step(
            settings, record, SHADOW, SHADOW, note="first model", why="first model: no champion to shadow"
        )
    if not cfg.enabled:
        off = "shadow is off in config"
        _skip_step(settings, record, SHADOW, SHADOW, note=off, why=off)
    step = start_step(record, SHADOW, SHADOW, weight=0.0, shadow=True)
    client = client_for(settings)
    client.set_traffic(challenger_weight=0.0, shadow=True)
    save(settings, record)
    m = hold(
        settings, client, record, step, Hold(judge.SHADOW, cfg.hold_seconds, cfg.min_requests), sleep=sleep
    )
    client.set_traffic(shadow=False)
    judge_step(settings, client, record, step, m)
    return record


def canary(
    settings: Settings, rollout_id: str, index: int, *, sleep: Callable[[float], None] = time.sleep
) -> RolloutRecord:
    """Route ``rollout.canary[index].weight`` of live traffic to the challenger and judge it."""
    record = load(settings, rollout_id)
    spec = settings.rollout.canary[index]
    if record.first:
        why = "first model: it takes all traffic after the smoke test"
        _skip_step(settings, record, spec.name, CANARY, note="first model", why=why, weight=spec.weight)
    step = start_step(record, spec.name, CANARY, weight=spec.weight)
    client = client_for(settings)
    client.set_traffic(challenger_weight=spec.weight, shadow=False)
    save(settings, record)
    how = Hold(judge.CHALLENGER, spec.hold_seconds, spec.min_requests)
    m = hold(settings, client, record, step, how, sleep=sleep)
    judge_step(settings, client, record, step, m)
    return record


def promote(settings: Settings, rollout_id: str) -> RolloutRecord:
    """Make the version the champion: in serving (zero downtime), then the MLflow alias."""
    record = load(settings, rollout_id)
    step = start_step(record, PROMOTE, PROMOTE, weight=1.0)
    client = client_for(settings)
    client.load("champion", version=record.version)
    client.set_traffic(challenger_weight=0.0, shadow=False)
    client.unload("challenger")
    mc = registry.client(settings.mlflow.url)
    previous = registry.promote(mc, record.model, record.version, rollout_id=record.id, at=now_iso())
    step.end(PASSED)
    step.measured = {"previous_champion": previous}
    record.end(PROMOTED, "first model, smoke test passed" if record.first else "every step passed")
    save(settings, record)
    say(f"promoted {record.model} version {record.version} to champion")
    return record
