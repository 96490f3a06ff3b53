"""Monitor one window from the command line: read it, measure it, report it, store it, and
optionally decide on a retrain (``airloop monitor``).

    python -m tasks.monitoring.cli [--start ISO] [--end ISO] [--tracking-uri URI] [--decide]

Without ``--start`` the window continues from the end of the last recorded one. Prints the
window's numbers (and the decision) as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from config import load_config
from tasks.monitoring.results import Window

PROG = "python -m tasks.monitoring.cli"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    summary = (__doc__ or "").split("\n\n")[0]
    p = argparse.ArgumentParser(prog=prog, description=summary)
    p.add_argument("--start", help="window start (default: the end of the last recorded window)")
    p.add_argument("--end", help="window end (default: now)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or config)")
    p.add_argument("--decide", action="store_true", help="also decide on a retrain and record it")
    p.add_argument("--retrain-running", action="store_true", help="a train run is in progress")
    p.add_argument("--last-retrain", help="when the last retrain started (ISO)")
    return p


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Run the command (``prog``: the name ``--help`` shows, e.g. ``airloop monitor``)."""
    args = parser(prog).parse_args(argv)
    # pandas, Evidently and MLflow load after the arguments are read, so --help answers at once
    from tasks.monitoring import decision, sensing, window  # noqa: PLC0415 - keeps --help fast

    settings = load_config()
    if args.start:
        span = Window.of(args.start, args.end or datetime.now(UTC))
    else:
        span = sensing.next_window(settings, args.end)
    result = window.run_window(settings, span, tracking_uri=args.tracking_uri)
    out: dict[str, Any] = {"window": result.as_dict()}
    if args.decide:
        made = decision.decide_and_record(
            settings, result, last_retrain_at=args.last_retrain, retrain_running=args.retrain_running
        )
        out["decision"] = made.as_dict()
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
