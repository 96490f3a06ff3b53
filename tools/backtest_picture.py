"""Writes ``docs/backtest-report.svg``, the backtest report's picture the README shows.

    python -m tools.backtest_picture                      # a short backtest: 6 days, onset on day 2
    python -m tools.backtest_picture --result run.json    # the JSON of `airloop backtest --out DIR`

The picture is ``tasks.backtest.report.picture``: the report's table (retrains, hours to
detection and to the retrained champion, area lost) and each policy's quality chart, the same
SVG charts as the HTML page, in one standalone SVG file. Without ``--result`` it runs
``config/backtest/policies.yaml`` (its policies and scale) over ``--days`` days, which takes
about a minute on two cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before xgboost loads OpenMP

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PICTURE = ROOT / "docs" / "backtest-report.svg"
PROG = "python -m tools.backtest_picture"


def run(policies: Path, days: float, onset_day: float) -> dict[str, Any]:
    """A short backtest of the file's policies, the result as ``airloop backtest`` writes it."""
    from tasks.backtest import spec  # noqa: PLC0415 - pandas and xgboost after the arguments
    from tasks.backtest.run import backtest  # noqa: PLC0415 - see above

    short = replace(spec.load(policies), days=days, onset_day=onset_day)
    return backtest(short, say=lambda m: print(f"[backtest] {m}", file=sys.stderr, flush=True))


def main(argv: list[str] | None = None) -> int:
    from tasks.backtest.cli import DEFAULT_POLICIES  # noqa: PLC0415 - see above

    p = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--result", type=Path, help="a backtest's JSON instead of running one")
    p.add_argument("--policies", type=Path, default=DEFAULT_POLICIES, help="the backtest file to run")
    p.add_argument("--days", type=float, default=6.0, help="replayed days (default 6)")
    p.add_argument("--onset-day", type=float, default=2.0, help="the drift's onset day (default 2)")
    p.add_argument("--out", type=Path, default=PICTURE, help=f"default {PICTURE.relative_to(ROOT)}")
    args = p.parse_args(argv)
    from tasks.backtest.report import picture  # noqa: PLC0415 - see above

    if args.result:
        result = json.loads(args.result.read_text())
    else:
        result = run(args.policies, args.days, args.onset_day)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(picture(result))
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
