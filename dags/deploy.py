"""
### deploy: smoke → shadow → canary steps → promote, or automatic rollback

Runs when the train DAG registers a new version (the `models/fraud` asset), or by hand with
`{"version": "7"}`. Each step acts on the serving application (Ray Serve) through its control API
(on a Ray cluster, the application is put there through the Serve REST API with the cluster's
token) and is judged on its `/metrics`:

- `smoke`: the version is loaded into the challenger slot beside the champion (zero downtime; a
  model whose files do not hash to the SHA-256 recorded at registration is refused) and scores
  the newest curated transactions: every score a probability, every row answered;
- `shadow`: live requests are mirrored to the challenger, its answers logged, never returned;
- `canary_<n>`: n % of live traffic goes to the challenger, each step held for its window
  (`rollout.canary` in config);

Every traffic step is judged against the champion serving the same traffic in the same window:
error rate and model-call p99 relative to the champion's (a slack, and a one-sided Fisher test
where the sample allows), the service's p99 and error-rate SLOs (failed only when the challenger
is the cause), the challenger's mean score against the observed fraud rate, and its score
histogram against a champion known to be calibrated. Sample sizes are in the rollout record.
- `promote`: the champion slot takes the version and the MLflow `champion` alias moves to it.

A failed judgment rolls traffic back to the champion at once and tags the version
`rollout_status=rolled_back` with the reason; `rollback` (a teardown) repeats that if a step died without it.
The first model ever goes to 100 % straight after its smoke test. Every task links to the
rollout history page (steps on a timeline, judgments, earlier rollouts). The chain is
`tasks.rollout.plan.steps` (from `rollout:` in config); each step's operator is
`plugins.rollout.rollout_step`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import BaseOperator, Param, dag

from config import load_config
from plugins.assets import registered_model
from plugins.rollout import rollout_step
from tasks.rollout import plan

cfg = load_config()


@dag(
    schedule=[registered_model],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["airloop", "serving"],
    doc_md=__doc__,
    params={"version": Param(None, type=["string", "null"], description="version to roll out")},
    # A judged failure fails at once (no retry); a lost connection is retried.
    default_args={"owner": cfg.owner, "retries": 1, "retry_delay": timedelta(seconds=30)},
)
def deploy() -> None:
    made: dict[str, BaseOperator] = {}
    for spec in plan.steps(cfg):
        made[spec.task_id] = step = rollout_step(spec, settings=cfg)
        step.set_upstream([made[upstream] for upstream in spec.upstream])
        if spec.teardown_of:
            step.as_teardown(setups=made[spec.teardown_of])


deploy()
