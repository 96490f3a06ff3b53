"""Rolling a registered model out on the serving application: smoke test, shadow, canary steps
judged against the champion serving the same traffic in the same window, then promotion (the
MLflow ``champion`` alias moves) or automatic rollback (the version is tagged rejected with the
reason).

- ``plan``: the deploy DAG's chain of steps from config (light: the DAG file imports it);
- ``steps``: what the deploy DAG's tasks call, one function per step;
- ``holding``: a traffic step held for its window, judged, ended or failed (rolled back);
- ``rollback``: traffic back on the champion, the version rejected; the DAG's teardown;
- ``application``: the serving application's control API, readiness, deployment;
- ``judge``: a step's measurements (challenger, champion, service) and its checks;
- ``scrape``: two scrapes of ``/metrics`` into counts, histograms, quantiles, means, PSI;
- ``stats``: one-sided Fisher exact tests and Wilson intervals (plain ``math``), ``Check``;
- ``scores``: the score checks, held to the observed fraud rate (``BaseRate``);
- ``record``: the rollout's JSON record, its state between tasks and its history;
- ``history_page``: the rollout history page the Airflow UI links to.

Never imports Airflow (``plugins/rollout.py`` holds the operators around it).
"""
