"""The loop on the production stack of this machine, stage by stage, each timed: what ``airloop
prod-local run`` and ``tests/e2e/test_prodlocal_run.py`` play.

    up → DAGs parsed → land batches (asset events) → ingest → features → train (the first
    model) → deploy (the Serve application PUT on the Ray cluster through the Serve REST API,
    smoke, promote) → live scoring over HTTP with labels → a monitor window (``until="monitor"``)

The stages are the story's (``tasks.platform.story``: the same reads of Airflow's REST API as
``airloop demo``); only the start differs: no local serving process, the deploy DAG puts the
application on the cluster itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.platform.airflow_client import AirflowClient
from tasks.platform.prodlocal.checks import all_facts
from tasks.platform.prodlocal.control import environment, up
from tasks.platform.prodlocal.state import pipeline_env
from tasks.platform.prodlocal.state import settings as settings_of
from tasks.platform.story import Story, StoryOptions, data, models, monitor
from tasks.platform.story.reads import poll

DAGS = ("ingest", "features", "train", "deploy", "monitor")


@dataclass(frozen=True)
class Options:
    batches: int = 3
    rows: int = 3000
    """Rows per simulated batch: 3 batches of 3000 are 12 simulated days, enough training rows."""
    until: str = "monitor"
    """``deploy``: stop once the first model answers over HTTP; ``monitor``: after a monitor window."""
    answers: int = 50
    """Answers from the deployed version that show scoring works (``until="deploy"``)."""
    timeout: float = 600.0
    """Seconds each stage may take."""
    rate: float = 15.0


@dataclass
class Report:
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds each stage took, in order."""
    facts: dict[str, Any] = field(default_factory=dict)

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        print(f"[prod-local] {name} ...", flush=True)
        result = fn()
        self.stages[name] = round(time.monotonic() - t0, 1)
        print(f"[prod-local] {name}: {self.stages[name]:.1f} s", flush=True)
        return result


def _story(settings: Any, options: Options) -> Story:
    story_options = StoryOptions(
        batches=options.batches,
        rows=options.rows,
        bad=None,
        rate=options.rate,
        label_delay=2.0,
        steady_windows=1,
        timeout=options.timeout,
        until="serve",
    )
    return Story(settings, AirflowClient.from_settings(settings), story_options)


def _answered(story: Story, version: str, answers: int) -> dict[str, Any]:
    """Live traffic until ``answers`` answers came from ``version``; the traffic's numbers."""
    traffic = monitor.start_traffic(story)

    def enough() -> bool | None:
        return True if traffic.stats.versions.get(version, 0) >= answers else None

    poll(enough, timeout=story.options.timeout, what=f"{answers} answers from v{version}", every=1.0)
    return _traffic_facts(story)


def _traffic_facts(story: Story) -> dict[str, Any]:
    stats = story.traffic.stats if story.traffic else None
    if stats is None:
        return {}
    return {
        "ok": stats.ok,
        "failed": stats.failed,
        "labels": stats.labels_posted,
        "versions": dict(stats.versions),
        "errors": stats.errors[:3],
    }


def _loop(story: Story, options: Options, report: Report) -> None:
    client = story.client
    report.timed("dags parsed", lambda: [client.wait_for_dag(d, timeout=options.timeout) for d in DAGS])
    report.timed(
        "ingest + features",
        lambda: data.land_and_curate(story, "stable", options.batches, None, label="stable"),
    )
    version = report.timed("train + deploy", lambda: models.first_model(story, before_deploy=lambda: None))
    report.facts["version"] = version
    report.facts["traffic"] = report.timed(
        "scoring over HTTP", lambda: _answered(story, str(version), options.answers)
    )
    if options.until == "monitor":
        report.timed("monitor window", lambda: monitor.steady(story))
        report.facts["traffic"] = _traffic_facts(story)


def run(root: Path, options: Options, *, report: Report | None = None, up_timeout: float = 480.0) -> Report:
    """Start the stack (when not running), play the loop, read back where everything landed.
    The stack is left running (``down`` stops it); the report so far is in ``report.facts``
    even when a stage fails, in the ``report`` passed in."""
    report = Report() if report is None else report
    state = report.timed("up", lambda: up(root, timeout=up_timeout))
    with environment(pipeline_env(state)):
        settings = settings_of(state)
        story = _story(settings, options)
        try:
            _loop(story, options, report)
        finally:
            monitor.stop_traffic(story)
            report.facts["timeline"] = [
                f"{s.key}: {s.outcome} {s.detail}" for s in story.timeline.stages if s.outcome
            ]
            report.facts["stores"] = report.timed("checks", lambda: all_facts(state, settings))
    return report
