"""The live stages: steady traffic with delayed labels, the drift that begins, the monitor's
windows and its decision to retrain, and the new champion serving the traffic."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from tasks.platform.simulate import history_end
from tasks.platform.story.context import Story
from tasks.platform.story.data import land_and_curate
from tasks.platform.story.reads import StoryError, finished, poll, touched_since, xcom
from tasks.platform.story.timeline import FAILED, OK
from tasks.platform.traffic import FIRST_INDEX, Background, Clock, Mix

Decision = dict[str, Any]
"""What the monitor DAG's ``decide`` task returned (``tasks.monitoring.decision.Decision``)."""

INDEX_SPAN = 200
"""Simulated chunks each minute of wall time owns: transaction ids never repeat across demos."""


def first_traffic_index() -> int:
    """A fresh range of the simulator's indices for this demo's traffic: ids stay unique (the
    traffic's clock, not the index, places its transactions in time)."""
    return FIRST_INDEX + (int(time.time()) // 60 % 9000) * INDEX_SPAN


def start_traffic(story: Story) -> Background:
    if story.traffic is None:
        o = story.options
        player = Background(
            story.settings,
            rate=o.rate,
            label_delay=o.label_delay,
            mix=Mix("stable"),
            first_index=first_traffic_index(),
            clock=Clock.after_history(story.settings),
        )
        story.traffic = player.start()
    return story.traffic


def _traffic_news(story: Story) -> str:
    stats = story.traffic.stats if story.traffic else None
    if stats is None:
        return ""
    versions = ", ".join(f"v{v} {n}" for v, n in sorted(stats.versions.items()))
    return f"traffic: {stats.ok} answered, {stats.failed} failed, {stats.labels_posted} labels [{versions}]"


def decisions_since(
    story: Story, since: datetime, key: str, *, enough: Callable[[list[Decision]], bool]
) -> list[tuple[str, Decision]]:
    """The monitor's decisions (with their run ids) in runs touched since ``since``, until
    ``enough`` of them; each one is shown as it comes."""
    seen: dict[str, Decision] = {}
    failures: list[str] = []
    deadline = story.now() + timedelta(seconds=story.options.timeout)

    def check() -> list[tuple[str, Decision]] | None:
        for run in touched_since(story.client.dag_runs("monitor"), since):
            rid = run["dag_run_id"]
            if rid in seen or not finished(run):
                continue
            decision = xcom(story.client, "monitor", rid, "decide")
            seen[rid] = decision or {}
            if decision:
                story.timeline.display.line(
                    f"         monitor window to {decision.get('end')}: {decision.get('detail')}"
                )
            elif run["state"] == "failed":
                failures.append(rid)
        got = [(rid, d) for rid, d in seen.items() if d]
        held = _cooldown_ends(story, got, deadline)
        story.timeline.note(key, f"{len(got)} window(s) judged; {held}{_traffic_news(story)}")
        return got if got and enough([d for _, d in got]) else None

    try:
        return poll(check, timeout=story.options.timeout, what="the monitor's decision", every=3.0)
    except StoryError as exc:
        raise StoryError(f"{exc}; failed monitor runs: {failures or 'none'}") from exc


def _cooldown_ends(story: Story, got: list[tuple[str, Decision]], deadline: datetime) -> str:
    """A retrain the cooldown holds back comes once the cooldown ends (an earlier retrain, e.g.
    one the monitor started on performance before the drift in a continued demo, started it):
    the story waits for it when it ends within the stage's timeout, and says so at once when not."""
    last = got[-1][1] if got else {}
    if last.get("blocked_by") != "cooldown" or last.get("retrain"):
        return ""
    until = last.get("cooldown_until") or ""
    if until and datetime.fromisoformat(until) <= deadline:
        return f"the cooldown holds a retrain back until {until[11:19]} UTC; "
    hours = story.settings.monitor.decision.cooldown_hours
    raise StoryError(
        f"the monitor would retrain but its cooldown ({hours:g} h, monitor.decision.cooldown_hours) "
        f"holds it back past the stage's timeout: {last.get('detail')}"
    )


def steady(story: Story) -> None:
    """Live traffic of the stable world, labels later; the monitor judges a window of it."""
    o = story.options
    start_traffic(story)
    key = "steady"
    story.timeline.begin(key, f"steady traffic: {o.rate:g}/s, labels {o.label_delay:g} s later")
    since = story.now()
    if o.steady_windows <= 0:
        deadline = time.monotonic() + o.steady_seconds
        while time.monotonic() < deadline:
            story.timeline.note(key, _traffic_news(story))
            time.sleep(1.0)
        story.timeline.end(key, OK, _traffic_news(story))
        return
    got = decisions_since(story, since, key, enough=lambda ds: len(ds) >= o.steady_windows)
    run_id, last = got[-1]
    story.timeline.end(key, OK, f"monitor: {last.get('detail')}", run_id=run_id)


def drift_begins(story: Story) -> None:
    """The world changes: live traffic follows the drift scenario, and upstream lands labelled
    batches of the drifted world (what a retrain learns from)."""
    scenario = story.drift_scenario
    t0 = story.now()
    story.seen["drift_started"] = t0
    story.timeline.facts["drift_started"] = t0.isoformat()
    story.timeline.begin("drift", f"a drift scenario begins: {story.options.scenario}")
    if scenario is None:
        story.timeline.end("drift", OK, "no drift (--scenario none): the world stays stable")
        return
    assert story.traffic is not None
    story.traffic.mix.switch(scenario)
    story.timeline.end("drift", OK, f"live traffic is {scenario} from now on")
    land_and_curate(story, scenario, story.options.drift_batches, None, label="drifted")
    # the simulated present moves past the history just landed (and now in the online store)
    story.traffic.clock.anchor(history_end(story.settings).to_pydatetime())


def retrain_decided(story: Story) -> str:
    """Wait for the monitor to decide to retrain (its reason and numbers kept); the train run id."""
    t0: datetime = story.seen["drift_started"]
    key = "decide"
    story.timeline.begin(key, "monitor decides to retrain", at=t0.isoformat())
    got = decisions_since(story, t0, key, enough=lambda ds: bool(ds[-1].get("retrain")))
    run_id, decision = got[-1]
    story.seen["decide"] = run_id
    story.timeline.facts["decision"] = decision
    story.timeline.facts["windows_after_drift"] = [
        {"end": d.get("end"), "detail": d.get("detail"), "retrain": d.get("retrain")} for _, d in got
    ]
    story.timeline.end(key, OK, str(decision.get("detail")), at=decision.get("decided_at"), run_id=run_id)
    return str(decision.get("train_run_id") or f"monitor__{decision['window_id']}")


def no_retrain(story: Story) -> None:
    """With no drift: the monitor judges ``quiet_windows`` windows and retrains on none."""
    t0: datetime = story.seen["drift_started"]
    key, n = "quiet", story.options.quiet_windows
    story.timeline.begin(key, f"monitor judges {n} windows of unchanged traffic", at=t0.isoformat())
    got = decisions_since(story, t0, key, enough=lambda ds: len(ds) >= n or any(d.get("retrain") for d in ds))
    retrains = [d for _, d in got if d.get("retrain")]
    if retrains:
        story.timeline.end(key, FAILED, f"retrained anyway: {retrains[0].get('detail')}", run_id=got[-1][0])
        raise StoryError(f"the monitor retrained on unchanged traffic: {retrains[0].get('detail')}")
    story.timeline.end(
        key, OK, f"no retrain in {len(got)} window(s): {got[-1][1].get('detail')}", run_id=got[-1][0]
    )


def served(story: Story, version: str) -> None:
    """Wait until the traffic's latest answers all come from ``version``."""
    key, last = "served", story.options.served_answers
    story.timeline.begin(key, f"traffic served by the new champion v{version}")
    player = story.traffic
    assert player is not None
    poll(
        lambda: True if player.stats.serving_only(version, last) else None,
        timeout=story.options.timeout,
        what=f"traffic answered by v{version}",
        every=1.0,
        tick=lambda: story.timeline.note(key, _traffic_news(story)),
    )
    story.timeline.end(key, OK, f"the last {last} answers all came from v{version}")


def stop_traffic(story: Story) -> dict[str, Any] | None:
    """Stop the traffic (pending labels are posted) and keep its numbers for the summary."""
    if story.traffic is None:
        return None
    stats = story.traffic.stop()
    facts = {
        "sent": stats.sent,
        "answered": stats.ok,
        "failed": stats.failed,
        "labels_posted": stats.labels_posted,
        "versions": dict(stats.versions),
        "routes": dict(stats.routes),
        "p50_ms": stats.quantile(0.5),
        "p99_ms": stats.quantile(0.99),
        "errors": stats.errors,
    }
    story.timeline.facts["traffic"] = facts
    return facts
