"""The training operators: the pod rendered from the production profile (no cluster needed), and
the local profile's child process running the same entrypoint with the same arguments and env."""

from __future__ import annotations

import sys

import pytest

from config import read_config

URI = "s3://airloop/training_sets/ts-abc.parquet"


@pytest.fixture
def production():
    return read_config(
        "production", {"POSTGRES_PASSWORD": "x", "MLFLOW_PUBLIC_URL": "https://mlflow.example"}
    )


def _operator(settings, **over):
    from plugins.training import training_operator

    fields = {"training_set_uri": URI, "reason": "drift", "run_context": '{"dag_id": "train"}'}
    return training_operator(settings, task_id="train", **(fields | over))


def _pod(settings):
    from plugins.training_pod import KubernetesTrainingOperator

    op = KubernetesTrainingOperator(
        task_id="train",
        settings=settings,
        training_set_uri=URI,
        reason="drift",
        run_context='{"dag_id": "train"}',
    )
    return next(c for c in op.build_pod_request_obj(dry_run=True).spec.containers if c.name == "base")


def test_pod_has_gpu_limit_tolerations_node_selector_image_and_env_from_config(production):
    from plugins.training_pod import KubernetesTrainingOperator

    op = _operator(production)
    assert type(op) is KubernetesTrainingOperator and op.task_id == "train"
    pod = op.build_pod_request_obj(dry_run=True)
    cfg = production.training_pod
    container = next(c for c in pod.spec.containers if c.name == "base")
    assert container.image == cfg.image == "airloop/train:0.1.0"
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.resources.requests["nvidia.com/gpu"] == "1"
    assert container.resources.limits["memory"] == cfg.limits["memory"]
    assert container.resources.requests["cpu"] == cfg.requests["cpu"]
    assert pod.spec.node_selector == cfg.node_selector
    [toleration] = pod.spec.tolerations
    assert (toleration.key, toleration.operator, toleration.effect) == (
        "nvidia.com/gpu",
        "Exists",
        "NoSchedule",
    )
    assert pod.spec.service_account_name == "airloop-train"
    assert pod.spec.priority_class_name == cfg.priority_class == "airloop-training"
    assert pod.metadata.namespace == "airloop"
    env = {e.name: e.value for e in container.env}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["AIRLOOP_PROFILE"] == "production"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert container.command == ["python"]
    assert container.args[:2] == ["-m", "tasks.training"]
    args = dict(zip(container.args[2::2], container.args[3::2], strict=True))
    assert args["--training-set-uri"] == URI
    assert args["--reason"] == "drift"
    # the result comes back through the XCom sidecar, and the task waits in the triggerer
    assert [c.name for c in pod.spec.containers] == ["base", "airflow-xcom-sidecar"] and op.do_xcom_push
    assert op.deferrable is True
    assert pod.metadata.labels["app.kubernetes.io/component"] == "train"


def test_pod_reads_secrets_by_reference_and_holds_no_serving_secret(production):
    container = _pod(production)
    refs = {
        e.name: (e.value_from.secret_key_ref.name, e.value_from.secret_key_ref.key)
        for e in container.env
        if e.value_from is not None
    }
    assert refs == {
        "AWS_SECRET_ACCESS_KEY": ("airloop-train", "S3_SECRET_KEY"),
        "MLFLOW_TRACKING_PASSWORD": ("airloop-train", "MLFLOW_TRAINING_PASSWORD"),
        "MODEL_SIGNING_KEY": ("airloop-train", "MODEL_SIGNING_KEY"),
    }
    values = {e.name: e.value for e in container.env if e.value_from is None}
    assert values["AIRLOOP__SERVING__ADMIN_TOKEN"] == values["AIRLOOP__SERVING__RAY_AUTH_TOKEN"] == ""
    assert not refs.keys() & values.keys()


