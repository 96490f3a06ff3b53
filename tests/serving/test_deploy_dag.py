"""The deploy DAG under dag.test() against the real serving application and MLflow registry, with
live traffic: a good version is promoted through every task; a bad one fails the step that shows
it, the rest never run, and every task page links to the rollout history."""

from __future__ import annotations

import pytest

from tests.dag_runs import load_dag, xcom
from tests.serving.conftest import register_model
from tests.serving.test_rollout import Traffic

pytestmark = pytest.mark.slow

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
    assert "rolled back" in page and "score_shift_psi" in page
