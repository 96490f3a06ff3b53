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
  job to a Ray cluster through its Jobs API (``tasks.training.ray_job``), followed to its end in
  the task or, deferrable, in the triggerer (``plugins.triggers.RayJobTrigger``); the result is
  the JSON line the entrypoint prints last, read from the job's log.

All three read the result back as a ``tasks.training.result.TrainingResult`` (a task that returns
something else fails), return it as the task's XCom value, and link the task's page to the
MLflow run and the model card.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Collection, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowException

from config import PROJECT_ROOT
from plugins.links import XComLink
from plugins.training_pod import SHM, pod_command, pod_env, pod_settings, shared_memory
from plugins.triggers import ERROR, RayJobTrigger
from tasks.training import ray_job
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
    :param deferrable: submit, then wait in the triggerer (``RayJobTrigger``) instead of this
        worker slot; the result is read in ``execute_complete``, as the waiting task reads it.
        Default: ``training_pod.ray_job.deferrable``.
    """

    def __init__(self, *, settings: Settings, deferrable: bool | None = None, **kwargs: Any) -> None:
        super().__init__(settings=settings, **kwargs)
        cfg = settings.training_pod.ray_job
        self.deferrable = cfg.deferrable if deferrable is None else deferrable
        self.submission_id: str | None = None

    def execute(self, context: Context) -> Any:
        ti = context["ti"]
        run_id = f"{ti.dag_id}-{ti.run_id}-{ti.try_number}"
        if not self.deferrable:
            return self.finish(context, self.run_job(run_id))
        cfg = self.settings.training_pod.ray_job
        # Airflow's own timeout: a net under the trigger's deadline, should no triggerer run
        net = timedelta(seconds=cfg.timeout_seconds + max(5 * cfg.poll_seconds, 300))
        self.defer(trigger=self.submit_job(run_id), method_name="execute_complete", timeout=net)

    def run_job(self, run_id: str = "") -> Any:
        """The entrypoint as a Ray job of this run, followed here; its JSON result."""
        job = self._job(run_id)
        with _job_failed():
            return ray_job.run(self.settings, job, os.environ, say=self._say)

    def submit_job(self, run_id: str = "") -> RayJobTrigger:
        """The entrypoint submitted as a Ray job of this run; the trigger that follows it."""
        cfg = self.settings.training_pod.ray_job
        job = self._job(run_id)
        with _job_failed():
            ray_job.submit(self.settings, job, os.environ, say=self._say)
        assert cfg.address  # the config refuses runner ray_job without one
        return RayJobTrigger(
            job_id=job.submission_id, address=cfg.address, token_env=cfg.token_env,
            deadline=time.time() + cfg.timeout_seconds, poll_seconds=cfg.poll_seconds,
        )  # fmt: skip

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Back from the triggerer: the result of the ended job, read as ``run_job`` reads it."""
        return self.finish(context, self.job_result(event))

    def job_result(self, event: dict[str, Any]) -> Any:
        """The JSON result of the job a ``RayJobTrigger`` event reports ended."""
        self.submission_id = job_id = event["job_id"]
        if event["status"] == ERROR:
            raise AirflowException(event["message"])
        with _job_failed():
            jobs = ray_job.client(self.settings, os.environ)
            return ray_job.outcome(
                jobs, job_id, event["status"], self.settings.training_pod.ray_job.timeout_seconds
            )

    def _job(self, run_id: str) -> ray_job.Job:
        job = ray_job.job(self.settings, self.entrypoint_arguments(), os.environ, run_id=run_id)
        self.submission_id = job.submission_id
        return job

    def _say(self, line: str) -> None:
        self.log.info("%s", line)

    def on_kill(self) -> None:
        if self.submission_id:
            ray_job.stop(self.settings, self.submission_id, os.environ)


@contextlib.contextmanager
def _job_failed() -> Iterator[None]:
    """``ray_job.JobFailed`` as the task's failure, with its message (the end of the job's log)."""
    try:
        yield
    except ray_job.JobFailed as exc:
        raise AirflowException(str(exc)) from exc


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


TrainingOperator: TypeAlias = KubernetesTrainingOperator | LocalTrainingOperator | RayJobTrainingOperator


def training_operator(settings: Settings, **kwargs: Any) -> TrainingOperator:
    """The training operator for ``training_pod.runner``: a GPU pod (``torchrun`` too), a Ray job
    or a local process."""
    if settings.training_pod.runner in ("kubernetes", "torchrun"):
        return KubernetesTrainingOperator(settings=settings, **kwargs)
    if settings.training_pod.runner == "ray_job":
        return RayJobTrainingOperator(settings=settings, **kwargs)
    return LocalTrainingOperator(settings=settings, **kwargs)
