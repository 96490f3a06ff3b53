"""The closed loop, live, on the real stack: the story ``make demo`` tells, at CI scale.

Real scheduler, triggerer, dag-processor, api-server, PostgreSQL, MLflow and the Ray Serve
application; small batches, windows of 200 predictions, holds of a few seconds
(``conftest.CLOSED_LOOP``). It plays stable batches (and a bad one), the first model, live
traffic with delayed labels, then a covariate drift, and asserts:

- the stages happened in the story's order, each read back from Airflow;
- the retrain run was triggered by the monitor, and its conf names the drift and its numbers;
- the new version went through shadow and every canary step to promote, and serves the traffic;
- the traffic client (live traffic, never marked synthetic) saw zero failed requests.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tasks.platform import stack
from tasks.platform.story import Story, StoryOptions, play, print_summary
from tasks.platform.story.timeline import OK
from tasks.rollout import record
from tests.e2e.conftest import airloop_environment

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(1800),  # 3.5 to 6.5 min on a quiet machine; each stage has its own limit
]

OPTIONS = StoryOptions(
    batches=3,  # 12 simulated days: 5 of them past the features' 7-day warm-up are training rows
    rows=3000,
    bad="nulls",
    scenario="covariate",
    drift_batches=1,
    rate=15.0,
    label_delay=2.0,
    steady_windows=0,
    steady_seconds=5.0,
    served_answers=30,
    timeout=600.0,  # per stage: a slow stage on a loaded machine is not a wrong one
)

ORDER = [
    "ingest stable",
    "features stable",
    "train first",
    "deploy first",
    "steady",
    "drift",
    "decide",
    "retrain",
    "gate",
    "deploy shadow",
    "deploy canary_10",
    "deploy canary_50",
    "deploy canary_100",
    "deploy promote",
    "rollout",
    "served",
]
"""Stage keys in the order the story must show them (deploy steps: of the retrained version)."""


def _stage(timeline: dict, key: str) -> dict:
    found = [s for s in timeline["stages"] if s["key"] == key or s["key"].startswith(f"{key} v")]
    assert found, f"no stage {key!r} in {[s['key'] for s in timeline['stages']]}"
    return found[-1]


def test_drift_retrain_canary_promote(airflow_stack, capsys):
    settings, client, env = airflow_stack
    story = Story(settings, client, OPTIONS)
    # the story starts the serving application itself, as in the shell `make demo` runs in; it
    # is stopped here whatever happens, so no Ray outlives the test
    with airloop_environment(env):
        try:
            saved = play(story)
        finally:
            with capsys.disabled():
                print_summary(story, print)
            stack.stop(settings, quiet=True, services=[stack.SERVE])
    timeline = json.loads((Path(saved) / "latest.json").read_text())

    stages = [_stage(timeline, key) for key in ORDER]
    assert [s["outcome"] for s in stages] == [OK] * len(ORDER), [(s["key"], s["outcome"]) for s in stages]
    for before, after in itertools.pairwise(stages):
        if before["key"] in ("drift", "decide") or after["key"] == "rollout":
            continue  # the decision's stage opens when the drift begins; the rollout spans its steps
        if before["key"].startswith("ingest") and after["key"].startswith("features"):
            continue  # each ingest run's curated asset starts features while later ingest runs go on
        # a deploy run is started by the asset event of the train run's last task, a moment
        # before Airflow marks that train run done
        slack = timedelta(seconds=5 if after["key"].startswith("deploy first") else 0)
        ended, began = datetime.fromisoformat(before["ended"]), datetime.fromisoformat(after["started"])
        assert ended <= began + slack, f"{before['key']} ended after {after['key']} began"
    assert "quarantined" in _stage(timeline, "ingest stable")["detail"]

    decision = timeline["facts"]["decision"]
    assert decision["retrain"] and decision["reason"] == "drift", decision
    train_run_id = story.seen["train_run_id"]
    assert train_run_id.startswith("monitor__")
    conf = client.dag_run("train", train_run_id)["conf"]
    assert conf["reason"] == "drift"
    assert conf["drift"]["window_id"] == decision["window_id"]
    drift, limits = conf["drift"], settings.monitor.drift  # data drift, or the scores' own drift
    data_drift = drift["drift_share"] >= limits.share_threshold
    assert data_drift or drift["prediction_score"] >= limits.prediction_threshold, conf

    new = str(timeline["facts"]["versions"][max(timeline["facts"]["versions"], key=int)]["version"])
    rollout = next(r for r in record.history(settings, limit=5) if r.version == new)
    assert rollout.status == record.PROMOTED and not rollout.first
    weights = [s.weight for s in rollout.steps if s.kind == "canary"]
    assert weights == [0.1, 0.5, 1.0] and all(
        s.status == record.PASSED for s in rollout.steps if s.kind != "rollback"
    )
    tis = {t["task_id"]: t["state"] for t in client.task_instances("deploy", story.seen["deploy_run_id"])}
    for step in ("smoke", "shadow", "canary_10", "canary_50", "canary_100", "promote"):
        assert tis[step] == "success", tis

    traffic = timeline["facts"]["traffic"]
    assert traffic["failed"] == 0, traffic["errors"]
    assert traffic["answered"] == traffic["sent"] > 0
    assert traffic["versions"].get(new, 0) >= OPTIONS.served_answers
