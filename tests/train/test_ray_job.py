"""Training as a Ray job (``training_pod.runner: ray_job``): the train DAG's operator submits the
training pod's entrypoint through the Ray Jobs API of a real two-node Ray cluster on this machine
(token authentication, one CPU per node), and the job trains on two Ray Train workers spread
over the cluster, registers its model in the session's MLflow, and hands its result back through
its log. A job that fails, or outlives its timeout, fails the task with the end of its log. The
deferrable mode runs the same: the train DAG under dag.test() with the trigger in line, and the
trigger's run() on its own (a failed job, a deadline, a kill).

The cluster's nodes stand in for nodes running the train image: the repository on their path.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from config import read_config
from tasks.training import ray_job
from tasks.training.result import TrainingResult
from tests.services import wait_until
from tests.train import ray_cluster

URI = "file:///data/training_sets/abc.parquet"
TOKEN_ENV = "AIRLOOP_TEST_RAY_JOB_TOKEN"
SIGNING_KEY = "AIRLOOP__MLFLOW__SIGNING_KEY"
"""A secret the job gets from the submitter's environment (``training_pod.secret_env``)."""


@pytest.fixture(scope="module")
def cluster():
    started = time.monotonic()
    with ray_cluster.two_nodes() as running:
        print(f"two-node Ray cluster up in {time.monotonic() - started:.0f} s")
        yield running


def _job_settings(world, cluster, **overrides: str):
    """The world's settings with training as a Ray job on ``cluster``: two workers, XGBoost only
    (the scale-out test covers the MLP on Ray Train), the job's env carrying the world's config."""
    name = f"fraud-rayjob-{time.monotonic_ns() % 10**8}"
    scale = {"AIRLOOP__TRAIN__WORKERS": "2", "AIRLOOP__TRAIN__FAMILIES": '["xgboost"]'}
    env = {**world.env, "AIRLOOP__MLFLOW__REGISTERED_MODEL": name, **scale}
    return world.settings(
        name,
        train__workers="2",
        train__families='["xgboost"]',
        training_pod__runner="ray_job",
        training_pod__env=json.dumps(env),
        training_pod__secret_env=json.dumps({SIGNING_KEY: "airloop-train/MODEL_SIGNING_KEY"}),
        training_pod__ray_job__address=cluster.dashboard_url,
        training_pod__ray_job__token_env=TOKEN_ENV,
        training_pod__ray_job__poll_seconds="1",
        **overrides,
    )


@pytest.fixture
def job_env(cluster, monkeypatch) -> None:
    """The Airflow worker's environment: the cluster's token and a model-signing key."""
    monkeypatch.setenv(TOKEN_ENV, cluster.token)
    monkeypatch.setenv(SIGNING_KEY, "k")


def _operator(settings, training_set_uri: str, **kwargs):
    from plugins.training import RayJobTrainingOperator, training_operator

    op = training_operator(
        settings, task_id="train", training_set_uri=training_set_uri, reason="ray-job", **kwargs
    )
    assert type(op) is RayJobTrainingOperator
    return op


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_train_task_submits_the_entrypoint_as_a_ray_job_that_trains_on_two_nodes(
    world, cluster, mlflow_client, monkeypatch
) -> None:
    from tasks.common.registry import check_signature

    monkeypatch.setenv(TOKEN_ENV, cluster.token)
    monkeypatch.setenv(SIGNING_KEY, "signing-key-from-the-workers-environment")
    settings = _job_settings(world, cluster, training_pod__ray_job__timeout_seconds="200")
    started = time.monotonic()
    raw = _operator(settings, world.training_set_uri).run_job("train-test")
    print(f"Ray job trained and registered in {time.monotonic() - started:.0f} s")

    result = TrainingResult.from_dict(raw)
    assert result.status == "registered", result.reasons
    assert result.data_sha256 == world.data_sha256
    assert result.context.reason == "ray-job"
    [candidate] = result.candidates
    assert candidate.family == "xgboost" and candidate.device == "cpu x2"
    version = mlflow_client.get_model_version(settings.mlflow.registered_model, result.version)
    assert version.tags["train_workers"] == "2"
    assert version.tags["train_worker_resources"] == "cpus=1,gpus=0"
    # the job signed the model with the key it got from this process's environment
    check_signature(b"signing-key-from-the-workers-environment", version, version.tags["model_sha256"])


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("job_env")
def test_a_failed_job_fails_the_task_with_the_end_of_its_log(world, cluster, tmp_path) -> None:
    from airflow.sdk.exceptions import AirflowException

    op = _operator(_job_settings(world, cluster), (tmp_path / "nowhere.parquet").as_uri())
    with pytest.raises(AirflowException, match=r"FAILED(.|\n)*error: no training set at"):
        op.run_job()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("job_env")
