"""The training operators: ``python -m tasks.training`` in a GPU pod, or as a local process.

``training_operator(settings, **kwargs)`` picks the class once, from ``training_pod.runner``:

- ``KubernetesTrainingOperator`` (``kubernetes``): a deferrable ``KubernetesPodOperator`` whose pod
  (image, GPU requests and limits, node selector, tolerations, resources, service account,
  namespace, env) comes from ``config/``; the entrypoint's JSON comes back through the XCom sidecar;
  ``torchrun``: the same pod running the entrypoint under ``torchrun --standalone`` with one rank
  per GPU (``tasks.training.torchrun``), and a memory-backed ``/dev/shm`` for NCCL;
- ``LocalTrainingOperator`` (``local``): the same entrypoint with the same arguments and env as a
  child process, so the DAG is the same graph in both profiles;
- ``RayJobTrainingOperator`` (``ray_job``): the same entrypoint, arguments and env submitted as a
  job to a Ray cluster through its Jobs API (``tasks.training.ray_job``), followed to its end;
  the result is the JSON line the entrypoint prints last, read from the job's log.

All three read the result back as a ``tasks.training.result.TrainingResult`` (a task that returns
something else fails), return it as the task's XCom value, and link the task's page to the
MLflow run and the model card.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, TypeAlias

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowException
from kubernetes.client import models as k8s

from config import PROJECT_ROOT
from plugins.links import XComLink
from tasks.training import ray_job, torchrun
from tasks.training.ray_job import ENTRYPOINT, entrypoint_env
from tasks.training.result import LINK_MODEL_CARD, LINK_RUN, TrainingResult

if TYPE_CHECKING:
    from airflow.sdk import Context

    from config import Settings

LINKS_XCOM_KEY = "training_links"
POD_NAME = "airloop-train"
TRAINING_FIELDS = ("training_set_uri", "reason", "run_context")
LOG_TAIL = 40
"""Lines of the entrypoint's output a failed local run quotes in its error."""
SHM = "dshm"
"""torchrun's pod: NCCL's ranks exchange through ``/dev/shm``, 64 MiB in a container by default."""


class _TrainingLink(XComLink):
    source_key = LINKS_XCOM_KEY


class MLflowRunLink(_TrainingLink):
    """The training run in the MLflow UI: params, curves per round/epoch, the gate's checks."""

    name = "MLflow run"
    field = LINK_RUN


class ModelCardLink(_TrainingLink):
    """The model card (HTML with ROC/PR, calibration, importance and fairness plots)."""

    name = "Model card"
    field = LINK_MODEL_CARD


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


def _shared_memory(settings: Settings) -> dict[str, Any]:
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
        **_shared_memory(settings),
    }


class TrainingResultMixin:
    """What the training operators share: the entrypoint's arguments, the typed result, the links."""

    operator_extra_links: Collection[BaseOperatorLink] = (MLflowRunLink(), ModelCardLink())
    ui_color = "#c7e9c0"

    training_set_uri: str
    reason: str
    run_context: str
    mlflow_ui: str

    def entrypoint_arguments(self) -> list[str]:
        """The entrypoint's arguments after ``-m tasks.training``, from the rendered fields."""
        return [
            "--training-set-uri",
            self.training_set_uri,
            "--reason",
            self.reason,
            "--run-context",
            self.run_context,
        ]

    def finish(self, context: Context, raw: Any) -> dict[str, Any]:
        """Check the entrypoint's JSON as a ``TrainingResult``, push the links, return it."""
        try:
            result = TrainingResult.from_dict(raw)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise AirflowException(
                f"the training entrypoint returned no result ({exc!r}): {raw!r:.2000}"
            ) from exc
        context["ti"].xcom_push(key=LINKS_XCOM_KEY, value=result.public_links(self.mlflow_ui))
        return result.as_dict()


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
        self.training_set_uri = training_set_uri
        self.reason = reason
        self.run_context = run_context
        self.mlflow_ui = settings.mlflow.ui_url

    def build_pod_request_obj(self, context: Context | None = None, **kwargs: Any) -> Any:
        self.arguments = [*self.pod_command[1:], *self.entrypoint_arguments()]
        return super().build_pod_request_obj(context, **kwargs)

    def execute(self, context: Context) -> Any:
        # deferrable: execute defers (raises) and the result arrives in trigger_reentry
        return self.finish(context, super().execute(context))

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        return self.finish(context, super().trigger_reentry(context, event))


