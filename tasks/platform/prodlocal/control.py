"""Start and stop the production stack on this machine, in compose's order.

``up``: the stack's PostgreSQL, then ``deploy/postgres/10-airloop-roles.sh`` (the roles
``airflow``, ``mlflow``, ``feast``, each owning its databases); then Redis, S3, the two Ray
nodes, MLflow and Airflow's four services (after ``airflow db migrate`` as the ``airflow``
role); then the bucket (compose's ``minio-init``) and MLflow's users (``mlflow-init``:
``deploy/mlflow/users.py``). Each process is a service of ``tasks.platform.stack`` (pid file,
log, readiness, stop in waves). ``down`` stops all of it, PostgreSQL last.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from config import PROJECT_ROOT, Settings
from tasks.platform import stack
from tasks.platform.prodlocal.services import BACKING
from tasks.platform.prodlocal.state import BUCKET, State, load_or_create, pipeline_env
from tasks.platform.prodlocal.state import settings as settings_of
from tasks.platform.stack.database import layout, password

AIRFLOW = [s for s in stack.SERVICES if s.airflow]
INIT_TIMEOUT_S = 120.0


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``env`` on top and no other ``AIRLOOP*`` variable (the stack builds
    its processes' environment from it); restored afterwards."""
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith("AIRLOOP")]:
        del os.environ[name]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def postgres_settings(settings: Settings) -> Settings:
    """The settings under which the stack starts its PostgreSQL (``metadata_db.kind: postgres``);
    the production profile itself keeps ``external`` (Airflow's URL comes from the environment)."""
    db = settings.metadata_db.model_copy(update={"kind": "postgres", "mlflow_database": None})
    return settings.model_copy(update={"metadata_db": db})


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def _run(command: list[str], env: dict[str, str], what: str, log: Path) -> None:
    with log.open("ab") as fh:
        done = subprocess.run(
            command, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=INIT_TIMEOUT_S, check=False
        )
    if done.returncode != 0:
        raise stack.StackError(f"{what} failed (exit {done.returncode}):\n{stack.tail(log)}")


def create_roles(state: State, pg: Settings) -> None:
    """compose's postgres init script, as the stack's superuser over its socket."""
    user = pg.metadata_db.user
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGHOST": str(layout(pg).sockets),
        "PGPORT": "5432",
        "PGUSER": user,
        "POSTGRES_USER": user,
        "PGPASSWORD": password(pg),
        **{k: state.secrets[k] for k in ("AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD", "FEAST_DB_PASSWORD")},
    }
    script = str(PROJECT_ROOT / "deploy" / "postgres" / "10-airloop-roles.sh")
    _run(["sh", script], env, "postgres-init (roles)", stack.log_dir(pg) / "postgres-init.log")


def create_bucket(state: State) -> None:
    """compose's ``minio-init``: the bucket (moto has no users to create)."""
    import boto3  # noqa: PLC0415 - only when the production stack starts

    s3 = boto3.client("s3", endpoint_url=state.url("s3"), region_name="us-east-1")
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)


def create_mlflow_users(state: State, settings: Settings) -> None:
    """compose's ``mlflow-init``: ``deploy/mlflow/users.py`` as MLflow's admin."""
    s = state.secrets
    names = ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_TRAINING_PASSWORD", "MLFLOW_SERVING_PASSWORD")
    env = {"PATH": os.environ.get("PATH", ""), "MLFLOW_TRACKING_URI": state.url("mlflow")}
    env |= {k: s[k] for k in names}
    m = settings.mlflow
    script = str(PROJECT_ROOT / "deploy" / "mlflow" / "users.py")
    command = [sys.executable, script, "--experiment", m.experiment, "--registered-model", m.registered_model]
    _run(command, env, "mlflow-init (users)", stack.log_dir(settings) / "mlflow-init.log")


def up(root: Path, *, timeout: float = 480.0, quiet: bool = False) -> State:
    """Start every service (what runs already is left alone) and wait until all are ready."""
    state = load_or_create(root)
    with environment(pipeline_env(state)):
        settings = settings_of(state)
        pg = postgres_settings(settings)
        _say(f"production profile on this machine, folder {state.root}", quiet)
        stack.start(pg, services=[stack.POSTGRES], timeout=timeout, quiet=True)
        create_roles(state, pg)
        # Ray before Airflow: a raylet gives up on its dashboard agent after 30 s, which the
        # agent's start took on two cores busy with Airflow's and MLflow's (the node went down)
        stack.start(settings, services=BACKING, timeout=timeout, quiet=quiet)
        stack.start(settings, services=AIRFLOW, timeout=timeout, quiet=quiet)
        create_bucket(state)
        create_mlflow_users(state, settings)
    return state


def down(root: Path, *, timeout: float = 30.0, quiet: bool = False) -> list[str]:
    """Stop every service of the run (dependents first, PostgreSQL last); the names stopped."""
    from tasks.serving import haproxy  # noqa: PLC0415 - only when stopping

    state = load_or_create(root)
    with environment(pipeline_env(state)):
        settings = settings_of(state, check=False)
        stopped = stack.stop(settings, timeout=timeout, quiet=quiet, services=[*AIRFLOW, *BACKING])
        stopped += stack.stop(
            postgres_settings(settings), timeout=timeout, quiet=quiet, services=[stack.POSTGRES]
        )
        haproxy.sweep(settings)
    return stopped
