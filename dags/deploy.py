"""
### deploy: smoke → shadow → canary steps → promote, or automatic rollback

Runs when the train DAG registers a new version (the `models/fraud` asset), or by hand with
`{"version": "7"}`. Each step acts on the serving application (Ray Serve) through its control API
and is judged on its `/metrics` against the champion serving the same traffic:

- `smoke`: the version is loaded into the challenger slot beside the champion (zero downtime; a
  model whose files do not hash to the SHA-256 recorded at registration is refused) and scores
  the newest curated transactions: every score a probability, every row answered;
- `shadow`: live requests are mirrored to the challenger, its answers logged, never returned;
- `canary_<n>`: n % of live traffic goes to the challenger, each step held for its window
  (`rollout.canary` in config) and judged on error rate, p99 latency and score shift (PSI);
- `promote`: the champion slot takes the version and the MLflow `champion` alias moves to it.

A failed judgment rolls traffic back to the champion at once and tags the version
`rollout_status=rolled_back` with the reason; `rollback` (a teardown) repeats that if a step died without it.
The first model ever goes to 100 % straight after its smoke test. Every task links to the
rollout history page (steps on a timeline, judgments, earlier rollouts).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag

from config import load_config
from plugins.rollout import RolloutStepOperator

cfg = load_config()
registered_model = Asset(
    name=cfg.assets.registered_model, uri=f"mlflow-model://{cfg.mlflow.registered_model}"
)
ROLLOUT_ID = "{{ ti.xcom_pull(task_ids='begin') }}"


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
def deploy():
    def step(task_id: str, name: str, **kwargs) -> RolloutStepOperator:
        return RolloutStepOperator(task_id=task_id, step=name, settings=cfg, rollout_id=ROLLOUT_ID, **kwargs)

    begin = RolloutStepOperator(
        task_id="begin", step="begin", settings=cfg, version="{{ params.version or '' }}"
    )
    chain = [begin, step("smoke", "smoke"), step("shadow", "shadow")]
    for i, canary in enumerate(cfg.rollout.canary):
        chain.append(step(canary.name, "canary", canary_index=i, trigger_rule="none_failed"))
    chain.append(step("promote", "promote", trigger_rule="none_failed"))
    for upstream, downstream in itertools.pairwise(chain):
        upstream >> downstream
    # A teardown: it runs after every step whatever happened (rolling back a rollout that a dead
    # task left half done, a no-op otherwise), and the run's state is the steps' own.
    chain[1:] >> step("rollback", "rollback").as_teardown(setups=begin)


deploy()