class _OutsidePodTrainingOperator(TrainingResultMixin, BaseOperator):
    """The templated fields of a training run that does not go through a pod."""

    template_fields = TRAINING_FIELDS

    def __init__(
        self,
        *,
        settings: Settings,
        training_set_uri: str,
        reason: str = "scheduled",
        run_context: str = "{}",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.training_set_uri = training_set_uri
        self.reason = reason
        self.run_context = run_context
        self.mlflow_ui = settings.mlflow.ui_url
        self.settings = settings


class LocalTrainingOperator(_OutsidePodTrainingOperator):
    """Train, evaluate, gate and register candidates in a child process (the local profile):
    the pod's entrypoint, arguments and env; returns the training result.

    :param settings: the configuration; the env comes from its ``training_pod`` section.
    :param training_set_uri: the Parquet training set (templated), from the training-set task.
    :param reason: why this run trains (templated): ``scheduled``, ``drift``, ``manual``...
    :param run_context: JSON with the DAG id, run id and trigger details (templated), logged as
        lineage tags on the MLflow run and the registered version.
    """

    def __init__(self, *, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings=settings, **kwargs)
        self.child_env = entrypoint_env(settings)

    def command(self, output: str) -> list[str]:
        return [sys.executable, *ENTRYPOINT[1:], *self.entrypoint_arguments(), "--output", output]

    def execute(self, context: Context) -> Any:
        return self.finish(context, self.run_entrypoint())

    def run_entrypoint(self) -> Any:
        """The pod's command as a child process; its JSON result (``--output``)."""
        with tempfile.TemporaryDirectory(prefix="airloop-train-") as tmp:
            output = os.path.join(tmp, "return.json")
            command = self.command(output)
            self.log.info("running the training entrypoint locally: %s", " ".join(command))
            tail: deque[str] = deque(maxlen=LOG_TAIL)
            with subprocess.Popen(
                command,
                env={**os.environ, **self.child_env},
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    tail.append(line.rstrip())
                    self.log.info("%s", line.rstrip())
            if proc.returncode != 0:
                raise AirflowException(
                    f"python -m tasks.training exited with {proc.returncode}:\n" + "\n".join(tail)
                )
            with open(output) as handle:
                return json.load(handle)


class RayJobTrainingOperator(_OutsidePodTrainingOperator):
    """Train, evaluate, gate and register candidates as a job on a Ray cluster (Ray Jobs API):
    the pod's entrypoint, arguments and env, secrets from this worker's environment; follows the
    job's status and log until it ends or ``training_pod.ray_job.timeout_seconds`` pass, and
    returns the training result the job printed.

    :param settings: the configuration; the cluster comes from ``training_pod.ray_job``.
    :param training_set_uri: the Parquet training set (templated), from the training-set task; the
        cluster's nodes must reach it (``storage.data_uri`` on S3 in production).
    :param reason: why this run trains (templated): ``scheduled``, ``drift``, ``manual``...
    :param run_context: JSON with the DAG id, run id and trigger details (templated), logged as
        lineage tags on the MLflow run and the registered version.
    """

    def __init__(self, *, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings=settings, **kwargs)
        self.submission_id: str | None = None

    def execute(self, context: Context) -> Any:
        ti = context["ti"]
        return self.finish(context, self.run_job(f"{ti.dag_id}-{ti.run_id}-{ti.try_number}"))

    def run_job(self, run_id: str = "") -> Any:
        """The entrypoint as a Ray job of this run; its JSON result."""
        job = ray_job.job(self.settings, self.entrypoint_arguments(), os.environ, run_id=run_id)
        self.submission_id = job.submission_id
        try:
            return ray_job.run(self.settings, job, os.environ, say=self._say)
        except ray_job.JobFailed as exc:
            raise AirflowException(str(exc)) from exc

    def _say(self, line: str) -> None:
        self.log.info("%s", line)

    def on_kill(self) -> None:
        if self.submission_id:
            ray_job.stop(self.settings, self.submission_id, os.environ)


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
    if _shared_memory(settings):  # the config's volumes, not the XCom sidecar's
        template_spec["volumes"] = [v for v in spec["volumes"] if v["name"] == SHM]
        container["volumeMounts"] = [m for m in base["volumeMounts"] if m["name"] == SHM]
    template_spec["containers"] = [container]
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": POD_NAME, "namespace": settings.training_pod.namespace, "labels": labels},
        "template": {"metadata": {"labels": dict(labels)}, "spec": template_spec},
    }


TrainingOperator: TypeAlias = KubernetesTrainingOperator | LocalTrainingOperator | RayJobTrainingOperator


def training_operator(settings: Settings, **kwargs: Any) -> TrainingOperator:
    """The training operator for ``training_pod.runner``: a GPU pod (``torchrun`` too), a Ray job
    or a local process."""
    if settings.training_pod.runner in ("kubernetes", "torchrun"):
        return KubernetesTrainingOperator(settings=settings, **kwargs)
    if settings.training_pod.runner == "ray_job":
        return RayJobTrainingOperator(settings=settings, **kwargs)
    return LocalTrainingOperator(settings=settings, **kwargs)
