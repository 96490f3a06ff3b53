"""The training operator's pod, rendered from the production profile: no cluster needed."""

from __future__ import annotations

import pytest

from config import read_config


@pytest.fixture
def production():
    return read_config(
        "production", {"POSTGRES_PASSWORD": "x", "MLFLOW_PUBLIC_URL": "https://mlflow.example"}
    )


def _pod(settings, **kwargs):
    from plugins.training import TrainingPodOperator

    op = TrainingPodOperator(
        task_id="train",
        settings=settings,
        training_set_uri="s3://airloop/training_sets/ts-abc.parquet",
        reason="drift",
        run_context='{"dag_id": "train"}',
        **kwargs,
    )
    return op, op.build_pod_request_obj(dry_run=True)


def test_pod_has_gpu_limit_tolerations_node_selector_image_and_env_from_config(production):
    op, pod = _pod(production)
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
    assert pod.metadata.namespace == "airloop"
    env = {e.name: e.value for e in container.env}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["AIRLOOP_PROFILE"] == "production"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert container.command == ["python"]
    assert container.args[:2] == ["-m", "tasks.training"]
    args = dict(zip(container.args[2::2], container.args[3::2], strict=True))
    assert args["--training-set-uri"] == "s3://airloop/training_sets/ts-abc.parquet"
    assert args["--reason"] == "drift"
    # the result comes back through the XCom sidecar, and the task waits in the triggerer
    assert [c.name for c in pod.spec.containers] == ["base", "airflow-xcom-sidecar"] and op.do_xcom_push
    assert op.deferrable is True
    assert pod.metadata.labels["app.kubernetes.io/component"] == "train"


def test_local_profile_asks_for_no_gpu_and_runs_in_process(settings):
    op, pod = _pod(settings)
    assert op.runner == "local"
    assert "nvidia.com/gpu" not in (pod.spec.containers[0].resources.limits or {})


def test_training_fields_are_templated_and_links_declared(production):
    from plugins.training import MLflowRunLink, ModelCardLink, TrainingPodOperator

    assert {"training_set_uri", "reason", "run_context"} <= set(TrainingPodOperator.template_fields)
    assert {type(link) for link in TrainingPodOperator.operator_extra_links} == {MLflowRunLink, ModelCardLink}
