"""Secret scanner over the repository (detect-secrets 1.5), against ``.secrets.baseline``.

    python -m tools.secret_scan            # CI: fail on any finding the baseline does not hold
    python -m tools.secret_scan --update   # after a reviewed change: add new findings, unaudited
    python -m tools.secret_scan --update --mark-false-positives   # ... and mark them audited

What is scanned: every file git knows or would add (tracked, plus untracked files not ignored),
so a secret written into a new file is found before it is committed. A finding fails the check
unless the baseline holds it (same file, same hashed secret, same kind) marked as audited and not
a secret (``"is_secret": false``: test passwords, example values). A baseline entry marked a real
secret (``true``) or not yet audited fails too. Only hashes are stored; nothing here prints a
secret, only where it is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from detect_secrets.core import baseline as baseline_io
from detect_secrets.core.secrets_collection import SecretsCollection
from detect_secrets.settings import default_settings

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".secrets.baseline"


def repository_files(root: Path = ROOT) -> list[str]:
    """Tracked files and untracked ones git would add, relative to ``root``, that exist."""
    command = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(command, cwd=root, capture_output=True, check=True).stdout.decode()
    names = sorted({name for name in listed.split("\0") if name})
    return [name for name in names if (root / name).is_file() and name != BASELINE.name]


def scan(
    root: Path, files: list[str], baseline_path: Path
) -> tuple[SecretsCollection, SecretsCollection, dict]:
    """The findings in ``files`` with the baseline's settings, and the baseline as loaded."""
    raw = baseline_io.load_from_file(str(baseline_path)) if baseline_path.exists() else {}
    with default_settings():
        known = baseline_io.load(raw, str(baseline_path)) if raw else SecretsCollection(root=str(root))
        found = SecretsCollection(root=str(root))
        found.scan_files(*files, num_processors=2)
    return found, known, raw


def _key(name: str, secret: object) -> tuple[str, str, str]:
    """A finding's identity: its file relative to the repository, its kind and its hash.

    detect-secrets compares findings by their ``filename``, which it makes absolute: the same
    finding in another clone of the repository (CI's) would not match the baseline."""
    return (name, str(getattr(secret, "type", "")), str(getattr(secret, "secret_hash", "")))


def problems(found: SecretsCollection, known: SecretsCollection) -> list[str]:
    """Every finding not audited away in the baseline, as ``file:line: kind (why)``."""
    out = []
    audited = {_key(name, secret): secret for name, secret in known}
    for name, secret in found:
        entry = audited.get(_key(name, secret))
        if entry is None:
            why = "new: not in .secrets.baseline"
        elif getattr(entry, "is_secret", None) is None:
            why = "in the baseline but not audited"
        elif entry.is_secret:
            why = "audited as a real secret: remove it and rotate it"
        else:
            continue
        out.append(f"{name}:{secret.line_number}: {secret.type} ({why})")
    return sorted(out)


def update(
    found: SecretsCollection, known: SecretsCollection, raw: dict, baseline_path: Path, *, mark: bool
) -> int:
    """Rewrite the baseline with ``found``, keeping audit marks; returns how many are new."""

    marks = {_key(name, secret): getattr(secret, "is_secret", None) for name, secret in known}
    new = 0
    for name, secret in found:
        previous = marks.get(_key(name, secret))
        if previous is None:
            new += _key(name, secret) not in marks
            secret.is_secret = False if mark else None
        else:
            secret.is_secret = previous
    output = baseline_io.format_for_output(found)
    output["generated_at"] = raw.get("generated_at", output.get("generated_at"))
    baseline_path.write_text(json.dumps(output, indent=2, sort_keys=True) + "\n")
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite .secrets.baseline with the findings")
    parser.add_argument(
        "--mark-false-positives", action="store_true", help="with --update: mark new ones audited"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    baseline_path = root / BASELINE.name
    files = repository_files(root)
    found, known, raw = scan(root, files, baseline_path)
    if args.update:
        new = update(found, known, raw, baseline_path, mark=args.mark_false_positives)
        print(f"secret scan: {baseline_path.name} rewritten, {new} new finding(s)")
        found, known, raw = scan(root, files, baseline_path)
    left = problems(found, known)
    for line in left:
        print(f"secret scan: {line}", file=sys.stderr)
    count = sum(1 for _ in found)
    print(f"secret scan: {len(files)} files, {count} finding(s), {len(left)} not audited away")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
