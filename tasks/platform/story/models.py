"""The model stages: a training run and its gate, and the deploy run that rolls its version out
(smoke, shadow, canary steps, promote), each step read from Airflow's task instances."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from tasks.common import registry
from tasks.platform.story.context import Story
from tasks.platform.story.reads import (
    Run,
    StoryError,
    finished,
    poll,
    started_since,
    task_instances,
    when,
    xcom,
)
from tasks.platform.story.timeline import FAILED, OK, SKIPPED
from tasks.rollout import plan, record

SHOWN_METRICS = ("pr_auc", "roc_auc", "log_loss", "ece")


def champion_version(story: Story) -> str | None:
    """The version behind the MLflow ``champion`` alias (None before the first rollout)."""
    mlflow = story.settings.mlflow
    found = registry.version_for_alias(registry.client(mlflow.url), mlflow.registered_model, "champion")
    return str(found.version) if found else None


def metrics_line(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "no metrics"
    shown = [f"{k} {metrics[k]:.3f}" for k in SHOWN_METRICS if isinstance(metrics.get(k), int | float)]
    return ", ".join(shown)


def _best(result: dict[str, Any]) -> dict[str, Any]:
    name = result.get("best_candidate")
    best = [c for c in result.get("candidates", []) if c.get("name") == name]
    return best[0] if best else {}


def _version_facts(story: Story, result: dict[str, Any], run_id: str) -> None:
    best = _best(result)
    versions = story.timeline.facts.setdefault("versions", {})
    versions[str(result["version"])] = {
        "version": str(result["version"]),
        "candidate": result.get("best_candidate"),
        "metrics": best.get("metrics") or {},
        "train_run_id": run_id,
        "reason": (result.get("context") or {}).get("reason"),
    }
    champion = result.get("champion") or {}
    if champion.get("version") and champion.get("metrics"):
        versions.setdefault(str(champion["version"]), {"version": str(champion["version"])})
        versions[str(champion["version"])]["same_holdout"] = champion["metrics"]
        versions[str(result["version"])]["compared_with"] = str(champion["version"])


def train(story: Story, run_id: str, key: str, title: str) -> dict[str, Any]:
    """Wait for train run ``run_id``; its result (the registered challenger) or ``StoryError``
    with every failed gate check."""
    client = story.client
    stage = story.timeline.stage(key) or story.timeline.begin(key, title, run_id=run_id)
    stage.run_id = run_id

    def done() -> Run | None:
        run = client.dag_run("train", run_id)
        tis = task_instances(client, "train", run_id)
        going = [t for t, ti in tis.items() if ti.get("state") in ("running", "queued", "deferred")]
        story.timeline.note(key, f"{run['state']}; tasks going: {', '.join(going) or '-'}")
        return run if finished(run) else None

    run = poll(done, timeout=story.options.timeout, what=f"train run {run_id}")
    story.seen["train_conf"] = run.get("conf") or {}
    result = xcom(client, "train", run_id, "train") or {}
    if run["state"] != "success" or result.get("status") != "registered":
        reasons = "; ".join(result.get("reasons") or []) or f"run {run['state']} (see its task logs)"
        story.timeline.end(key, FAILED, f"nothing registered: {reasons}", at=run.get("end_date"))
        raise StoryError(f"training registered no model: {reasons}")
    _version_facts(story, result, run_id)
    version = str(result["version"])
    detail = f"v{version} ({result.get('best_candidate')}): {metrics_line(_best(result).get('metrics'))}"
    story.timeline.end(key, OK, detail, at=run.get("end_date"))
    return result


def gate_stage(story: Story, result: dict[str, Any], at: str | None) -> None:
    """The gate as a stage of its own (it runs inside the train task): what it compared."""
    champion = result.get("champion") or {}
    versus = (
        f"champion v{champion['version']} on the same hold-out: {metrics_line(champion.get('metrics'))}"
        if champion.get("metrics")
        else champion.get("note") or "no champion to compare with"
    )
    story.timeline.begin("gate", "gate passes the challenger", at=at)
    story.timeline.end("gate", OK, f"v{result['version']} registered as challenger; {versus}", at=at)


def _step_titles(story: Story) -> dict[str, str]:
    titles = {plan.SMOKE: "smoke test", plan.SHADOW: "shadow (mirrored, never returned)"}
    for spec in plan.steps(story.settings):
        if spec.kind == plan.CANARY and spec.canary_index is not None:
            weight = story.settings.rollout.canary[spec.canary_index].weight
            titles[spec.task_id] = f"canary {weight:.0%}"
    titles[plan.PROMOTE] = "promote (champion alias moves)"
    return titles


def _latest_record(story: Story, version: str) -> record.RolloutRecord | None:
    records = [r for r in record.history(story.settings, limit=5) if r.version == version]
    return records[0] if records else None


def _watch_steps(story: Story, run: Run, version: str, shown: dict[str, str]) -> None:
    """Begin and end a stage per rollout step as its task instance starts and ends."""
    tis = task_instances(story.client, "deploy", run["dag_run_id"])
    for task_id, title in _step_titles(story).items():
        ti = tis.get(task_id)
        if not ti or (not ti.get("start_date") and ti.get("state") != "skipped"):
            continue
        key = f"deploy {task_id} v{version}"
        if task_id not in shown:
            shown[task_id] = "begun"
            story.timeline.begin(
                key, title, at=ti.get("start_date") or ti.get("end_date"), run_id=run["dag_run_id"]
            )
        if shown[task_id] == "begun" and ti.get("state") in (
            "success",
            "failed",
            "skipped",
            "upstream_failed",
        ):
            shown[task_id] = "ended"
            outcome = {"success": OK, "skipped": SKIPPED}.get(ti["state"], FAILED)
            step = (rec := _latest_record(story, version)) and rec.step(task_id)
            detail = (step.reason or "") if step else ""
            story.timeline.end(key, outcome, detail, at=ti.get("end_date"))


def deploy(story: Story, version: str, since: datetime, key: str) -> Run:
    """Wait for the deploy run that rolls ``version`` out, a stage per step; ``StoryError`` with
    what the judge said when it rolled back. The stage opens at ``since`` (waiting for the model's
    asset event) and starts, in the timeline, when the deploy run did."""
    shown: dict[str, str] = {}
    story.timeline.begin(key, f"deploy v{version}", at=since.isoformat())

    def done() -> Run | None:
        runs = started_since(story.client.dag_runs("deploy"), since)
        if not runs:
            story.timeline.note(key, "waiting for the registered model's asset event to start deploy")
            return None
        run = runs[0]
        stage = story.timeline.stage(key)
        if stage and not shown and run.get("start_date"):
            stage.started = run["start_date"]
        _watch_steps(story, run, version, shown)
        rec = _latest_record(story, version)
        if rec and not finished(run):
            story.timeline.note(
                key, f"rollout {rec.id}: {rec.status}, step {rec.steps[-1].name if rec.steps else '-'}"
            )
        return run if finished(run) else None

    run = poll(done, timeout=story.options.timeout, what=f"deploy of v{version}")
    rec = _latest_record(story, version)
    story.seen.setdefault("rollouts", []).append(rec.as_dict() if rec else None)
    status = rec.status if rec else run["state"]
    if status != record.PROMOTED:
        said = (rec.reason if rec else None) or f"deploy run {run['state']}"
        story.timeline.end(
            key, FAILED, f"rolled back: {said}", at=run.get("end_date"), run_id=run["dag_run_id"]
        )
        raise StoryError(f"the rollout of v{version} did not promote it: {said}")
    story.timeline.end(
        key, OK, f"v{version} is the champion", at=run.get("end_date"), run_id=run["dag_run_id"]
    )
    return run


def first_model(story: Story, before_deploy: Callable[[], None]) -> str:
    """The first champion: trained and rolled out now, or the one an earlier demo left serving.
    ``before_deploy`` runs before anything needs the serving application."""
    known = story.seen.get("champion_at_start")
    current = known.result() if isinstance(known, Future) else champion_version(story)
    if current:
        before_deploy()
        story.timeline.begin("first model", "first champion")
        story.timeline.end("first model", SKIPPED, f"v{current} already serves (an earlier demo trained it)")
        return current
    run = story.client.trigger("train", {"reason": "demo: the first model"})
    story.timeline.begin("train first", "train the first model", run_id=run["dag_run_id"])
    result = train(story, run["dag_run_id"], "train first", "train the first model")
    before_deploy()
    deploy(story, str(result["version"]), train_started(story, run["dag_run_id"]), key="deploy first")
    return str(result["version"])


def train_started(story: Story, run_id: str) -> datetime:
    """When a train run started: the deploy run its registered model triggers comes after."""
    return when(story.client.dag_run("train", run_id).get("start_date")) or story.now()
