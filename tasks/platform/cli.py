"""``airloop``: the one command line of the project (a console script; ``make setup`` installs it).

    airloop demo                        the whole loop on simulated data (what ``make demo`` runs)
    airloop up [--serve] | down | status | env     the local stack
    airloop simulate [...]              simulated batches into the landing zone (and asset events)
    airloop traffic [...]               live scoring traffic with labels posted later
    airloop validate FILE               the ingest suite on a local CSV/Parquet file; nothing moved
    airloop features | train | serve | monitor [...]   a stage's own command line
    airloop prod-local up | run | down | env           the production profile on this machine

Each handler imports what it runs when it runs, so ``airloop --help`` and every subcommand's
``--help`` answer without loading pandas, Ray, Feast, MLflow, torch or Airflow.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tasks.platform.scenarios import BAD_KINDS, FORMATS, SCENARIOS

if TYPE_CHECKING:
    from config import Settings

Handler = Callable[[argparse.Namespace], int]
Delegate = Callable[[list[str]], int]


def _settings() -> Settings:
    from config import load_config  # noqa: PLC0415 - keeps airloop --help fast

    return load_config()


# -- the local stack ---------------------------------------------------------------------------


def _up(args: argparse.Namespace) -> int:
    from tasks.platform import stack  # noqa: PLC0415 - keeps airloop --help fast

    services = stack.LOOP if args.serve else stack.SERVICES
    try:
        stack.start(_settings(), timeout=args.timeout, services=services)
    except stack.StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _down(args: argparse.Namespace) -> int:
    from tasks.platform import stack  # noqa: PLC0415 - keeps airloop --help fast

    stack.stop(_settings(), timeout=args.timeout, services=stack.LOOP)
    return 0


def _status(args: argparse.Namespace) -> int:
    from tasks.platform import stack  # noqa: PLC0415 - keeps airloop --help fast

    settings = _settings()
    serving = stack.service_pid(settings, stack.SERVE) is not None
    st = stack.status(settings, services=stack.LOOP if serving else stack.SERVICES)
    print("\n".join(stack.status_lines(st)))
    return 0 if all(s["running"] for s in st["services"].values()) else 3


def _env(args: argparse.Namespace) -> int:
    import shlex  # noqa: PLC0415 - keeps airloop --help fast

    from tasks.platform import stack  # noqa: PLC0415 - keeps airloop --help fast

    for name, value in stack.airflow_vars(_settings()).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _add_stack_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser(
        "up",
        help="start the local stack: Airflow and MLflow (and serving with --serve)",
        description="Start what is not running yet of the local stack (Airflow api-server, scheduler, "
        "dag-processor, triggerer; the MLflow server) and wait until every service is healthy. "
        "Prints the UI addresses and the login.",
    )
    up.add_argument("--serve", action="store_true", help="start the serving application (Ray Serve) too")
    up.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for health (default 240)")
    up.set_defaults(handler=_up)
    down = sub.add_parser(
        "down",
        help="stop the local stack (serving included)",
        description="Stop every service of the local stack: SIGTERM, then SIGKILL after --timeout.",
    )
    down.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    down.set_defaults(handler=_down)
    status = sub.add_parser(
        "status",
        help="each service of the local stack: running or stopped, port, health",
        description="One line per service (pid, port, health) and whether the stack is running. "
        "Exit status 0 when every service runs, 3 when some or all are stopped.",
    )
    status.set_defaults(handler=_status)
    env = sub.add_parser(
        "env",
        help="print the stack's Airflow environment as export lines",
        description="Print what every Airflow process of the stack gets, as shell exports: "
        '`eval "$(airloop env)"` makes `airflow ...` by hand talk to the same stack.',
    )
    env.set_defaults(handler=_env)


# -- the demo, the simulator and the traffic player ----------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    print("==> loading the loop (pandas, Feast, MLflow, the stage modules) ...", flush=True)
    from tasks.platform import demo  # noqa: PLC0415 - keeps airloop --help fast

    options = demo.DemoOptions(
        batches=args.batches,
        rows=args.rows,
        bad=None if args.bad == "none" else args.bad,
        timeout=args.timeout,
        until=args.until,
        scenario=args.scenario,
        rate=args.rate,
        label_delay=args.label_delay,
        steady_windows=args.steady_windows,
    )
    return demo.run(_settings(), options)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the whole closed loop locally on simulated data (what `make demo` runs)",
        description="Start the local stack with serving, land simulated batches (one bad on purpose), "
        "wait for ingest and features, train and roll out the first model, play live traffic with "
        "delayed labels, then start a drift: the monitor decides to retrain, the challenger goes "
        "through the gate, shadow and canary steps to promote, and serves the traffic. Shows each "
        "stage live; prints the timeline, both versions' metrics, the drift numbers and where to look.",
    )
    demo.add_argument("--batches", type=int, default=3, help="stable batches to land (default 3)")
    demo.add_argument("--rows", type=int, default=None, help="rows per batch (default: simulate.batch_rows)")
    demo.add_argument(
        "--bad",
        default="nulls",
        choices=[*BAD_KINDS, "none"],
        help="the bad batch landed too (default nulls)",
    )
    demo.add_argument(
        "--scenario",
        choices=["covariate", "concept", "none"],
        default="covariate",
        help="the drift that begins: inputs shift (covariate), fraud changes (concept), or none",
    )
    demo.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for each stage (default 900)"
    )
    demo.add_argument(
        "--until",
        choices=["features", "serve", "loop"],
        default="loop",
        help="stop after features, once the first champion serves steady traffic, or play the whole "
        "loop (default): drift, retrain, gate, shadow, canary, promote",
    )
    demo.add_argument("--rate", type=float, default=20.0, help="live requests per second (default 20)")
    demo.add_argument(
        "--label-delay", type=float, default=10.0, help="seconds until each label is posted (default 10)"
    )
    demo.add_argument(
        "--steady-windows",
        type=_non_negative,
        default=1,
        help="monitor windows of steady traffic before the drift begins (default 1)",
    )
    demo.set_defaults(handler=_demo)


def _simulate(args: argparse.Namespace) -> int:
    from tasks.platform import simulate  # noqa: PLC0415 - keeps airloop --help fast

    plan = simulate.BatchPlan(
        scenario=args.scenario,
        batches=args.batches,
        rows=args.rows,
        start_index=args.start_index,
        fmt=args.fmt,
        bad=args.bad,
        drift_strength=args.drift_strength,
        notify=args.notify,
        landing_uri=args.landing_uri,
    )
    return simulate.land(_settings(), plan)


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="write simulated transaction batches into the landing zone",
        description="Write seeded, reproducible batches of card transactions into the landing zone, "
        "one line each and a summary; with --notify, post the landing asset event per batch as an "
        "upstream system would (exit 1 if Airflow could not be told).",
    )
    p.add_argument("--scenario", choices=SCENARIOS, default="stable", help="default stable")
    p.add_argument("--batches", type=_non_negative, default=1, help="how many batches to write (default 1)")
    p.add_argument("--rows", type=int, default=None, help="rows per batch (default: simulate.batch_rows)")
    p.add_argument("--start-index", type=int, default=0, help="index of the first batch (its time window)")
    p.add_argument("--format", choices=FORMATS, default="parquet", dest="fmt", help="default parquet")
    p.add_argument("--bad", choices=BAD_KINDS, default=None, help="write bad batches of this kind instead")
    p.add_argument("--drift-strength", type=float, default=1.0, help="0..1, for the drift scenarios")
    p.add_argument("--notify", action="store_true", help="post an asset event to Airflow per batch")
    p.add_argument("--landing-uri", default=None, help="where to write (default: storage.landing_uri)")
    p.set_defaults(handler=_simulate)


def _traffic(args: argparse.Namespace) -> int:
    from tasks.platform import traffic  # noqa: PLC0415 - keeps airloop --help fast

    settings = _settings()
    seconds = 60.0 if args.seconds is None and args.requests is None else args.seconds
    print(f"[traffic] {args.rate:g}/s of {args.scenario} transactions to {settings.serving.url}", flush=True)
    stats = traffic.play(
        settings,
        rate=args.rate,
        seconds=seconds,
        requests=args.requests,
        scenario=args.scenario,
        drift_strength=args.drift_strength,
        label_delay=args.label_delay,
        workers=args.workers,
        progress=lambda line: print(line, flush=True),
        clock=traffic.Clock() if args.wall_clock else None,
    )
    return 1 if stats.failed else 0


def _add_traffic(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "traffic",
        help="send live scoring traffic to the serving application, labels later",
        description="Score simulated transactions at a steady open-loop rate and post each one's "
        "label after a delay, as a payment system and its chargeback feed would. Progress every "
        "few seconds, a summary at the end; exit 1 if any request failed.",
    )
    p.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    p.add_argument("--seconds", type=float, default=None, help="how long to send (default 60 s)")
    p.add_argument("--requests", type=int, default=None, help="how many requests to send")
    p.add_argument("--scenario", choices=SCENARIOS, default="stable", help="default stable")
    p.add_argument("--drift-strength", type=float, default=1.0, help="0..1, for the drift scenarios")
    p.add_argument(
        "--label-delay", type=float, default=30.0, help="seconds until a label is posted (default 30)"
    )
    p.add_argument("--workers", type=int, default=16, help="concurrent client threads (default 16)")
    p.add_argument(
        "--wall-clock",
        action="store_true",
        help="stamp transactions with the wall clock (default: the simulated clock, just after the "
        "landed history, which is what the online features describe)",
    )
    p.set_defaults(handler=_traffic)


def _validate(args: argparse.Namespace) -> int:
    print(f"validating {args.file} with the ingest suite ...", file=sys.stderr, flush=True)
    from tasks.platform import file_validation  # noqa: PLC0415 - keeps airloop --help fast

    return file_validation.validate_file(args.file, _settings(), as_json=args.json)


def _add_validate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        help="run the ingest suite on a local CSV/Parquet file and print its report",
        description="Validate FILE against the transaction contract with the ingest DAG's Great "
        "Expectations suite and print pass/fail with one line per failed check. Nothing is moved "
        "or written. Exit status 0 when it passes, 1 when a check fails, 2 when there is no FILE.",
    )
    p.add_argument("file", metavar="FILE", help="a .csv or .parquet file (or a storage URI)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead")
    p.set_defaults(handler=_validate)


# -- the stages' own command lines ---------------------------------------------------------------


def _features(argv: list[str]) -> int:
    from tasks.features.cli import main  # noqa: PLC0415 - keeps airloop --help fast

    return main(argv, prog="airloop features")


def _train(argv: list[str]) -> int:
    from tasks.training.cli import main  # noqa: PLC0415 - keeps airloop --help fast

    return main(argv, prog="airloop train")


def _serve(argv: list[str]) -> int:
    from tasks.serving.process import main  # noqa: PLC0415 - keeps airloop --help fast

    return main(argv, prog="airloop serve")


def _monitor(argv: list[str]) -> int:
    from tasks.monitoring.cli import main  # noqa: PLC0415 - keeps airloop --help fast

    return main(argv, prog="airloop monitor")


def _backtest(argv: list[str]) -> int:
    from tasks.backtest.cli import main  # noqa: PLC0415 - keeps airloop --help fast

    return main(argv, prog="airloop backtest")


def _prod_local(argv: list[str]) -> int:
    from tasks.platform.prodlocal.cli import main  # noqa: PLC0415 - keeps airloop --help fast

    return main(argv, prog="airloop prod-local")


STAGES: dict[str, tuple[Delegate, str]] = {
    "features": (_features, "the features stage by hand: refresh, apply, status, lookup, yaml"),
    "train": (_train, "build a training set (or take one), train candidates, gate them, register the best"),
    "serve": (_serve, "run the serving application on Ray Serve, or print its Serve config"),
    "monitor": (_monitor, "monitor one window: drift, performance, report; optionally decide"),
    "backtest": (_backtest, "replay history through retraining policies side by side: HTML report and JSON"),
    "prod-local": (_prod_local, "the production profile as processes on this machine: up, run, down"),
}
"""Subcommands that hand everything after their name to the stage's own ``main(argv)``
(``airloop train --help`` is the training command line's help)."""


def _add_stages(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, (_, summary) in STAGES.items():
        sub.add_parser(name, help=f"{summary} (see `airloop {name} --help`)", add_help=False)


# -- the command -------------------------------------------------------------------------------


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="airloop",
        description="airloop: a closed-loop MLOps platform on Airflow 3. Run the loop locally, "
        "play upstream systems and traffic, validate a file, or run one stage by hand.",
        epilog="`airloop COMMAND --help` describes each command and its options.",
    )
    root.add_argument(
        "--profile",
        choices=["local", "production"],
        default=None,
        help="configuration profile (default: AIRLOOP_PROFILE, else local)",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub)
    _add_stack_commands(sub)
    _add_simulate(sub)
    _add_traffic(sub)
    _add_validate(sub)
    _add_stages(sub)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``airloop`` command; its exit status."""
    root = parser()
    args, rest = root.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.profile:
        os.environ["AIRLOOP_PROFILE"] = args.profile
    if args.command not in STAGES and rest:
        root.error(f"unrecognized arguments: {' '.join(rest)}")
    from tasks.common.secrets import log_in_to_local_mlflow  # noqa: PLC0415 - as _settings

    log_in_to_local_mlflow()
    try:
        if args.command in STAGES:
            delegate, _ = STAGES[args.command]
            return delegate(rest)
        handler: Handler = args.handler
        return handler(args)
    except KeyboardInterrupt:
        print(f"\nairloop {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
