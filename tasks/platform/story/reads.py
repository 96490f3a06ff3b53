"""What the story reads back from Airflow's REST API: runs, task instances, XComs, and polling.

Everything the demo shows about a stage (its start, end, outcome, run id, what it decided) comes
from Airflow itself, so the timeline is what the scheduler did, not what the demo assumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from tasks.common.clock import utc
from tasks.platform.airflow_client import TERMINAL_RUN_STATES, AirflowAPIError, AirflowClient

T = TypeVar("T")
Run = dict[str, Any]
"""A DAG run or task instance as the REST API returns it."""

TI_DONE = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


class StoryError(RuntimeError):
    """The story cannot go on: a stage failed or timed out; the message says which and why."""


def when(value: Any) -> datetime | None:
    return utc(value) if value else None


def seconds_between(start: Any, end: Any) -> float | None:
    a, b = when(start), when(end)
    return (b - a).total_seconds() if a and b else None


def touched_since(runs: list[Run], since: datetime) -> list[Run]:
    """Runs still going or ended after ``since`` (a cron run that began before may be the one
    that swept what was landed since)."""
    return [r for r in runs if not r.get("end_date") or utc(r["end_date"]) >= since]


def started_since(runs: list[Run], since: datetime) -> list[Run]:
    """Runs created (queued) at or after ``since``, oldest first."""
    fresh = [r for r in runs if (when(r.get("queued_at")) or when(r.get("run_after")) or since) >= since]
    return sorted(fresh, key=lambda r: str(r.get("queued_at") or r.get("run_after")))


def finished(run: Run) -> bool:
    return run.get("state") in TERMINAL_RUN_STATES


def xcom(client: AirflowClient, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    """A task's XCom value (None when there is none, e.g. a skipped task)."""
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
    try:
        entry = client.get(path, stringify=False, deserialize=True)
    except AirflowAPIError as exc:
        if exc.status_code == 404:
            return None
        raise
    return entry.get("value") if isinstance(entry, dict) else None


def task_instances(client: AirflowClient, dag_id: str, run_id: str) -> dict[str, Run]:
    """The run's task instances by task id (mapped ones: the last map index)."""
    return {ti["task_id"]: ti for ti in client.task_instances(dag_id, run_id)}


def poll(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    every: float = 2.0,
    tick: Callable[[], None] | None = None,
) -> T:
    """``check()`` until it returns something (not None); ``StoryError`` naming ``what`` after
    ``timeout`` seconds. ``tick`` runs on every round (the live display)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if tick:
            tick()
        if time.monotonic() > deadline:
            raise StoryError(f"{what}: nothing after {timeout:.0f} s")
        time.sleep(every)


def run_line(run: Run) -> str:
    took = seconds_between(run.get("start_date"), run.get("end_date"))
    length = f"{took:.0f} s" if took is not None else "-"
    return f"{run['dag_id']} {run['dag_run_id']} ({run['run_type']}, {run['state']}, {length})"
