"""The production profile, run end to end on one machine without containers.

    airloop prod-local up | run | down | env [--home DIR]

The processes compose runs, started from the same scripts on free loopback ports: the stack's
PostgreSQL with compose's roles (``airflow``, ``mlflow``, ``feast``: one database each), Redis
with its read-only ``serving`` user, an S3 endpoint (moto's server in place of MinIO), a Ray
cluster of two nodes with Ray's token authentication, MLflow with basic auth, and Airflow's
api-server, scheduler, dag-processor and triggerer with ``AIRLOOP_PROFILE=production``: every
``${VAR}`` of ``config/production.yaml`` set to a generated secret, training as a child process
(``training_pod.runner: local``, no Kubernetes here), the loop at CI scale.

Parts: ``state`` (folder, ports, secrets, each process's environment), ``services`` (the
servers as entries of ``tasks.platform.stack``'s service table), ``control`` (up, down, the
one-shot inits), ``flow`` (the loop, stage by stage), ``checks`` (where the data landed),
``cli``.
"""

from tasks.platform.prodlocal.control import down, environment, up
from tasks.platform.prodlocal.flow import Options, Report, run
from tasks.platform.prodlocal.state import State, load_or_create, pipeline_env, settings

__all__ = [
    "Options",
    "Report",
    "State",
    "down",
    "environment",
    "load_or_create",
    "pipeline_env",
    "run",
    "settings",
    "up",
]
