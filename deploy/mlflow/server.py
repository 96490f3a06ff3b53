"""Start the MLflow server of the production stack with basic auth (``--app-name basic-auth``).

Runs in the ``mlflow`` container (docker-compose.yaml), stdlib only. MLflow's auth reads its
settings from an ini file whose ``database_uri`` cannot come from the environment, so this writes
one from the environment into a private temporary folder (0700; the file holds the auth
database's password) and then becomes ``mlflow server`` (``exec``), passing on its arguments:

    MLFLOW_AUTH_DATABASE_URI         where users and permissions live (the ``mlflow_auth`` database)
    MLFLOW_AUTH_ADMIN_PASSWORD       the ``admin`` user's password, read by MLflow itself when it
                                     creates that user on an empty auth database
    MLFLOW_FLASK_SERVER_SECRET_KEY   the CSRF key, the same in every worker (read by MLflow)

Everyone else starts with no permission (``default_permission = NO_PERMISSIONS``): the users
``training`` and ``serving`` get theirs from ``deploy/mlflow/users.py``. Routes for which MLflow
has no authorization rule are refused (``MLFLOW_BASIC_AUTH_FAIL_CLOSED``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REQUIRED = ("MLFLOW_AUTH_DATABASE_URI", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
INI = """\
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = {database_uri}
admin_username = {admin_username}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
auth_cache_ttl_seconds = {auth_cache_ttl_seconds}
"""
AUTH_CACHE_TTL_SECONDS = 30
"""A verified login is remembered this long per worker (MLflow's cache; off by default): each
check costs a scrypt hash (0.1 to 0.4 s of CPU), and a model load or a training run makes dozens
of calls. The price: a changed or revoked password keeps working up to this long on the workers
that had seen it."""


def write_auth_ini(environ: dict[str, str], folder: Path) -> Path:
    """The basic-auth ini for ``environ``, written 0600 under ``folder``."""
    missing = [name for name in REQUIRED if not environ.get(name)]
    if missing:
        raise SystemExit(f"mlflow server: {', '.join(missing)} not set (see .env.example)")
    text = INI.format(
        database_uri=environ["MLFLOW_AUTH_DATABASE_URI"].replace("%", "%%"),
        admin_username=environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin",
        auth_cache_ttl_seconds=AUTH_CACHE_TTL_SECONDS,
    )
    path = folder / "basic_auth.ini"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def server_environment(environ: dict[str, str], folder: Path) -> dict[str, str]:
    """The environment ``mlflow server`` runs with: the ini's path, fail-closed authorization."""
    ini = write_auth_ini(environ, folder)
    return {**environ, "MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true"}


def main(argv: list[str]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="mlflow-auth-"))  # mkdtemp: mode 0700
    env = server_environment(dict(os.environ), folder)
    command = ["mlflow", "server", "--app-name", "basic-auth", *argv]
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main(sys.argv[1:])
