"""The story's summary: the timeline, both model versions with their hold-out metrics, the drift
numbers that triggered the retrain, the traffic and memory, and where to look."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.common.reports import UI_PREFIX
from tasks.platform.stack.memory import mib
from tasks.platform.story.context import Story
from tasks.platform.story.models import metrics_line

Say = Callable[[str], None]


def _versions(facts: dict[str, Any], say: Say) -> None:
    versions = facts.get("versions") or {}
    if not versions:
        return
    say("\nmodel versions (hold-out metrics)")
    for version, v in sorted(versions.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0):
        if v.get("metrics"):
            name = v.get("candidate") or ""
            say(f"  v{version:<4} {name:<10} {metrics_line(v['metrics'])}   (its own hold-out)")
        if v.get("same_holdout"):
            say(f"  v{version:<4} {'':<10} {metrics_line(v['same_holdout'])}   (the retrain's hold-out)")
        if v.get("compared_with"):
            say(f"        the gate compared it with v{v['compared_with']} on the same hold-out")


def _drift(facts: dict[str, Any], conf: dict[str, Any], say: Say) -> None:
    decision = facts.get("decision")
    if not decision:
        return
    say("\nwhy it retrained (the monitor's decision)")
    say(f"  {decision.get('detail')}")
    numbers = decision.get("numbers") or {}
    shown = {k: v for k, v in numbers.items() if v not in (None, [], {})}
    for name, value in shown.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        say(f"    {name:<24} {text[:100]}")
    for window in facts.get("windows_after_drift") or []:
        say(f"  window to {window.get('end')}: {window.get('detail')}")
    if conf:
        drift = conf.get("drift") or {}
        say(f"  train run conf: reason={conf.get('reason')!r}, drift keys {sorted(drift)[:8]}")


def _traffic(facts: dict[str, Any], say: Say) -> None:
    t = facts.get("traffic")
    if not t:
        return
    versions = ", ".join(f"v{v}: {n}" for v, n in sorted(t["versions"].items()))
    p99 = f", p99 {t['p99_ms']:.0f} ms" if t.get("p99_ms") is not None else ""
    say(
        f"\ntraffic  {t['sent']} sent, {t['answered']} answered, {t['failed']} failed{p99}, "
        f"{t['labels_posted']} labels posted  [{versions}]"
    )
    for error in t.get("errors") or []:
        say(f"  failure: {error}")


def _memory(facts: dict[str, Any], say: Say) -> None:
    mem = facts.get("memory")
    if not mem:
        return
    at_peak = mem.get("pss_by_service_at_peak") or {}
    per = ", ".join(f"{k} {mib(v)}" for k, v in sorted(at_peak.items(), key=lambda kv: -kv[1]))
    say(
        f"memory   peak {mib(mem['peak_pss'])} proportional (shared pages once; {mib(mem['peak_rss'])} "
        f"summed resident) of the 4 GiB budget; per service at that peak: {per}"
    )


def _where(story: Story, say: Say) -> None:
    s, seen = story.settings, story.seen
    ui = s.airflow.url
    say("\nwhere to look")
    say(f"  Airflow UI       {ui}  (log in as {s.airflow.username} / {s.airflow.password})")
    for dag_id, key in (("monitor", "decide"), ("train", "train_run_id"), ("deploy", "deploy_run_id")):
        run_id = seen.get(key)
        if run_id:
            say(f"    {dag_id:<14} {ui}/dags/{dag_id}/runs/{run_id}")
    say(f"  reports          {ui}{UI_PREFIX}/   (drift, model cards, rollouts, quarantine)")
    say(f"  MLflow           {s.mlflow.url}/#/models/{s.mlflow.registered_model}")
    say(f"  scoring          POST {s.serving.url}/score   metrics {s.serving.url}/metrics")
    for folder in seen.get("quarantine") or []:
        say(f"  quarantined      {folder}/validation.html")
    say("  more traffic     .venv/bin/airloop traffic --rate 50 --seconds 600")
    say("  stop the stack   make down   (or .venv/bin/airloop down)")


def print_summary(story: Story, say: Say = print) -> None:
    facts = story.timeline.facts
    say("\ntimeline")
    for row in story.timeline.table():
        say(row)
    _versions(facts, say)
    _drift(facts, story.seen.get("train_conf") or {}, say)
    _traffic(facts, say)
    _memory(facts, say)
    _where(story, say)
