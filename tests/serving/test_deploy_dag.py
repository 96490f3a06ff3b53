"""The deploy DAG: its chain from ``tasks.rollout.plan`` with one operator class per step kind
(no serving needed), then, under dag.test() against the real serving application and MLflow
registry with live traffic: a good version is promoted through every task; a bad one fails the
step that shows it, the rest never run, and every task page links to the rollout history."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.rollout import plan
from tests.dag_runs import load_dag, xcom
from tests.serving.conftest import register_model
from tests.serving.test_rollout import Traffic

ROOT = Path(__file__).resolve().parents[2]
OPERATORS = {
    "begin": "BeginStepOperator",
    "smoke": "SmokeStepOperator",
    "shadow": "ShadowStepOperator",
    "canary_10": "CanaryStepOperator",
    "canary_50": "CanaryStepOperator",
    "canary_100": "CanaryStepOperator",
    "promote": "PromoteStepOperator",
    "rollback": "RollbackStepOperator",
}


def test_the_plan_follows_the_canary_steps_in_config(settings):
    from config import RolloutStep

    specs = plan.steps(settings)
    assert [s.task_id for s in specs] == list(OPERATORS)
    by_id = {s.task_id: s for s in specs}
    assert [by_id[t].upstream for t in ("smoke", "shadow", "canary_10", "promote")] == [
        ("begin",),
        ("smoke",),
        ("shadow",),
        ("canary_100",),
    ]
    assert [by_id[f"canary_{n}"].canary_index for n in (10, 50, 100)] == [0, 1, 2]
    # a skipped shadow (first model, shadow off) lets the canary steps and promote run
    assert by_id["shadow"].trigger_rule == "all_success"
    assert {by_id[t].trigger_rule for t in ("canary_10", "canary_50", "canary_100", "promote")} == {
        "none_failed"
    }
    teardown = by_id["rollback"]
    assert teardown.teardown_of == "begin" and teardown.upstream == tuple(list(OPERATORS)[1:-1])
    one_step = settings.rollout.model_copy(update={"canary": [RolloutStep(weight=1.0)]})
    assert [s.task_id for s in plan.steps(settings.model_copy(update={"rollout": one_step}))] == [
        "begin",
        "smoke",
        "shadow",
        "canary_100",
        "promote",
        "rollback",
    ]
    with pytest.raises(ValueError, match="canary_index"):
        plan.StepSpec("canary_5", plan.CANARY)
    with pytest.raises(ValueError, match="unknown rollout step kind"):
        plan.StepSpec("wobble", "wobble")


def test_the_version_to_roll_out_is_the_newest_event_that_names_one():
    extras = [{"version": "3"}, {"note": "no version"}, {"version": 5}, {"version": None}]
    assert plan.announced_version(extras) == "5"
    assert plan.announced_version([{"note": "x"}]) is None and plan.announced_version([]) is None


def test_the_dag_is_the_plan_with_one_operator_class_per_step(settings):
    from airflow.dag_processing.dagbag import DagBag

    from plugins.assets import registered_model

    bag = DagBag(str(ROOT / "dags" / "deploy.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["deploy"]
    assert {t.task_id: type(t).__name__ for t in dag.tasks} == OPERATORS
    assert [t.task_id for t in dag.tasks] == list(OPERATORS)
    assert dag.get_task("canary_50").canary_index == 1
    assert dag.get_task("canary_50").trigger_rule == "none_failed"
    teardown = dag.get_task("rollback")
    assert teardown.is_teardown and teardown.upstream_task_ids == set(OPERATORS) - {"rollback"}
    assert dag.get_task("begin").version == "{{ params.version or '' }}"
    assert "{{" in dag.get_task("smoke").rollout_id and "rollout_id" in dag.get_task("smoke").template_fields
    for task in dag.tasks:
        assert [link.name for link in task.operator_extra_links] == ["Rollout history"], task.task_id
    assert list(dag.timetable.asset_condition.objects) == [registered_model]  # declared once, in plugins


class _TaskInstance:
    """Where an operator pushes its XCom when run outside a DAG run (just the calls it makes)."""

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def test_a_step_without_a_rollout_fails_for_good_and_an_ended_rollout_skips_the_teardown(settings):
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from plugins.rollout import RollbackStepOperator, SmokeStepOperator
    from tasks.common import reports
    from tasks.common.clock import now_iso
    from tasks.rollout import record as records

    with pytest.raises(AirflowFailException, match="the begin task did not run"):
        SmokeStepOperator(task_id="smoke", settings=settings, rollout_id="").execute(context={})
    done = records.RolloutRecord(
        id=records.new_id("4"),
        model=settings.mlflow.registered_model,
        version="4",
        champion_version="3",
        first=False,
        status=records.PROMOTED,
        started_at=now_iso(),
    )
    records.save(settings, done)
    ti = _TaskInstance()
    teardown = RollbackStepOperator(task_id="rollback", settings=settings, rollout_id=done.id)
    with pytest.raises(AirflowSkipException, match="already ended: promoted"):
        teardown.execute(context={"ti": ti})
    link = ti.pushed["rollout_history"]
    assert link.startswith("/airloop/reports/rollouts/")
    assert "promoted" in reports.read_report(settings, "rollouts", link.rsplit("/", 1)[-1])


class _ServeApiStub:
    """A local HTTP server in place of the Ray dashboard's Serve REST API: it records every PUT
    (path, Authorization header, JSON body) and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from tasks.common.net import free_port

        seen: list[dict] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": json.loads(body)}
                )
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _on_cluster(settings, url: str, token: str | None):
    serving = settings.serving.model_copy(update={"dashboard_url": url, "ray_auth_token": token})
    return settings.model_copy(update={"serving": serving})