def test_a_job_past_its_timeout_is_stopped_and_fails_the_task(world, cluster) -> None:
    from airflow.sdk.exceptions import AirflowException
    from ray.job_submission import JobStatus

    settings = _job_settings(world, cluster, training_pod__ray_job__timeout_seconds="2")
    op = _operator(settings, world.training_set_uri)
    with pytest.raises(AirflowException, match=r"after 2 s: stopped"):
        op.run_job()
    jobs = ray_job.client(settings, {TOKEN_ENV: cluster.token})
    wait_until(lambda: jobs.get_job_status(op.submission_id) == JobStatus.STOPPED, 60, "the job to stop")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_without_the_clusters_token_nothing_is_submitted(world, cluster) -> None:
    settings = _job_settings(world, cluster)
    with pytest.raises(ray_job.JobFailed, match=f"without a token \\({TOKEN_ENV} is unset\\)"):
        ray_job.client(settings, {})
    with pytest.raises(ray_job.JobFailed, match=f"with the token in {TOKEN_ENV}"):
        ray_job.client(settings, {TOKEN_ENV: "not-the-token"})
    assert isinstance(ray_job.client(settings, {TOKEN_ENV: cluster.token}).list_jobs(), list)


# --- deferrable: the job followed by RayJobTrigger in the triggerer --------------------------------


