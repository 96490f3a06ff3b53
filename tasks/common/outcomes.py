"""How a stage says that a step had nothing to do, or failed for good, without knowing Airflow.

``tasks/`` never imports Airflow, yet a DAG's task must end as *skipped* when there is nothing to
do (no new rows, no champion yet) and as *failed without retry* when a retry cannot help (a
quarantined batch, a rollout judged and rolled back). Stage code raises these; the DAG side
(``plugins.outcomes``) turns them into Airflow's skip and fail exceptions.
"""

from __future__ import annotations


class Skip(Exception):
    """Nothing to do; the message says why (the task ends as skipped)."""


class Fail(Exception):
    """A definite failure that a retry cannot fix; the message says what failed."""
