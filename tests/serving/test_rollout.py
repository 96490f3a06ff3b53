"""Rollouts over real HTTP against the real Ray Serve application and MLflow registry, with live
traffic from concurrent clients: a good challenger is promoted step by step; a challenger that
errors, is slow or shifts the scores is rolled back at the step that shows it; a model that fails
its smoke test never sees traffic; the first model goes straight to 100 %. The clients sending
traffic throughout see no failure at all."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from config import Rollout
from tests.serving.conftest import register_model

pytestmark = pytest.mark.slow

FAST = Rollout(
    smoke_rows=50,
    shadow={"hold_seconds": 1.0, "min_requests": 30},
    canary=[
        {"weight": 0.1, "hold_seconds": 1.0, "min_requests": 20},
        {"weight": 0.5, "hold_seconds": 1.0, "min_requests": 30},
        {"weight": 1.0, "hold_seconds": 1.0, "min_requests": 30},
    ],
    max_hold_seconds=90,
    poll_seconds=0.5,
    # Latency limits loose enough for two busy shared cores, tight enough for a 0.6 s model.
    judge={"max_error_rate": 0.01, "max_p99_ms": 5000, "max_latency_ratio": 2.0, "latency_slack_ms": 250},
)


def fast(settings):
    return settings.model_copy(update={"rollout": FAST})


class Traffic:
    """Clients scoring known transactions in a loop until stopped; every failure is kept."""

    def __init__(self, world, clients: int = 4) -> None:
        from tasks.serving.client import ServingClient

        self.world = world
        self.stop = threading.Event()
        self.sent = 0
        self.failures: list[str] = []
        self.versions: dict[str, int] = {}
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(ServingClient(world.url, timeout=30), i), daemon=True)
            for i in range(clients)
        ]

    def _run(self, client, offset: int) -> None:
        i = offset
        while not self.stop.is_set():
            try:
                answer = client.score(self.world.transaction(i % 500))
                with self._lock:
                    self.sent += 1
                    self.versions[answer["model_version"]] = self.versions.get(answer["model_version"], 0) + 1
            except Exception as exc:  # noqa: BLE001 - every failure is the test's business
                with self._lock:
                    self.sent += 1
                    self.failures.append(repr(exc))
            i += len(self.threads)

    @contextmanager
    def running(self) -> Iterator[Traffic]:
        for t in self.threads:
            t.start()
        try:
            yield self
        finally:
            self.stop.set()
            for t in self.threads:
                t.join(timeout=60)


@pytest.fixture
def rollout_world(serving_app, client):
    """The app at v1 champion with no challenger; the registry's aliases restored afterwards."""
    from tasks.common import registry

    settings = serving_app.settings
    client.unload("challenger")
    mc = registry.client(settings.mlflow.url)
    name = settings.mlflow.registered_model
    yield serving_app
    mc.set_registered_model_alias(name, registry.CHAMPION, serving_app.versions["good"])
    mc.set_registered_model_alias(name, registry.CHALLENGER, serving_app.versions["challenger"])


def _register(world, scorer) -> str:
    return register_model(world.settings, scorer, world.events)


def _run_rollout(settings, version: str):
    """Every step in order, as the deploy DAG runs them; the record at the end."""
    from tasks.common.outcomes import Skip
    from tasks.rollout import record as records
    from tasks.rollout import steps
    from tasks.rollout.holding import StepFailed

    rec = steps.begin(settings, version=version, context={"test": True})
    order = [steps.smoke, steps.shadow]
    order += [lambda s, r, i=i: steps.canary(s, r, i) for i in range(len(settings.rollout.canary))]
    for step in [*order, steps.promote]:
        try:
            step(settings, rec.id)
        except Skip:
            continue
        except StepFailed:
            break
    return records.load(settings, rec.id)


def _tags(settings, version: str) -> dict[str, str]:
    from tasks.common import registry

    return (
        registry.client(settings.mlflow.url).get_model_version(settings.mlflow.registered_model, version).tags
    )


def _alias(settings, alias: str) -> str | None:
    from tasks.common import registry

    mv = registry.version_for_alias(
        registry.client(settings.mlflow.url), settings.mlflow.registered_model, alias
    )
    return None if mv is None else str(mv.version)


