"""The training pod (``training_pod.runner``: ``kubernetes`` or ``torchrun``): its spec from
``training_pod`` in config (the KubernetesPodOperator's arguments, its command, the entrypoint or it
under ``torchrun``, and its environment, secrets by reference), the operator that runs it
(``KubernetesTrainingOperator``) and the pod as a ``PodTemplate``. The Kubernetes provider is
imported here only: ``plugins.training`` imports this module when the runner is a pod, so a local
task process never loads it (~80 MB)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

from plugins.training_result import POD_NAME, TRAINING_FIELDS, TrainingResultMixin
from tasks.training import torchrun
from tasks.training.ray_job import ENTRYPOINT, entrypoint_env

if TYPE_CHECKING:
    from airflow.sdk import Context

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


class KubernetesTrainingOperator(TrainingResultMixin, KubernetesPodOperator):
    """Train, evaluate, gate and register candidates in one GPU pod; returns the training result.
    With ``training_pod.runner: torchrun`` the pod runs the entrypoint under ``torchrun``, one
    rank per GPU, and rank 0 writes the result.

    :param settings: the configuration; the pod comes from its ``training_pod`` section.
    :param training_set_uri: the Parquet training set (templated), from the training-set task.
    :param reason: why this run trains (templated): ``scheduled``, ``drift``, ``manual``...
    :param run_context: JSON with the DAG id, run id and trigger details (templated), logged as
        lineage tags on the MLflow run and the registered version.
    """

    template_fields = (*KubernetesPodOperator.template_fields, *TRAINING_FIELDS)

    def __init__(
        self,
        *,
        settings: Settings,
        training_set_uri: str,
        reason: str = "scheduled",
        run_context: str = "{}",
        **kwargs: Any,
    ) -> None:
        options = {**pod_settings(settings), **kwargs}
        command = pod_command(settings)
        super().__init__(name=POD_NAME, cmds=command[:1], env_vars=pod_env(settings), **options)
        self.pod_command = command
        self.keep_training_fields(settings, training_set_uri, reason, run_context)

    def build_pod_request_obj(self, context: Context | None = None, **kwargs: Any) -> Any:
        self.arguments = [*self.pod_command[1:], *self.entrypoint_arguments()]
        return super().build_pod_request_obj(context, **kwargs)

    def execute(self, context: Context) -> Any:
        # deferrable: execute defers (raises) and the result arrives in trigger_reentry
        return self.finish(context, super().execute(context))

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        return self.finish(context, super().trigger_reentry(context, event))


TEMPLATE_SPEC_FIELDS = (
    "serviceAccountName",
    "priorityClassName",
    "nodeSelector",
    "tolerations",
    "restartPolicy",
)
TEMPLATE_CONTAINER_FIELDS = ("name", "image", "command", "env", "resources")


def pod_template(settings: Settings) -> dict[str, Any]:
    """The training pod as a Kubernetes ``PodTemplate`` (``deploy/kubernetes/base/
    training-pod-template.yaml``, written by ``python -m tools.training_pod_template``): the pod
    the operator renders from ``training_pod``, less what each run sets (the entrypoint's
    arguments, the run's labels, the XCom sidecar)."""
    from kubernetes.client import ApiClient  # noqa: PLC0415 - a tool's path, not the operator's

    op = KubernetesTrainingOperator(task_id="train", settings=settings, training_set_uri="")
    pod = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))
    spec = pod["spec"]
    base = next(c for c in spec["containers"] if c["name"] == "base")
    labels = {k: v for k, v in pod["metadata"]["labels"].items() if k.startswith("app.kubernetes.io/")}
    template_spec = {k: spec[k] for k in TEMPLATE_SPEC_FIELDS if k in spec}
    container = {k: base[k] for k in TEMPLATE_CONTAINER_FIELDS if k in base}
    if shared_memory(settings):  # the config's volumes, not the XCom sidecar's
        template_spec["volumes"] = [v for v in spec["volumes"] if v["name"] == SHM]
        container["volumeMounts"] = [m for m in base["volumeMounts"] if m["name"] == SHM]
    template_spec["containers"] = [container]
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": POD_NAME, "namespace": settings.training_pod.namespace, "labels": labels},
        "template": {"metadata": {"labels": dict(labels)}, "spec": template_spec},
    }
