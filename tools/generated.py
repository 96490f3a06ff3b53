"""Files generated from config and kept in the repository: write them, or check them in CI."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_or_check(prog: str, target: Path, text: Callable[[], str], argv: list[str] | None) -> int:
    """``prog [--check]``: write ``target`` from ``text()``, or fail (1) when it differs."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--check", action="store_true", help="fail when the file is not up to date")
    args = parser.parse_args(argv)
    wanted = text()
    if args.check:
        if not target.exists() or target.read_text() != wanted:
            print(f"{target.relative_to(ROOT)} is out of date: {prog}")
            return 1
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(wanted)
    print(f"wrote {target.relative_to(ROOT)}")
    return 0