def test_good_challenger_is_promoted_step_by_step(rollout_world, client):
    from tests.serving.scorers import ConstantScorer

    settings = fast(rollout_world.settings)
    version = _register(rollout_world, ConstantScorer(0.03))  # the same score bucket as the champion (0.02)
    with Traffic(rollout_world).running() as traffic:
        rec = _run_rollout(settings, version)
    assert rec.status == "promoted", rec.reason
    assert [(s.name, s.status) for s in rec.steps] == [
        ("smoke", "passed"),
        ("shadow", "passed"),
        ("canary_10", "passed"),
        ("canary_50", "passed"),
        ("canary_100", "passed"),
        ("promote", "passed"),
    ]
    for step in rec.steps[1:5]:
        assert step.requests >= 20 and all(c["passed"] for c in step.checks), step
        assert {c["name"] for c in step.checks} >= {"error_rate", "p99_latency_ms", "score_shift_psi"}
    assert rec.steps[2].measured["route"] == "challenger" and rec.steps[1].measured["route"] == "shadow"
    # the champion is the new version, in serving and in the registry
    status = client.status()
    assert status["slots"]["champion"]["version"] == version
    assert not status["slots"]["challenger"]["loaded"] and status["challenger_weight"] == 0.0
    assert _alias(settings, "champion") == version
    assert _tags(settings, version)["rollout_status"] == "promoted"
    assert _tags(settings, rollout_world.versions["good"]).get("retired_at")
    assert client.score(rollout_world.transaction(1))["model_version"] == version
    # the clients saw the champion, then both versions, then the new one, and not one failure
    assert traffic.failures == [] and traffic.sent > 200, traffic.failures[:3]
    assert (
        traffic.versions.get(version, 0) > 0 and traffic.versions.get(rollout_world.versions["good"], 0) > 0
    )


@pytest.mark.parametrize(
    ("kind", "failing_step", "check"),
    [
        ("errors", "shadow", "error_rate"),
        ("slow", "shadow", "model_latency_vs_champion"),
        ("shifted", "shadow", "score_shift_psi"),
    ],
)
def test_bad_challenger_is_rolled_back_at_the_step_that_shows_it(
    rollout_world, client, kind, failing_step, check
):
    from tests.serving.scorers import ConstantScorer, SlowScorer, SmallBatchFailingScorer

    settings = fast(rollout_world.settings)
    scorer = {
        "errors": SmallBatchFailingScorer(0.03),
        "slow": SlowScorer(0.03, 0.6),
        "shifted": ConstantScorer(0.6),
    }[kind]
    version = _register(rollout_world, scorer)
    champion = rollout_world.versions["good"]
    with Traffic(rollout_world).running() as traffic:
        rec = _run_rollout(settings, version)
    assert rec.status == "rolled_back"
    by_name = {s.name: s for s in rec.steps}
    assert by_name["smoke"].status == "passed"
    assert by_name[failing_step].status == "failed"
    assert [c["name"] for c in by_name[failing_step].checks if not c["passed"]] == [check], by_name[
        failing_step
    ]
    assert "canary_10" not in by_name and by_name["rollback"].status == "passed"
    assert check in rec.reason
    # traffic is back on the champion, the challenger slot empty, the version tagged rejected
    status = client.status()
    assert status["slots"]["champion"]["version"] == champion
    assert status["challenger_weight"] == 0.0 and not status["shadow"]
    assert not status["slots"]["challenger"]["loaded"]
    tags = _tags(settings, version)
    assert tags["rollout_status"] == "rolled_back" and tags["rejected_step"] == failing_step
    assert check in tags["rejected_reason"]
    assert _alias(settings, "champion") == champion and _alias(settings, "challenger") != version
    assert traffic.failures == [], traffic.failures[:3]
    # a rejected version is not rolled out again
    from tasks.rollout import steps

    again = steps.begin(settings, version=version)
    assert again.status == "nothing_to_do" and "rejected" in again.reason


def test_canary_errors_roll_back_without_a_shadow_step(rollout_world, client):
    """With shadow off, the errors show in the first canary step, and no client sees them: the
    challenger's failed rows are answered by the champion."""
    from tests.serving.scorers import SmallBatchFailingScorer

    no_shadow = Rollout(**{**FAST.model_dump(), "shadow": {"enabled": False}})
    settings = rollout_world.settings.model_copy(update={"rollout": no_shadow})
    version = _register(rollout_world, SmallBatchFailingScorer(0.03))
    with Traffic(rollout_world).running() as traffic:
        rec = _run_rollout(settings, version)
    by_name = {s.name: s for s in rec.steps}
    assert rec.status == "rolled_back" and by_name["shadow"].status == "skipped"
    assert by_name["canary_10"].status == "failed" and "error_rate" in by_name["canary_10"].reason
    assert client.status()["challenger_weight"] == 0.0
    assert traffic.failures == [], traffic.failures[:3]


