"""The closed loop as a story, played on the local stack: what ``airloop demo`` shows and what the
closed-loop test and benchmark measure.

    stable batches → ingest (a bad batch quarantined) → features → first training → first champion
    → steady traffic with delayed labels → a drift begins → the monitor decides to retrain (why)
    → train → the gate passes a challenger → shadow → canary steps → promote → traffic served by
    the new champion

Every stage is read back from Airflow (runs, task instances, XComs) into a ``Timeline`` shown
live and saved as JSON under ``<airflow.home>/demo/``. Nothing here is demo-specific config: the
monitor's windows, confirmation and cooldown and the rollout's holds come from the profile.

Parts: ``context`` (options, the shared state), ``reads`` (Airflow REST reads, polling),
``timeline`` (stages, the live display), ``data`` (land, ingest, features), ``models`` (train,
gate, deploy steps), ``monitor`` (traffic, windows, the decision, the new champion serving),
``summary``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tasks.common.secrets import use_mlflow_credentials
from tasks.platform import stack
from tasks.platform.stack.memory import Sampler
from tasks.platform.story import data, models, monitor
from tasks.platform.story.context import SCENARIO_NAMES, Story, StoryOptions
from tasks.platform.story.reads import StoryError
from tasks.platform.story.summary import print_summary
from tasks.platform.story.timeline import Display, Timeline

DAGS = ("ingest", "features", "train", "deploy", "monitor")

__all__ = [
    "SCENARIO_NAMES",
    "Display",
    "Story",
    "StoryError",
    "StoryOptions",
    "Timeline",
    "play",
    "print_summary",
]


def timeline_dir(story: Story) -> Path:
    return Path(story.settings.airflow.home) / "demo"


def _start(story: Story) -> None:
    """Airflow, MLflow and the database now; the serving application in the background (the
    data stages do not need it, and Ray takes a minute to start)."""
    settings = story.settings
    story.timeline.begin("stack", "start the local stack")
    stack.start(settings, services=stack.SERVICES, quiet=True)
    use_mlflow_credentials(settings)  # the story reads the registry: its versions and metrics
    if story.options.until != "features":
        # Ray shares two cores with ingest and features meanwhile: the stage's timeout, not 4 min
        wait = max(story.options.timeout, 240.0)
        story.start_serving(lambda: stack.start(settings, services=stack.LOOP, quiet=True, timeout=wait))
        # MLflow's client takes seconds to import: ask who the champion is while ingest runs
        asking = ThreadPoolExecutor(1, thread_name_prefix="champion")
        story.seen["champion_at_start"] = asking.submit(models.champion_version, story)
        asking.shutdown(wait=False)
    for dag_id in DAGS:
        story.client.wait_for_dag(dag_id, timeout=story.options.timeout)
    story.timeline.end("stack", detail=f"Airflow {settings.airflow.url}, MLflow {settings.mlflow.url}")


def _serving(story: Story) -> None:
    story.timeline.begin("serving", "serving application (Ray Serve) up")
    story.serving_ready()
    story.timeline.end("serving", detail=story.settings.serving.url)


def _closed_loop(story: Story) -> None:
    """From steady traffic to the new champion serving it (or the quiet ending with no drift)."""
    monitor.steady(story)
    monitor.drift_begins(story)
    if story.drift_scenario is None:
        monitor.no_retrain(story)
        return
    run_id = monitor.retrain_decided(story)
    story.seen["train_run_id"] = run_id
    result = models.train(story, run_id, "retrain", "retrain on the drifted data")
    ended = story.client.dag_run("train", run_id).get("end_date")
    models.gate_stage(story, result, ended)
    version = str(result["version"])
    run = models.deploy(story, version, models.train_started(story, run_id), key="rollout")
    story.seen["deploy_run_id"] = run["dag_run_id"]
    monitor.served(story, version)


def play(story: Story) -> Path:
    """The whole story (up to ``options.until``); the timeline's JSON. ``StoryError`` (and the
    stack's or Airflow's errors) when a stage fails: the timeline so far is saved either way."""
    sampler = Sampler(lambda: _pids(story)).start()
    try:
        _start(story)
        data.land_and_curate(story, "stable", story.options.batches, story.options.bad, label="stable")
        if story.options.until == "features":
            return timeline_dir(story)
        models.first_model(story, before_deploy=lambda: _serving(story))
        if story.options.until == "serve":
            monitor.steady(story)
            return timeline_dir(story)
        _closed_loop(story)
        return timeline_dir(story)
    finally:
        monitor.stop_traffic(story)
        story.timeline.facts["memory"] = sampler.stop()
        story.timeline.display.clear()
        story.timeline.save(timeline_dir(story))


def _pids(story: Story) -> dict[str, int]:
    return {s.name: pid for s in stack.LOOP if (pid := stack.service_pid(story.settings, s)) is not None}
