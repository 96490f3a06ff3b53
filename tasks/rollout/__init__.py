"""Rolling a registered model out on the serving application: smoke test, shadow, canary steps
judged against the champion on ``/metrics``, then promotion (the MLflow ``champion`` alias moves)
or automatic rollback (the version is tagged rejected with the reason).

- ``plan``: the deploy DAG's chain of steps from config (light: the DAG file imports it);
- ``steps``: what the deploy DAG's tasks call, one function per step;
- ``holding``: a traffic step held for its window, judged, ended or failed (rolled back);
- ``rollback``: traffic back on the champion, the version rejected; the DAG's teardown;
- ``application``: the serving application's control API, readiness, deployment;
- ``judge``: a step's measurements from two scrapes of ``/metrics``, and its checks;
- ``record``: the rollout's JSON record, its state between tasks and its history;
- ``history_page``: the rollout history page the Airflow UI links to.

Never imports Airflow (``plugins/rollout.py`` holds the operators around it).
"""