def _rebuilt(trigger):
    """The trigger as the triggerer re-creates it: serde-encoded kwargs, the class from its path."""
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk.serde import deserialize, serialize

    classpath, kwargs = trigger.serialize()
    assert classpath == "plugins.triggers.RayJobTrigger"
    rebuilt = import_string(classpath)(**deserialize(serialize(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)
    return rebuilt


def _event(trigger, timeout: float = 100) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(asyncio.wait_for(first(), timeout))


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("airflow_db", "job_env")
def test_deferred_the_train_dag_waits_in_the_triggerer_and_registers_the_version(
    world, cluster, mlflow_client, monkeypatch, capfd
) -> None:
    """The train DAG under dag.test(), which runs the trigger in line after the task defers
    (rebuilt from its serialized kwargs, as a triggerer does); ``train``'s XCom is what the
    waiting task returns, and ``publish`` reads it."""
    from config import load_config
    from tests.dag_runs import load_dag, xcom

    scale = {"AIRLOOP__TRAIN__WORKERS": "2", "AIRLOOP__TRAIN__FAMILIES": '["xgboost"]'}
    ray = {"RUNNER": "ray_job", "RAY_JOB__ADDRESS": cluster.dashboard_url, "RAY_JOB__TOKEN_ENV": TOKEN_ENV}
    ray |= {"RAY_JOB__POLL_SECONDS": "1", "RAY_JOB__TIMEOUT_SECONDS": "400", "RAY_JOB__DEFERRABLE": "true"}
    ray |= {"ENV": json.dumps({**world.env, **scale}), "SECRET_ENV": json.dumps({SIGNING_KEY: "s/k"})}
    env = {**world.env, **scale, **{f"AIRLOOP__TRAINING_POD__{k}": v for k, v in ray.items()}}
    for name, value in {**env, TOKEN_ENV: cluster.token, SIGNING_KEY: "k"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AIRLOOP__MLFLOW__REGISTERED_MODEL", raising=False)  # see test_train_dag
    dag = load_dag("train.py", "train")
    assert dag.get_task("train").deferrable  # from training_pod.ray_job.deferrable
    started = time.monotonic()
    run = dag.test(run_conf={"reason": "ray-job"})
    print(f"train DAG with a deferred Ray job in {time.monotonic() - started:.0f} s")

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    # the trigger, not the task, followed the job to its end: it relayed the result line
    relayed = [
        line for line in capfd.readouterr().out.splitlines() if "plugins.triggers.RayJobTrigger" in line
    ]
    assert any('"status": "registered"' in line for line in relayed), relayed[-5:]
    result = TrainingResult.from_dict(xcom(run, "train", "return_value"))
    assert result.status == "registered", result.reasons
    assert result.context.reason == "ray-job" and result.candidates[0].device == "cpu x2"
    model = load_config().mlflow.registered_model
    version = mlflow_client.get_model_version(model, result.version)
    assert version.tags["train_workers"] == "2"
    assert xcom(run, "publish", "return_value")["version"] == result.version
    assert xcom(run, "train", "training_links")["run"].startswith(world.tracking_uri)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("job_env")
def test_deferred_a_failed_job_fails_the_task_with_the_end_of_its_log(world, cluster, tmp_path) -> None:
    from airflow.sdk.exceptions import AirflowException

    op = _operator(_job_settings(world, cluster), (tmp_path / "nowhere.parquet").as_uri(), deferrable=True)
    trigger = op.submit_job("failed")
    assert trigger.job_id == op.submission_id and cluster.token not in repr(trigger.serialize())
    event = _event(_rebuilt(trigger))  # the rebuilt trigger follows the same job
    assert event == {"status": "FAILED", "job_id": op.submission_id}
    with pytest.raises(AirflowException, match=r"FAILED(.|\n)*error: no training set at"):
        op.execute_complete({}, event)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("job_env")
def test_deferred_a_job_past_its_deadline_is_stopped_by_the_trigger(world, cluster) -> None:
    from airflow.sdk.exceptions import AirflowException
    from ray.job_submission import JobStatus

    settings = _job_settings(world, cluster, training_pod__ray_job__timeout_seconds="2")
    op = _operator(settings, world.training_set_uri, deferrable=True)
    event = _event(op.submit_job("deadline"))
    assert event == {"status": "TIMED_OUT", "job_id": op.submission_id}
    jobs = ray_job.client(settings, {TOKEN_ENV: cluster.token})
    wait_until(lambda: jobs.get_job_status(op.submission_id) == JobStatus.STOPPED, 60, "the job to stop")
    with pytest.raises(AirflowException, match=r"after 2 s: stopped"):
        op.execute_complete({}, event)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("job_env")
def test_deferred_killing_the_task_stops_its_job(world, cluster) -> None:
    """A person marks the deferred task failed: Airflow calls the trigger's on_kill."""
    from ray.job_submission import JobStatus

    op = _operator(_job_settings(world, cluster), world.training_set_uri, deferrable=True)
    trigger = _rebuilt(op.submit_job("killed"))
    asyncio.run(trigger.on_kill())
    jobs = ray_job.client(op.settings, {TOKEN_ENV: cluster.token})
    wait_until(lambda: jobs.get_job_status(op.submission_id) == JobStatus.STOPPED, 60, "the job to stop")
    assert _event(trigger) == {"status": "STOPPED", "job_id": op.submission_id}


def test_the_result_is_the_last_json_line_of_the_log() -> None:
    result = {"status": "registered", "version": "3"}
    logs = "\n".join(["training...", json.dumps({"not": "it"}), json.dumps(result), "(raylet) bye", ""])
    assert ray_job.result_from_logs(logs) == result
    with pytest.raises(ray_job.JobFailed, match=r"without printing its result:\nline 1\nline 2"):
        ray_job.result_from_logs("line 1\nline 2\n{broken")


def test_the_log_is_relayed_line_by_line_once() -> None:
    lines: list[str] = []
    relay = ray_job.Relay(lines.append)
    relay("a\nb")
    relay("a\nb\nc\n")
    relay("a\nb\nc\nd", final=True)
    assert lines == ["a", "b", "c", "d"]


def test_secrets_come_from_the_environment_and_a_missing_one_fails_before_submitting() -> None:
    secret_env = '{"MODEL_SIGNING_KEY": "airloop-train/MODEL_SIGNING_KEY"}'
    settings = read_config("local", {"AIRLOOP__TRAINING_POD__SECRET_ENV": secret_env})
    spec = ray_job.job(settings, ["--reason", "x y"], {"MODEL_SIGNING_KEY": "s3cret"}, run_id="train/run:1")
    assert spec.env["MODEL_SIGNING_KEY"] == "s3cret"
    assert spec.env["AIRLOOP__TRAINING_POD__RAY__ADDRESS"] == "auto"
    assert spec.entrypoint == "python -m tasks.training --reason 'x y'"
    assert spec.submission_id.startswith("airloop-train-train-run-1-")
    assert "s3cret" not in repr(spec)
    with pytest.raises(ray_job.JobFailed, match="needs MODEL_SIGNING_KEY from this worker's environment"):
        ray_job.job(settings, [], {})
