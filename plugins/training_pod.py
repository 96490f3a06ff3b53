"""The training pod's spec from ``training_pod`` in config: the KubernetesPodOperator's arguments,
its command (the entrypoint, or it under ``torchrun``) and its environment, secrets by reference."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubernetes.client import models as k8s

from tasks.training import torchrun
from tasks.training.ray_job import ENTRYPOINT, entrypoint_env

if TYPE_CHECKING:
    from config import Settings

SHM = "dshm"
"""torchrun's pod: NCCL's ranks exchange through ``/dev/shm``, 64 MiB in a container by default."""


def pod_env(settings: Settings) -> list[k8s.V1EnvVar]:
    """The pod's environment: ``entrypoint_env`` as values, then ``training_pod.secret_env`` as
    references to Kubernetes Secrets (the kubelet reads them; Airflow never holds the values)."""
    env = [k8s.V1EnvVar(name=name, value=value) for name, value in entrypoint_env(settings).items()]
    for name, (secret, key) in settings.training_pod.secret_refs().items():
        ref = k8s.V1SecretKeySelector(name=secret, key=key)
        env.append(k8s.V1EnvVar(name=name, value_from=k8s.V1EnvVarSource(secret_key_ref=ref)))
    return env


def pod_command(settings: Settings) -> list[str]:
    """The container's command before the run's arguments: the entrypoint, or it under torchrun."""
    if settings.training_pod.runner == "torchrun":
        return torchrun.command(settings)
    return list(ENTRYPOINT)


def shared_memory(settings: Settings) -> dict[str, Any]:
    """torchrun's pod: a memory-backed ``/dev/shm`` (counted in the pod's memory limit)."""
    if settings.training_pod.runner != "torchrun":
        return {}
    volume = k8s.V1Volume(name=SHM, empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory"))
    return {"volumes": [volume], "volume_mounts": [k8s.V1VolumeMount(name=SHM, mount_path="/dev/shm")]}


def pod_settings(settings: Settings) -> dict[str, Any]:
    """KubernetesPodOperator arguments from the ``training_pod`` section of the config."""
    pod = settings.training_pod
    limits = dict(pod.limits)
    requests = dict(pod.requests)
    if pod.gpus:
        limits["nvidia.com/gpu"] = str(pod.gpus)
        requests["nvidia.com/gpu"] = str(pod.gpus)
    return {
        "image": pod.image,
        "namespace": pod.namespace,
        "service_account_name": pod.service_account,
        "priority_class_name": pod.priority_class,
        "node_selector": dict(pod.node_selector),
        "tolerations": [k8s.V1Toleration(**t) for t in pod.tolerations],
        "container_resources": k8s.V1ResourceRequirements(requests=requests, limits=limits),
        "labels": {"app.kubernetes.io/part-of": "airloop", "app.kubernetes.io/component": "train"},
        "deferrable": pod.deferrable,
        "in_cluster": pod.in_cluster,
        "kubernetes_conn_id": pod.kubernetes_conn_id,
        "startup_timeout_seconds": pod.startup_timeout_seconds,
        "on_finish_action": "delete_succeeded_pod",
        "get_logs": True,
        "do_xcom_push": True,
        **shared_memory(settings),
    }
