"""The training pod under torchrun (``training_pod.runner: torchrun``), offline: rendered by the
train DAG's operator from the production config with four GPUs, it is the same pod as the
``kubernetes`` runner's (image, environment with secrets by reference, node pool, tolerations)
whose command is ``torchrun --standalone --nproc_per_node=4 -m tasks.training`` with the run's
arguments, requesting and limited to four GPUs, with a memory-backed ``/dev/shm`` for NCCL; the
whole Pod and its PodTemplate are valid against the Kubernetes API strictly. The config refuses
what cannot work: ranks that do not match the GPUs, no ranks at all, Ray Train inside each rank."""

from __future__ import annotations

import kubernetes_validate
import pytest
from pydantic import ValidationError

from config import read_config
from tests.kubernetes.test_manifests import KUBERNETES_VERSION
from tools.training_pod_template import airflow_env

URI = "s3://airloop/training_sets/ts-abc.parquet"
GPU = "nvidia.com/gpu"


def _settings(**env: str):
    return read_config("production", {**airflow_env(), **env})


def _pod(settings) -> dict:
    from kubernetes.client import ApiClient

    from plugins.training import training_operator
    from plugins.training_pod import KubernetesTrainingOperator

    op = training_operator(settings, task_id="train", training_set_uri=URI, reason="drift")
    assert type(op) is KubernetesTrainingOperator
    return ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))


def _base(pod: dict) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "base")


@pytest.fixture(scope="module")
def four_gpus() -> dict:
    return _pod(_settings(AIRLOOP__TRAINING_POD__RUNNER="torchrun", AIRLOOP__TRAINING_POD__GPUS="4"))


def test_the_pod_runs_the_entrypoint_under_torchrun_with_one_rank_per_gpu(four_gpus):
    container = _base(four_gpus)
    assert container["command"] == ["torchrun"]
    launcher, arguments = container["args"][:4], container["args"][4:]
    assert launcher == ["--standalone", "--nproc_per_node=4", "-m", "tasks.training"]
    assert dict(zip(arguments[::2], arguments[1::2], strict=True))["--training-set-uri"] == URI
    resources = container["resources"]
    assert resources["limits"][GPU] == resources["requests"][GPU] == "4"


def test_it_is_the_kubernetes_runners_pod_with_shared_memory_for_nccl(four_gpus):
    plain = _pod(_settings(AIRLOOP__TRAINING_POD__GPUS="4"))
    container, before = _base(four_gpus), _base(plain)
    assert before["command"] == ["python"] and before["args"][:2] == ["-m", "tasks.training"]
    assert container["env"] == before["env"]  # values and secretKeyRefs alike
    assert all("value" not in e for e in container["env"] if e["name"] == "MLFLOW_TRACKING_PASSWORD")
    assert container["image"] == before["image"] and container["resources"] == before["resources"]
    for key in ("nodeSelector", "tolerations", "serviceAccountName", "priorityClassName"):
        assert four_gpus["spec"][key] == plain["spec"][key], key
    [shm] = [v for v in four_gpus["spec"]["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"] == {"medium": "Memory"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert not [v for v in plain["spec"].get("volumes", []) if v["name"] == "dshm"]


def test_the_pod_and_its_template_are_valid_against_the_kubernetes_api_strictly(four_gpus):
    from plugins.training_pod import pod_template

    kubernetes_validate.validate(four_gpus, KUBERNETES_VERSION, strict=True)
    settings = _settings(AIRLOOP__TRAINING_POD__RUNNER="torchrun", AIRLOOP__TRAINING_POD__GPUS="4")
    template = pod_template(settings)
    kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
    [container] = template["template"]["spec"]["containers"]
    assert container["command"] == ["torchrun"] and container["volumeMounts"][0]["mountPath"] == "/dev/shm"
    assert [v["name"] for v in template["template"]["spec"]["volumes"]] == ["dshm"]
    broken = {**four_gpus, "spec": {**four_gpus["spec"], "volumes": [{"name": "dshm", "emptyDirr": {}}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_a_cpu_pod_sets_its_ranks_and_asks_for_no_gpu():
    settings = _settings(
        AIRLOOP__TRAINING_POD__RUNNER="torchrun",
        AIRLOOP__TRAINING_POD__GPUS="0",
        AIRLOOP__TRAINING_POD__TORCHRUN__NPROC_PER_NODE="2",
    )
    container = _base(_pod(settings))
    assert container["args"][:2] == ["--standalone", "--nproc_per_node=2"]
    assert GPU not in container["resources"]["limits"] and GPU not in container["resources"]["requests"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AIRLOOP__TRAINING_POD__TORCHRUN__NPROC_PER_NODE": "2"}, "one rank per GPU"),
        ({"AIRLOOP__TRAINING_POD__GPUS": "0"}, "set its gpus or torchrun.nproc_per_node"),
        ({"AIRLOOP__TRAIN__WORKERS": "2"}, "set train.workers to 1"),
    ],
)
def test_the_config_refuses_ranks_that_cannot_work(env, message):
    with pytest.raises(ValidationError, match=message):
        _settings(AIRLOOP__TRAINING_POD__RUNNER="torchrun", **env)


def test_defaults_are_unchanged():
    assert _settings().training_pod.runner == "kubernetes"
    assert read_config("local", {}).training_pod.runner == "local"
    assert _settings().training_pod.torchrun.nproc_per_node is None
