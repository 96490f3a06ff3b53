"""The training entrypoint as a Ray job (``training_pod.runner: ray_job``), through the Jobs API.

The job is the training pod's command (``python -m tasks.training`` and the run's arguments) with
the pod's environment (``entrypoint_env``) in its runtime env, plus:

- ``scale_env``: Ray Train's workers (``train.workers`` > 1) join the job's own cluster
  (``training_pod.ray.address: auto``) instead of a private Ray in the driver, as many and as
  large as the submitter's config says (the cluster's nodes read their own config otherwise);
- the values of ``training_pod.secret_env``'s names, read from the submitter's environment (the
  Airflow worker holds them, from the same Kubernetes Secrets); never from config, never logged.

``run`` submits it to ``training_pod.ray_job.address`` (with the cluster's token from the
environment variable ``token_env``, Ray's token authentication), relays each new log line, polls
the status until the job ends or ``timeout_seconds`` pass (then stops it), and returns the result
JSON the entrypoint prints as its last line of output (a remote job has no ``--output`` file the
submitter can read; Ray keeps the driver's log). A job that fails, is stopped, times out or
prints no result raises ``JobFailed`` with the end of its log.

The steps are separate so a deferrable task runs the same ones in two places: ``submit`` in the
worker, ``poll`` in the triggerer (``plugins.triggers.RayJobTrigger``, through ``connect`` with the
triggerer's own token), ``outcome`` in the worker again once the job has ended.
"""

from __future__ import annotations

import json
import re
import shlex
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.common.secrets import mlflow_credentials

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

    from config import Settings

ENTRYPOINT = ("python", "-m", "tasks.training")
"""The training pod's command; a Ray job runs it on the cluster's head."""
LOG_TAIL = 40
"""Lines of the job's log a failed job quotes."""
SUCCEEDED, TIMED_OUT = "SUCCEEDED", "TIMED_OUT"
"""How a job ended (``poll``): Ray's terminal statuses, and still running past its deadline."""

Say = Callable[[str], None]


class JobFailed(RuntimeError):
    """The job failed, was stopped, ran out of time or printed no result; the message ends with
    the last lines of its log."""


def entrypoint_env(settings: Settings) -> dict[str, str]:
    """The environment the entrypoint runs with, in a pod, as a child process or as a Ray job."""
    return {
        "AIRLOOP_PROFILE": settings.profile,
        "MLFLOW_TRACKING_URI": settings.mlflow.url,
        **settings.training_pod.env,
    }


def scale_env(settings: Settings) -> dict[str, str]:
    """What a Ray job adds to the pod's environment: Ray Train's workers join the job's cluster,
    ``train.workers`` of them with ``training_pod.ray.worker``'s resources (a KubeRay ``RayJob``'s
    runtime env is the same)."""
    worker = settings.training_pod.ray.worker.model_dump()
    return {
        "AIRLOOP__TRAINING_POD__RAY__ADDRESS": "auto",
        "AIRLOOP__TRAIN__WORKERS": str(settings.train.workers),
        "AIRLOOP__TRAINING_POD__RAY__WORKER": json.dumps(worker, sort_keys=True),
    }


def job_env(settings: Settings) -> dict[str, str]:
    """A Ray job's non-secret environment: the pod's, and Ray Train on the job's cluster."""
    return {**entrypoint_env(settings), **scale_env(settings)}


def secret_values(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """``training_pod.secret_env``'s variables with their values from ``environ``; a missing one
    fails before anything is submitted (the job would fail later, less clearly)."""
    names = list(settings.training_pod.secret_env)
    missing = [name for name in names if not environ.get(name)]
    if missing:
        raise JobFailed(
            f"the Ray job needs {', '.join(missing)} from this worker's environment "
            "(training_pod.secret_env; on Kubernetes Airflow's pods read them from their Secrets)"
        )
    return {name: environ[name] for name in names}


@dataclass(frozen=True)
class Job:
    """What is submitted: the command, its runtime env, the resources its driver reserves."""

    entrypoint: str
    env: dict[str, str] = field(repr=False)
    submission_id: str
    cpus: float = 0.0
    gpus: float = 0.0

    def submit(self, client: JobSubmissionClient) -> str:
        return client.submit_job(
            entrypoint=self.entrypoint,
            submission_id=self.submission_id,
            runtime_env={"env_vars": dict(self.env)},
            entrypoint_num_cpus=self.cpus,
            entrypoint_num_gpus=self.gpus,
            metadata={"app": "airloop", "component": "train"},
        )


def submission_id(*parts: str) -> str:
    """A job id naming the run (``airloop-train-<dag>-<run>-<try>-<random>``), in Ray's letters."""
    name = "-".join([*parts, uuid.uuid4().hex[:8]])
    clean = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")
    return f"airloop-train-{clean[-96:].lstrip('-')}"


def job(settings: Settings, arguments: list[str], environ: Mapping[str, str], run_id: str = "") -> Job:
    """The training entrypoint with ``arguments`` as a Ray job of this run."""
    cfg = settings.training_pod.ray_job
    return Job(
        entrypoint=shlex.join([*ENTRYPOINT, *arguments]),
        # the local stack's MLflow login too (production's comes in secret_env)
        env={**job_env(settings), **secret_values(settings, environ), **mlflow_credentials(settings)},
        submission_id=submission_id(run_id),
        cpus=cfg.entrypoint_cpus,
        gpus=cfg.entrypoint_gpus,
    )


def client(settings: Settings, environ: Mapping[str, str]) -> JobSubmissionClient:
    """The Jobs API of ``training_pod.ray_job.address``, with the token when ``environ`` has one."""
    cfg = settings.training_pod.ray_job
    return connect(cfg.address, cfg.token_env, environ)


def connect(address: str | None, token_env: str | None, environ: Mapping[str, str]) -> JobSubmissionClient:
    """The Jobs API at ``address``, with the token in ``environ[token_env]`` when there is one (the
    worker's and the triggerer's environment: the token itself is never passed around)."""
    from ray.exceptions import AuthenticationError  # noqa: PLC0415 - only this runner needs Ray
    from ray.job_submission import JobSubmissionClient  # noqa: PLC0415 - as above

    if not address:
        raise JobFailed("training_pod.ray_job.address is not set: no Ray cluster to submit to")
    token = environ.get(token_env) if token_env else None
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return JobSubmissionClient(address, headers=headers)
    except (AuthenticationError, RuntimeError, OSError) as exc:  # refused (401/403) or not reached
        held = f"with the token in {token_env}" if token else f"without a token ({token_env} is unset)"
        raise JobFailed(f"the Ray Jobs API at {address} refused or did not answer, {held}: {exc}") from exc


def tail(logs: str, lines: int = LOG_TAIL) -> str:
    return "\n".join(logs.rstrip().splitlines()[-lines:])


def result_from_logs(logs: str) -> dict[str, Any]:
    """The entrypoint's result: the last line of its output that is a JSON object with a
    ``status`` (anything Ray or the interpreter prints after it is skipped)."""
    for line in reversed(logs.splitlines()):
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict) and "status" in value:
            return value
    raise JobFailed(f"the training job ended without printing its result:\n{tail(logs)}")


