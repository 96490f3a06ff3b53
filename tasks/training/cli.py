"""The training entrypoint's command line: the train container's command.

    python -m tasks.training [--training-set-uri URI] [--tracking-uri URI] [--reason TEXT]
                             [--run-context JSON] [--output PATH]

The train DAG's GPU pod runs it (the local profile runs it as a child process); ``airloop
train`` calls ``main`` too. Without ``--training-set-uri`` it first builds the training set from
the curated data and the feature store, as the train DAG's first task does. It trains, gates and
maybe registers (``tasks.training.run``), then writes the result (``TrainingResult.as_dict()``,
keys in ``README.md``) as JSON to ``--output`` (default ``/airflow/xcom/return.json`` when
``/airflow/xcom`` exists: the KubernetesPodOperator's XCom sidecar reads it) and, as the last
line, to stdout. Exit status: 0 when the run completed (registered or rejected), 1 when the
training set or the arguments are unusable, 3 when MLflow failed or could not be reached mid-run
(nothing of the attempt is registered; a retry of the same DAG run settles what it left, see
``tasks.training.attempts``). Under ``torchrun`` (``training_pod.runner: torchrun``) every rank
runs this command; rank 0 alone does all of the above, the others train beside it and exit 0
(``tasks.training.torchrun``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from config import load_config
from tasks.common import storage

if TYPE_CHECKING:
    from config import Settings

EXIT_UNUSABLE = 1
EXIT_MLFLOW = 3
XCOM_DIR = Path("/airflow/xcom")
XCOM_RETURN = XCOM_DIR / "return.json"


PROG = "python -m tasks.training"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train candidates, gate them, register the best one in MLflow (or nothing).",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--training-set-uri",
        help="a training set written by the train DAG's first task (default: build one now)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking server (default: $MLFLOW_TRACKING_URI, else mlflow.tracking_uri of the config)",
    )
    parser.add_argument("--reason", default=None, help="why this run happens (schedule, drift, manual)")
    parser.add_argument(
        "--run-context", default=None, help='JSON: {"dag_id", "run_id", "reason", "drift"} of the Airflow run'
    )
    parser.add_argument(
        "--output",
        default=None,
        help=f"where to write the JSON result (default: {XCOM_RETURN} when {XCOM_DIR} exists)",
    )
    return parser


def _quiet_threads() -> None:
    """Before xgboost and torch load OpenMP: idle threads sleep instead of spinning, which keeps
    training from slowing down many times over when other processes share the cores."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Run the command (``prog``: the name ``--help`` shows, e.g. ``airloop train``)."""
    args = parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_threads()
    settings = load_config()
    from tasks.training import torchrun  # noqa: PLC0415 - after the arguments, as below

    if torchrun.launched():  # one of torchrun's ranks: rank 0 trains, the others follow it
        return torchrun.main(settings, lambda: _train(args, settings))
    return _train(args, settings)


def _train(args: argparse.Namespace, settings: Settings) -> int:
    """Train, gate, maybe register; the result as JSON to ``--output`` and stdout."""
    # mlflow, pandas, xgboost and torch take seconds to import: after the arguments, so --help is quick
    from tasks.training.dataset import build  # noqa: PLC0415 - see above
    from tasks.training.run import run  # noqa: PLC0415 - see above

    output = Path(args.output) if args.output else (XCOM_RETURN if XCOM_DIR.is_dir() else None)
    try:
        if args.training_set_uri is None:
            storage.configure(settings.storage.s3_endpoint_url)
            data = build(settings)
            print(f"training set {data.uri}: {data.rows} rows, SHA-256 {data.sha256[:12]}", flush=True)
        result = run(
            settings,
            args.training_set_uri or data.uri,
            tracking_uri=args.tracking_uri,
            reason=args.reason,
            run_context=args.run_context,
        )
    except ValueError as exc:  # TrainingDataError, SplitError, a bad --run-context
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except Exception as exc:
        if not _mlflow_failed(exc):
            raise
        print(mlflow_error(args.tracking_uri or settings.mlflow.url, exc), file=sys.stderr)
        return EXIT_MLFLOW
    text = json.dumps(result.as_dict())
    if output is not None:
        write_atomically(output, text)
    print(text, flush=True)
    return 0


def _mlflow_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is MLflow failing or unreachable (the server, its REST API, its artifacts)."""
    import requests  # noqa: PLC0415 - loaded by mlflow anyway; after the arguments, like it
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 - as above

    return isinstance(exc, MlflowException | requests.RequestException | ConnectionError)


def mlflow_error(tracking_uri: str, exc: BaseException) -> str:
    """The one message a run that lost MLflow ends with (its first line, bounded)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
    return (
        f"error: MLflow at {tracking_uri} failed during training ({type(exc).__name__}: {first}).\n"
        "Nothing of this attempt is registered: a version it had begun has no alias and is deleted "
        "by the next attempt of the same DAG run. Retry once MLflow answers."
    )


def write_atomically(path: Path, text: str) -> None:
    """Readers (the XCom sidecar, the local operator) see the whole result or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)
