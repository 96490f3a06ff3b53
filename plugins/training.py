"""The training operators: ``python -m tasks.training`` in a GPU pod, or as a local process.

``training_operator(settings, **kwargs)`` picks the class once, from ``training_pod.runner``:

- ``KubernetesTrainingOperator`` (``kubernetes``, in ``plugins.training_pod``: the Kubernetes
  provider is imported only where a pod runs it): a deferrable ``KubernetesPodOperator`` whose pod
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
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from config import PROJECT_ROOT
from plugins.training_result import TRAINING_FIELDS, TrainingResultMixin
from plugins.triggers import ERROR, RayJobTrigger
from tasks.training import ray_job
from tasks.training.ray_job import ENTRYPOINT, entrypoint_env

if TYPE_CHECKING:
    from airflow.sdk import Context

    from config import Settings
    from plugins.training_pod import KubernetesTrainingOperator

LOG_TAIL = 40
"""Lines of the entrypoint's output a failed local run quotes in its error."""


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
        self.keep_training_fields(settings, training_set_uri, reason, run_context)
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


TrainingOperator: TypeAlias = "KubernetesTrainingOperator | LocalTrainingOperator | RayJobTrainingOperator"


def training_operator(settings: Settings, **kwargs: Any) -> TrainingOperator:
    """The training operator for ``training_pod.runner``: a GPU pod (``torchrun`` too), a Ray job
    or a local process."""
    if settings.training_pod.runner in ("kubernetes", "torchrun"):
        # the Kubernetes provider (~80 MB) only where the pod runs it: not in a local task process
        from plugins.training_pod import KubernetesTrainingOperator  # noqa: PLC0415

        return KubernetesTrainingOperator(settings=settings, **kwargs)
    if settings.training_pod.runner == "ray_job":
        return RayJobTrainingOperator(settings=settings, **kwargs)
    return LocalTrainingOperator(settings=settings, **kwargs)