def test_a_model_that_fails_its_smoke_test_never_sees_traffic(rollout_world, client):
    settings = fast(rollout_world.settings)
    broken = rollout_world.versions["broken"]
    before = client.metrics()
    rec = _run_rollout(settings, broken)
    assert rec.status == "rolled_back"
    assert [(s.name, s.status) for s in rec.steps] == [("smoke", "failed"), ("rollback", "passed")]
    assert "broken on purpose" in rec.reason
    after = client.metrics()
    from tasks.rollout import judge

    window = judge.delta(after, before)
    assert judge.total(window, "airloop_serving_predictions_total", route="challenger") == 0
    assert judge.total(window, "airloop_serving_predictions_total", route="shadow") == 0
    assert _tags(settings, broken)["rejected_step"] == "smoke"


def test_rollout_history_page_shows_steps_judgments_and_earlier_rollouts(rollout_world):
    from tasks.common import reports
    from tasks.rollout import history_page
    from tasks.rollout import record as records

    settings = rollout_world.settings
    done = records.history(settings)
    assert len(done) >= 2, "runs after the rollout tests above"
    published = history_page.publish(settings, done[0])
    page = reports.read_report(settings, "rollouts", published.name)
    assert "<svg" in page and "Steps and judgments" in page
    for r in done:
        assert f"<td>{r.version}</td>" in page
    listed = reports.list_reports(settings, "rollouts")
    assert listed[0].name == published.name and listed[0].meta["status"] == done[0].status


def test_first_model_goes_straight_to_full_traffic_after_its_smoke_test(serving_app, tmp_path):
    """A second application (its own model name, route and slots) that has never had a model."""
    from ray import serve

    from tasks.common import registry
    from tasks.common.outcomes import Skip
    from tasks.rollout import steps
    from tasks.serving import process as serving
    from tasks.serving.client import ServingClient
    from tests.serving.scorers import ConstantScorer

    base = fast(serving_app.settings)
    settings = base.model_copy(
        update={
            "mlflow": base.mlflow.model_copy(update={"registered_model": "fraud-first-model"}),
            "serving": base.serving.model_copy(
                update={"app_name": "airloop-first", "route_prefix": "/first"}
            ),
        }
    )
    url = serving.start(settings)
    try:
        client = ServingClient(url)
        assert client.status()["slots"]["champion"]["loaded"] is False
        version = register_model(settings, ConstantScorer(0.05), serving_app.events)
        mc = registry.client(settings.mlflow.url)
        assert str(mc.get_model_version_by_alias("fraud-first-model", "champion").version) == version
        rec = steps.begin(settings, version=version)
        assert rec.first
        steps.smoke(settings, rec.id)
        for skipped in (lambda: steps.shadow(settings, rec.id), lambda: steps.canary(settings, rec.id, 0)):
            with pytest.raises(Skip):
                skipped()
        rec = steps.promote(settings, rec.id)
        assert rec.status == "promoted" and rec.reason.startswith("first model")
        assert [s.status for s in rec.steps] == ["passed", "skipped", "skipped", "passed"]
        assert client.score(serving_app.transaction(0))["model_version"] == version
        assert client.status()["slots"]["champion"]["version"] == version
    finally:
        serve.delete("airloop-first")


def test_rollback_after_a_step_died_halfway_restores_the_champion(rollout_world, client):
    """What the deploy DAG's rollback teardown does when a step's task died mid-canary: the
    traffic split it left behind is undone and the version is rejected."""
    from tasks.common.clock import now_iso
    from tasks.rollout import record as records
    from tasks.rollout import steps
    from tasks.rollout.rollback import rollback
    from tests.serving.scorers import ConstantScorer

    settings = fast(rollout_world.settings)
    version = _register(rollout_world, ConstantScorer(0.03))
    rec = steps.begin(settings, version=version)
    steps.smoke(settings, rec.id)
    client.set_traffic(challenger_weight=0.5)  # what a canary step left when its worker died
    rec = records.load(settings, rec.id)
    rec.steps.append(
        records.StepRecord(name="canary_50", kind="canary", status="running", started_at=now_iso())
    )
    rec = rollback(settings, rec, reason="step canary_50 did not finish: its task failed")
    assert rec.status == "rolled_back"
    status = client.status()
    assert status["challenger_weight"] == 0.0 and not status["slots"]["challenger"]["loaded"]
    assert status["slots"]["champion"]["version"] == rollout_world.versions["good"]
    assert _tags(settings, version)["rollout_status"] == "rolled_back"
    assert rollback(settings, rec, reason="again") is rec, "rolling back twice changes nothing"
