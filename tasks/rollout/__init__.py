"""Rolling a registered model out on the serving application: smoke test, shadow, canary steps
judged against the champion on ``/metrics``, then promotion (the MLflow ``champion`` alias moves)
or automatic rollback (the version is tagged rejected with the reason).

- ``steps``: what the deploy DAG's tasks call, one function per step;
- ``judge``: a step's measurements from two scrapes of ``/metrics``, and its checks;
- ``record``: the rollout's JSON record, its state between tasks and its history;
- ``report``: the rollout history page the Airflow UI links to.

Never imports Airflow (``plugins/rollout.py`` is the operator around it).
"""