def test_secret_env_must_name_a_secret_and_a_key():
    from pydantic import ValidationError

    from config.training import TrainingPod

    with pytest.raises(ValidationError, match="is not <secret>/<key>"):
        TrainingPod(secret_env={"TOKEN": "just-a-secret"})


def test_local_profile_runs_the_pods_command_with_the_same_arguments_and_env(settings):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from plugins.training import LocalTrainingOperator

    op = _operator(settings)
    assert type(op) is LocalTrainingOperator and not isinstance(op, KubernetesPodOperator)
    container = _pod(settings)
    command = op.command("/tmp/out.json")
    assert command[0] == sys.executable and command[-2:] == ["--output", "/tmp/out.json"]
    assert command[1:-2] == container.args
    assert op.child_env == {e.name: e.value for e in container.env}
    assert "nvidia.com/gpu" not in (container.resources.limits or {})


def test_ray_job_runner_submits_the_pods_command_arguments_and_env(production):
    """``training_pod.runner: ray_job``: the pod's command and arguments as the job's entrypoint,
    its env values plus Ray Train on the job's cluster, and its secret references resolved from
    the worker's own environment under the same names (never from config)."""
    import shlex

    from plugins.training import RayJobTrainingOperator
    from tasks.training import ray_job

    container = _pod(production)
    on_ray = production.model_copy(
        update={"training_pod": production.training_pod.model_copy(update={"runner": "ray_job"})}
    )
    op = _operator(on_ray)
    assert type(op) is RayJobTrainingOperator
    assert op.deferrable  # production waits for the job in the triggerer (training_pod.ray_job)
    secrets = {name: f"value-of-{name}" for name in production.training_pod.secret_env}
    job = ray_job.job(on_ray, op.entrypoint_arguments(), secrets, run_id="train-manual-1")
    assert shlex.split(job.entrypoint) == [*container.command, *container.args]
    values = {e.name: e.value for e in container.env if e.value_from is None}
    assert job.env == {**values, **ray_job.scale_env(production), **secrets}
    assert job.env["AIRLOOP__TRAINING_POD__RAY__ADDRESS"] == "auto"


def test_ray_job_runner_needs_a_cluster_address():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"set training_pod\.ray_job\.address"):
        read_config("local", {"AIRLOOP__TRAINING_POD__RUNNER": "ray_job"})


def test_a_failed_local_run_fails_the_task_with_the_entrypoints_error(settings, tmp_path):
    from airflow.sdk.exceptions import AirflowException

    missing = (tmp_path / "nowhere.parquet").as_uri()
    op = _operator(settings, training_set_uri=missing)
    with pytest.raises(AirflowException, match=r"exited with 1:(.|\n)*error: no training set at"):
        op.execute({})


def test_something_that_is_not_a_training_result_fails_the_task(settings):
    from airflow.sdk.exceptions import AirflowException

    op = _operator(settings)
    with pytest.raises(AirflowException, match="returned no result"):
        op.finish({}, {"status": "maybe"})
    with pytest.raises(AirflowException, match="returned no result"):
        op.finish({}, None)


@pytest.mark.parametrize(
    "name", ["KubernetesTrainingOperator", "LocalTrainingOperator", "RayJobTrainingOperator"]
)
def test_training_fields_are_templated_documented_and_links_declared(name):
    from plugins import training, training_pod, training_result

    cls = getattr(training_pod if name.startswith("Kubernetes") else training, name)
    shared = training_result
    assert {"training_set_uri", "reason", "run_context"} <= set(cls.template_fields)
    for field in shared.TRAINING_FIELDS:
        assert f":param {field}:" in cls.__doc__
        assert "(templated)" in cls.__doc__.split(f":param {field}:")[1].split(":param")[0]
    links = {type(link) for link in cls.operator_extra_links}
    assert links == {shared.MLflowRunLink, shared.ModelCardLink}
    assert {link.source_key for link in cls.operator_extra_links} == {shared.LINKS_XCOM_KEY}
