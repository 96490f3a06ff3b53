"""``mlflow server`` without the parent that only waits: the stack's MLflow service command.

``mlflow server`` prepares the stores (migrations), then starts uvicorn as a child and waits for
it, holding every module it imported (~0.25 GB resident) for nothing. Run through this module,
the same command replaces itself with that uvicorn (``exec``) once it is prepared: same
arguments, same environment, same server, one process fewer. Should MLflow stop starting its
server that way, the hook is simply not called and ``mlflow server`` runs as it always did.

    python -m tasks.platform.stack.mlflow_exec --backend-store-uri ... --port 5000

With ``MLFLOW_AUTH_DATABASE_URI`` in its environment it runs MLflow's basic auth exactly as the
production server does (``deploy/mlflow/server.py`` writes the auth settings): fail-closed, no
permission for anyone but the admin, logins cached briefly.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

PRODUCTION_SERVER = Path(__file__).resolve().parents[3] / "deploy" / "mlflow" / "server.py"


def _exec_instead(cmd: list[str], *, extra_env: dict[str, str] | None = None, **_: Any) -> None:
    """Where ``mlflow server`` would start uvicorn as a child and wait: become it."""
    env = {**os.environ, **(extra_env or {})}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, env)


def with_basic_auth(argv: list[str]) -> list[str]:
    """The server's arguments, with basic auth set up the production server's way when asked."""
    if not os.environ.get("MLFLOW_AUTH_DATABASE_URI"):
        return argv
    spec = importlib.util.spec_from_file_location("airloop_mlflow_server", PRODUCTION_SERVER)
    assert spec is not None and spec.loader is not None
    production = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(production)
    folder = Path(os.environ.get("AIRLOOP_MLFLOW_AUTH_DIR") or tempfile.mkdtemp(prefix="mlflow-auth-"))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ.update(production.server_environment(dict(os.environ), folder))
    return ["--app-name", "basic-auth", *argv]


def main(argv: list[str]) -> None:
    argv = with_basic_auth(argv)
    import mlflow.server  # noqa: PLC0415 - mlflow loads only in the MLflow service's own process
    from mlflow.cli import cli  # noqa: PLC0415 - as above

    if hasattr(mlflow.server, "_exec_cmd"):
        mlflow.server._exec_cmd = _exec_instead
    cli.main(args=["server", *argv], prog_name="mlflow")


if __name__ == "__main__":
    main(sys.argv[1:])