def test_the_application_is_put_on_the_cluster_with_the_ray_token(settings):
    from tasks.rollout import application

    stub = _ServeApiStub()
    try:
        application.put_application(_on_cluster(settings, stub.url, "ray-secret-token"))
        application.put_application(_on_cluster(settings, stub.url + "/", None))
    finally:
        stub.close()
    [with_token, without] = stub.seen
    assert with_token["path"] == without["path"] == "/api/serve/applications/"
    assert with_token["auth"] == "Bearer ray-secret-token" and without["auth"] is None
    [app] = with_token["body"]["applications"]
    assert app["name"] == settings.serving.app_name


def test_a_cluster_that_refuses_the_token_says_which_setting_to_fix(settings):
    from tasks.rollout import application

    stub = _ServeApiStub(status=401)
    try:
        with pytest.raises(RuntimeError, match=r"serving\.ray_auth_token"):
            application.put_application(_on_cluster(settings, stub.url, "wrong"))
    finally:
        stub.close()
    assert stub.seen[0]["auth"] == "Bearer wrong"


FAST_ENV = {
    "AIRLOOP__ROLLOUT__SHADOW": "{enabled: true, hold_seconds: 1, min_requests: 30}",
    "AIRLOOP__ROLLOUT__CANARY": "[{weight: 0.25, hold_seconds: 1, min_requests: 20}, "
    "{weight: 1.0, hold_seconds: 1, min_requests: 30}]",
    "AIRLOOP__ROLLOUT__POLL_SECONDS": "0.5",
    "AIRLOOP__ROLLOUT__MAX_HOLD_SECONDS": "90",
    "AIRLOOP__ROLLOUT__JUDGE": "{max_error_rate: 0.01, max_p99_ms: 5000, max_latency_ratio: 2.0, "
    "latency_slack_ms: 250, max_score_psi: 0.2}",
}


@pytest.fixture
def deploy_dag(serving_app, client, airflow_db, monkeypatch):
    from tasks.common import registry

    for name, value in {**serving_app.env, **FAST_ENV}.items():
        monkeypatch.setenv(name, value)
    client.unload("challenger")
    yield load_dag("deploy.py", "deploy")
    settings = serving_app.settings
    mc = registry.client(settings.mlflow.url)
    mc.set_registered_model_alias(
        settings.mlflow.registered_model, registry.CHAMPION, serving_app.versions["good"]
    )
    mc.set_registered_model_alias(
        settings.mlflow.registered_model, registry.CHALLENGER, serving_app.versions["challenger"]
    )


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _page(link: str) -> str:
    from config import load_config
    from tasks.common import reports

    kind, name = link.removeprefix("/airloop/reports/").split("/")
    return reports.read_report(load_config(), kind, name)


@pytest.mark.slow
def test_deploy_dag_promotes_a_good_version(deploy_dag, serving_app, client):
    from tests.serving.scorers import ConstantScorer

    assert [t.task_id for t in deploy_dag.tasks] == [
        "begin",
        "smoke",
        "shadow",
        "canary_25",
        "canary_100",
        "promote",
        "rollback",
    ]
    version = register_model(serving_app.settings, ConstantScorer(0.03), serving_app.events)
    with Traffic(serving_app).running() as traffic:
        run = deploy_dag.test(run_conf={"version": version})
    states = _states(run)
    assert run.state == "success", states
    assert states == {
        "begin": "success",
        "smoke": "success",
        "shadow": "success",
        "canary_25": "success",
        "canary_100": "success",
        "promote": "success",
        "rollback": "skipped",
    }
    assert client.status()["slots"]["champion"]["version"] == version
    assert traffic.failures == [], traffic.failures[:3]
    link = xcom(run, "promote", "rollout_history")
    assert link == xcom(run, "smoke", "rollout_history")
    page = _page(link)
    assert f"version {version}" in page and "promoted" in page and "canary_25" in page
    assert run.run_id in page


@pytest.mark.slow
def test_deploy_dag_rolls_back_a_bad_version_at_the_failing_step(deploy_dag, serving_app, client):
    from tests.serving.scorers import ConstantScorer

    version = register_model(serving_app.settings, ConstantScorer(0.7), serving_app.events)
    with Traffic(serving_app).running() as traffic:
        run = deploy_dag.test(run_conf={"version": version})
    states = _states(run)
    assert run.state == "failed", states
    assert states["smoke"] == "success" and states["shadow"] == "failed", states
    assert {states["canary_25"], states["canary_100"], states["promote"]} == {"upstream_failed"}
    assert states["rollback"] == "skipped", "the failing step rolled back itself"
    status = client.status()
    assert status["slots"]["champion"]["version"] == serving_app.versions["good"]
    assert status["challenger_weight"] == 0.0 and not status["shadow"]
    assert traffic.failures == [], traffic.failures[:3]
    page = _page(xcom(run, "shadow", "rollout_history"))
    assert "rolled back" in page and "score_calibration" in page
