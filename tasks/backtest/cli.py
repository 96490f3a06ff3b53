"""Backtest retraining policies on replayed history (``airloop backtest``).

    python -m tasks.backtest.cli [--policies FILE] [--history project] [--scenario NAME] [--days N]
                                 [--out DIR]

Replays the history the file describes (default ``config/backtest/policies.yaml``) through each
policy's monitor and retrains, publishes the HTML report (the Airflow UI lists it under
"Retraining policy backtests") with its JSON beside it, and prints the policies' summaries.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from config import CONFIG_DIR
from tasks.backtest.spec import HISTORIES
from tasks.platform.scenarios import SCENARIOS

PROG = "python -m tasks.backtest.cli"
DEFAULT_POLICIES = CONFIG_DIR / "backtest" / "policies.yaml"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    summary = (__doc__ or "").split("\n\n")[0]
    p = argparse.ArgumentParser(prog=prog, description=summary)
    p.add_argument("--policies", type=Path, default=DEFAULT_POLICIES, help="YAML or JSON backtest file")
    p.add_argument(
        "--history",
        choices=HISTORIES,
        help="replace the file's history: the simulator's or the project's curated data",
    )
    p.add_argument("--scenario", choices=SCENARIOS, help="replace the file's scenario")
    p.add_argument("--days", type=float, help="replace the file's replayed days")
    p.add_argument("--onset-day", type=float, help="replace the file's onset day")
    p.add_argument("--name", help="report name (default: backtest-<scenario>-<UTC time>)")
    p.add_argument("--out", help="also write <name>.html and <name>.json into this folder")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Run the command (``prog``: the name ``--help`` shows, e.g. ``airloop backtest``)."""
    args = parser(prog).parse_args(argv)
    # pandas, Evidently and xgboost load after the arguments are read, so --help answers at once
    from tasks.backtest import report, spec  # noqa: PLC0415 - keeps --help fast
    from tasks.backtest.run import backtest  # noqa: PLC0415 - see above

    try:
        loaded = spec.load(args.policies)
    except (OSError, ValueError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    changes = {
        "history": args.history,
        "scenario": args.scenario,
        "days": args.days,
        "onset_day": args.onset_day,
    }
    loaded = replace(loaded, **{k: v for k, v in changes.items() if v is not None})
    say = (lambda _: None) if args.quiet else (lambda m: print(f"[backtest] {m}", flush=True))
    result = backtest(loaded, say=say)
    what = "project" if loaded.history == "project" else loaded.scenario
    name = args.name or f"backtest-{what}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    settings = spec.policy_settings(loaded, loaded.policies[0])
    uris = report.write(settings, result, name, args.out)
    print(
        json.dumps({"report": uris, "policies": result["policies"], "seconds": result["seconds"]}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
