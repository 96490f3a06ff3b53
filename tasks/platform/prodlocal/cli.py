"""``airloop prod-local``: the production profile on this machine (see the package's docstring)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from config import airloop_home


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The production profile (Postgres roles, Redis, S3, a two-node Ray cluster with "
        "token auth, MLflow with basic auth, Airflow) run as processes on this machine.",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=airloop_home() / ".prod-local",
        help="the run's folder: ports, generated secrets, data, logs (default: AIRLOOP_HOME/.prod-local)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start every service and wait until all are ready")
    run = sub.add_parser("run", help="up, then ingest → features → train → deploy → scoring → monitor")
    run.add_argument("--until", choices=["deploy", "monitor"], default="monitor")
    run.add_argument("--rows", type=int, default=3000, help="rows per simulated batch (default 3000)")
    run.add_argument("--batches", type=int, default=3, help="stable batches to land (default 3)")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds per stage (default 600)")
    run.add_argument("--down", action="store_true", help="stop every service at the end")
    sub.add_parser("down", help="stop every service of the run")
    sub.add_parser("env", help="print the environment a shell needs to use the run (export lines)")
    return parser


def _run(args: argparse.Namespace) -> int:
    from tasks.platform.prodlocal.control import down  # noqa: PLC0415 - keeps --help fast
    from tasks.platform.prodlocal.flow import Options, Report, run  # noqa: PLC0415 - as above

    options = Options(batches=args.batches, rows=args.rows, until=args.until, timeout=args.timeout)
    report = Report()
    try:
        run(args.home, options, report=report)
        return 0
    except Exception as exc:  # noqa: BLE001 - said, with the report so far
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        print(json.dumps({"stages_s": report.stages, **report.facts}, indent=2, default=str))
        if args.down:
            down(args.home)


def main(argv: list[str] | None = None, *, prog: str = "airloop prod-local") -> int:
    args = _parser(prog).parse_args(argv)
    from tasks.platform.prodlocal.control import down, up  # noqa: PLC0415 - keeps --help fast
    from tasks.platform.prodlocal.state import load_or_create, pipeline_env  # noqa: PLC0415 - as above

    if args.command == "up":
        up(args.home)
        print(f"up; `{prog} env` prints the environment, `{prog} down` stops it")
        return 0
    if args.command == "down":
        down(args.home)
        return 0
    if args.command == "env":
        for name, value in pipeline_env(load_or_create(args.home)).items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
