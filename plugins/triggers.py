"""Triggers: waits that run in Airflow's triggerer instead of holding a worker slot.

``RayJobTrigger`` follows a training job on a Ray cluster (``training_pod.runner: ray_job`` with
``training_pod.ray_job.deferrable``) until it ends: ``tasks.training.ray_job.poll`` (status, new log
lines into the task's log, a stop at the deadline), in a thread every ``poll_seconds`` because Ray's
``JobSubmissionClient`` is synchronous. The token is read from the triggerer's own environment
(``token_env``), never serialized. Ray is imported when the trigger runs, not when a DAG is parsed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from tasks.training import ray_job

ERROR = "ERROR"
"""The event's status when the Jobs API could not be asked (the job's own ends are Ray's)."""


class RayJobTrigger(BaseTrigger):
    """Polls a Ray job until it ends or its deadline passes (then stops it).

    :param job_id: the job's submission id.
    :param address: the cluster's dashboard, where its Jobs API answers.
    :param token_env: the triggerer's environment variable holding the cluster's token.
    :param deadline: when to stop a job still running (a ``time.time()``, fixed at submission, so a
        trigger re-created on another triggerer keeps it).
    :param poll_seconds: seconds between looks.

    Events: ``{"status": "SUCCEEDED" | "FAILED" | "STOPPED" | "TIMED_OUT", "job_id"}`` (read the
    rest with ``ray_job.outcome``), or ``{"status": "ERROR", "job_id", "message"}``.
    """

    def __init__(
        self, *, job_id: str, address: str, token_env: str | None, deadline: float, poll_seconds: float
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.address = address
        self.token_env = token_env
        self.deadline = float(deadline)
        self.poll_seconds = float(poll_seconds)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "address": self.address,
                "token_env": self.token_env,
                "deadline": self.deadline,
                "poll_seconds": self.poll_seconds,
            },
        )

    def _say(self, line: str) -> None:
        self.log.info("%s", line)

    def _client(self) -> Any:
        return ray_job.connect(self.address, self.token_env, os.environ)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        relay = ray_job.Relay(self._say)  # lines already seen repeat after a triggerer restart
        try:
            jobs = await asyncio.to_thread(self._client)
            while True:
                ended = await asyncio.to_thread(
                    ray_job.poll, jobs, self.job_id, deadline=self.deadline, relay=relay
                )
                if ended is not None:
                    break
                await asyncio.sleep(self.poll_seconds)
        except Exception as exc:  # noqa: BLE001 - the cluster not answering: the task fails and says why
            message = f"following Ray job {self.job_id} at {self.address} failed: {type(exc).__name__}: {exc}"
            yield TriggerEvent({"status": ERROR, "job_id": self.job_id, "message": message})
            return
        yield TriggerEvent({"status": ended, "job_id": self.job_id})

    async def on_kill(self) -> None:
        """The deferred task was marked failed, cleared or marked succeeded: stop its job (not on
        a triggerer restart; Airflow calls this for a person's action only)."""
        stopped = await asyncio.to_thread(lambda: self._client().stop_job(self.job_id))
        self.log.info("Ray job %s %s", self.job_id, "stopped" if stopped else "had already ended")
