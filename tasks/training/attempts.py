"""What an earlier attempt of the same DAG run left in MLflow, settled before registering.

A training task that loses MLflow mid-run fails (``tasks.training.cli`` says so) and Airflow
retries it. The attempt that failed may have got further than it could undo:
- a version created but not signed or aliased (registration deletes it on failure, but not while
  MLflow is down): nothing loads a version without an alias, and the retry deletes it;
- a version fully registered (aliased) before a later call failed: the retry registers nothing
  new and reports that version, so one DAG run registers exactly once;
- parent and candidate runs left ``RUNNING``: the retry marks them ``FAILED``.
Attempts are matched by the ``dag_id`` and ``dag_run_id`` lineage tags; runs started by hand
(``manual``) are never matched, so nothing of another run is touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.common import registry
from tasks.training.context import MANUAL
from tasks.training.registration import Registration

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from tasks.training.job import Job


def _matchable(job: Job) -> bool:
    ids = (job.context.dag_id, job.context.dag_run_id)
    return MANUAL not in ids and not any("'" in i or "\\" in i for i in ids)


def _versions_of_run(mc: MlflowClient, job: Job) -> list[ModelVersion]:
    name, ctx = job.settings.mlflow.registered_model, job.context
    query = (
        f"name='{name}' and tags.{registry.TAG_DAG_RUN_ID}='{ctx.dag_run_id}' "
        f"and tags.{registry.TAG_DAG_ID}='{ctx.dag_id}'"
    )
    found = mc.search_model_versions(filter_string=query)
    return [mc.get_model_version(name, str(v.version)) for v in found]


def _as_registration(version: ModelVersion) -> Registration:
    tags = version.tags or {}
    return Registration(
        name=version.name,
        version=str(version.version),
        aliases=list(version.aliases or []),
        model_uri=f"models:/{version.name}/{version.version}",
        logged_model_uri=str(version.source),
        model_sha256=tags.get(registry.TAG_MODEL_SHA256, ""),
        model_card_uri=tags.get(registry.TAG_MODEL_CARD, ""),
        run_id=str(version.run_id or tags.get(registry.TAG_RUN_ID, "")),
    )


RUNNING = "attributes.status = 'RUNNING'"


def _close_stale_runs(mc: MlflowClient, job: Job, experiment_id: str, current: str) -> None:
    """Earlier attempts' parent runs of this DAG run, and their candidates, left RUNNING."""
    query = f"tags.{registry.TAG_DAG_RUN_ID} = '{job.context.dag_run_id}' and {RUNNING}"
    for run in mc.search_runs([experiment_id], filter_string=query):
        if run.info.run_id == current or run.data.tags.get(registry.TAG_DAG_ID) != job.context.dag_id:
            continue
        children = f"tags.mlflow.parentRunId = '{run.info.run_id}' and {RUNNING}"
        for child in mc.search_runs([experiment_id], filter_string=children):
            mc.set_terminated(child.info.run_id, status="FAILED")
        mc.set_terminated(run.info.run_id, status="FAILED")
        job.say(f"earlier attempt's run {run.info.run_id} was left RUNNING: marked FAILED")


def settle(job: Job, mc: MlflowClient, experiment_id: str, current_run: str) -> Registration | None:
    """Clear what earlier attempts of this DAG run left half-done; the version one of them
    registered completely, if any (then nothing new is registered)."""
    if not _matchable(job):
        return None
    _close_stale_runs(mc, job, experiment_id, current_run)
    complete = None
    for version in _versions_of_run(mc, job):
        if version.aliases:
            complete = version
        elif not (version.tags or {}).get(registry.TAG_ROLLOUT_STATUS):
            job.say(f"version {version.version} of an earlier attempt was never aliased: deleting it")
            mc.delete_model_version(version.name, str(version.version))
    if complete is None:
        return None
    job.say(
        f"an earlier attempt of this DAG run registered version {complete.version}: not registering again"
    )
    return _as_registration(complete)
