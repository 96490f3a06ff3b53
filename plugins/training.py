"""The training operator: ``python -m tasks.training`` in a GPU pod, or as a local process.

A ``KubernetesPodOperator`` whose pod (image, GPU requests and limits, node selector,
tolerations, resources, service account, namespace, env) comes from ``config/`` and which runs
deferrable in production. Its result (the JSON the entrypoint writes to ``/airflow/xcom/return.json``,
read back by the XCom sidecar) is the task's return value: the MLflow run id and the gate's
decision. In the local profile the same operator runs the same entrypoint with the same
arguments as a child process, so the DAG is the same graph in both profiles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import deque
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException

from plugins.links import XComLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from config import Settings

LINKS_XCOM_KEY = "training_links"
ENTRYPOINT = ["python", "-m", "tasks.training"]


class _TrainingLink(XComLink):
    source_key = LINKS_XCOM_KEY


class MLflowRunLink(_TrainingLink):
    """The training run in the MLflow UI: params, curves per round/epoch, the gate's checks."""

    name = "MLflow run"
    field = "run"


class ModelCardLink(_TrainingLink):
    """The model card (HTML with ROC/PR, calibration, importance and fairness plots)."""

    name = "Model card"
    field = "model_card"


def pod_settings(settings: Settings) -> dict[str, Any]:
    """KubernetesPodOperator arguments from the ``training_pod`` section of the config."""
    from kubernetes.client import models as k8s

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
    }


class TrainingPodOperator(KubernetesPodOperator):
    """Train, evaluate, gate and register candidates in one pod; returns the entrypoint's result.

    :param training_set_uri: the Parquet training set (templated), from the training-set task.
    :param reason: why this run trains (templated): ``scheduled``, ``drift``, ``manual``...
    :param run_context: JSON with the DAG id, run id and trigger details (templated), logged as
        lineage tags on the MLflow run and the registered version.
    """

    template_fields = (*KubernetesPodOperator.template_fields, "training_set_uri", "reason", "run_context")
    operator_extra_links = (MLflowRunLink(), ModelCardLink())
    ui_color = "#c7e9c0"

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
        env = {
            "AIRLOOP_PROFILE": settings.profile,
            "MLFLOW_TRACKING_URI": settings.mlflow.url,
            **settings.training_pod.env,
        }
        super().__init__(name="airloop-train", cmds=ENTRYPOINT[:1], env_vars=env, **options)
        self.settings = settings
        self.runner = settings.training_pod.runner
        self.training_set_uri = training_set_uri
        self.reason = reason
        self.run_context = run_context
        self.mlflow_ui = settings.mlflow.ui_url

    def _arguments(self) -> list[str]:
        return [
            *ENTRYPOINT[1:],
            "--training-set-uri",
            self.training_set_uri,
            "--reason",
            self.reason,
            "--run-context",
            self.run_context,
        ]

    def build_pod_request_obj(self, context: Context | None = None, **kwargs: Any) -> Any:
        self.arguments = self._arguments()
        return super().build_pod_request_obj(context, **kwargs)

    def execute(self, context: Context) -> Any:
        self.arguments = self._arguments()
        if self.runner == "local":
            result = self._run_locally()
        else:
            result = super().execute(context)
            if result is None:  # deferred: the result arrives in trigger_reentry
                return None
        return self._finish(context, result)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        result = super().trigger_reentry(context, event)
        return self._finish(context, result)

    def _finish(self, context: Context, result: dict[str, Any] | None) -> dict[str, Any]:
        if not result or "mlflow_run_id" not in result:
            raise AirflowException(f"the training entrypoint returned no result: {result!r}")
        # The entrypoint builds URLs on the tracking URI it used (cluster-internal in production);
        # the UI links use the address browsers reach.
        base = str(result.get("tracking_uri") or "").rstrip("/")

        def public(url: str | None) -> str:
            if url and base and url.startswith(base):
                return self.mlflow_ui + url[len(base) :]
            return url or ""

        links = {"run": public(result.get("run_url")), "model_card": public(result.get("model_card_url"))}
        context["ti"].xcom_push(key=LINKS_XCOM_KEY, value=links)
        return result

    def _run_locally(self) -> dict[str, Any]:
        """The pod's command as a child process: same entrypoint, arguments and env."""
        with tempfile.TemporaryDirectory(prefix="airloop-train-") as tmp:
            output = os.path.join(tmp, "return.json")
            command = [sys.executable, *self.arguments, "--output", output]
            env = {**os.environ, **{e.name: e.value for e in self.env_vars}}
            self.log.info("running the training entrypoint locally: %s", " ".join(command))
            tail: deque[str] = deque(maxlen=40)
            with subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
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
