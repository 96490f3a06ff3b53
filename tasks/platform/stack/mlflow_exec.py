"""``mlflow server`` without the parent that only waits: the stack's MLflow service command.

``mlflow server`` prepares the stores (migrations), then starts uvicorn as a child and waits for
it, holding every module it imported (~0.25 GB resident) for nothing. Run through this module,
the same command replaces itself with that uvicorn (``exec``) once it is prepared: same
arguments, same environment, same server, one process fewer. Should MLflow stop starting its
server that way, the hook is simply not called and ``mlflow server`` runs as it always did.

    python -m tasks.platform.stack.mlflow_exec --backend-store-uri ... --port 5000
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _exec_instead(cmd: list[str], *, extra_env: dict[str, str] | None = None, **_: Any) -> None:
    """Where ``mlflow server`` would start uvicorn as a child and wait: become it."""
    env = {**os.environ, **(extra_env or {})}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, env)


def main(argv: list[str]) -> None:
    import mlflow.server  # noqa: PLC0415 - mlflow loads only in the MLflow service's own process
    from mlflow.cli import cli  # noqa: PLC0415 - as above

    if hasattr(mlflow.server, "_exec_cmd"):
        mlflow.server._exec_cmd = _exec_instead
    cli.main(args=["server", *argv], prog_name="mlflow")


if __name__ == "__main__":
    main(sys.argv[1:])