class Relay:
    """Says each complete new line of a growing log once."""

    def __init__(self, say: Say) -> None:
        self.say, self.shown = say, 0

    def __call__(self, logs: str, *, final: bool = False) -> None:
        end = len(logs) if final else logs.rfind("\n") + 1
        for line in logs[self.shown : end].splitlines():
            self.say(line)
        self.shown = max(self.shown, end)


def poll(client: JobSubmissionClient, job_id: str, *, deadline: float, relay: Relay) -> str | None:
    """One look at the job, relaying its new log lines: its terminal status (``SUCCEEDED``,
    ``FAILED``, ``STOPPED``), ``TIMED_OUT`` when it is still running after ``deadline`` (a
    ``time.time()``; it is then stopped), or None while it runs. The same step whether the task
    waits (``wait``) or the triggerer does (``plugins.triggers.RayJobTrigger``)."""
    status = client.get_job_status(job_id)
    relay(client.get_job_logs(job_id), final=status.is_terminal())
    if status.is_terminal():
        return str(status.value)
    if time.time() > deadline:
        client.stop_job(job_id)
        return TIMED_OUT
    return None


def wait(client: JobSubmissionClient, job_id: str, *, timeout: float, every: float, say: Say) -> str:
    """Poll the job until it ends or ``timeout`` seconds pass, relaying its log; how it ended."""
    deadline, relay = time.time() + timeout, Relay(say)
    while (ended := poll(client, job_id, deadline=deadline, relay=relay)) is None:
        time.sleep(every)
    return ended


def outcome(client: JobSubmissionClient, job_id: str, ended: str, timeout: float) -> dict[str, Any]:
    """The result JSON of a job that ended ``ended`` (``poll``'s answer); ``JobFailed`` with the
    end of its log when it did not succeed (``timeout``: the seconds it was given)."""
    logs = client.get_job_logs(job_id)
    if ended == SUCCEEDED:
        return result_from_logs(logs)
    if ended == TIMED_OUT:
        raise JobFailed(f"Ray job {job_id} still running after {timeout:.0f} s: stopped\n{tail(logs)}")
    message = client.get_job_info(job_id).message or ""
    raise JobFailed(f"Ray job {job_id} {ended}: {message}\n{tail(logs)}")


def submit(
    settings: Settings, spec: Job, environ: Mapping[str, str], say: Say = print
) -> JobSubmissionClient:
    """Submit ``spec`` to the configured cluster; the client that submitted it."""
    address = settings.training_pod.ray_job.address
    jobs = client(settings, environ)
    say(f"submitting {spec.entrypoint!r} to the Ray cluster at {address} as {spec.submission_id}")
    spec.submit(jobs)
    return jobs


def run(settings: Settings, spec: Job, environ: Mapping[str, str], say: Say = print) -> dict[str, Any]:
    """Submit ``spec`` to the configured cluster, follow it to its end, return its result JSON."""
    cfg = settings.training_pod.ray_job
    jobs = submit(settings, spec, environ, say)
    ended = wait(jobs, spec.submission_id, timeout=cfg.timeout_seconds, every=cfg.poll_seconds, say=say)
    return outcome(jobs, spec.submission_id, ended, cfg.timeout_seconds)


def stop(settings: Settings, job_id: str, environ: Mapping[str, str]) -> bool:
    """Stop a submitted job (the task was killed); whether it was still running."""
    return bool(client(settings, environ).stop_job(job_id))
