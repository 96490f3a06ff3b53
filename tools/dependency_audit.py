"""Dependency vulnerability audit of ``requirements.lock`` that never passes silently.

    python -m tools.dependency_audit                    # pip-audit, then PyPI's own advisories
    python -m tools.dependency_audit --require-audit    # also fail when nothing could be audited

1. ``pip-audit`` (PyPI's vulnerability service, per pinned version). Where that service cannot
   be reached or answers nothing for a pin (a machine that reaches only the package index gets a
   404 for every ``/pypi/<name>/<version>/json``, and a plain pip-audit then skips every package
   and prints "No known vulnerabilities found"), the pin counts as NOT audited.
2. For each pin step 1 could not audit: PyPI's project JSON (``/pypi/<name>/json``, which the
   package index serves) lists the known vulnerabilities of the LATEST release. A pin equal to
   the latest release is audited from it; an older pin stays NOT audited (its advisories are not
   in that document).

The report says how many pins each source audited and how many were not audited, loudly. A
finding fails the audit unless ``tools/audit_exceptions.toml`` lists its id with a reason and a
date until which it is accepted (an expired or reasonless exception fails too). Exit codes: 0
audited (fully or in part) with no unexplained finding; 1 an unexplained finding or a bad
exceptions file; 3 nothing could be audited and ``--require-audit`` was given.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
EXCEPTIONS = Path(__file__).with_name("audit_exceptions.toml")
PYPI = "https://pypi.org/pypi"


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...] = ()
    fixed_in: tuple[str, ...] = ()
    source: str = "pip-audit"

    def ids(self) -> set[str]:
        return {self.id, *self.aliases}


@dataclass
class Audit:
    pins: dict[str, str]
    audited_by: dict[str, str] = field(default_factory=dict)
    """Pin -> the source that audited it (``pip-audit`` or ``pypi-latest``)."""
    not_audited: dict[str, str] = field(default_factory=dict)
    """Pin -> why it could not be audited."""
    findings: list[Finding] = field(default_factory=list)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip()):
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def service_answers(base_url: str, pins: dict[str, str], timeout_s: float) -> str | None:
    """``None`` when PyPI's per-version JSON (pip-audit's service) answers for a pin, else why not.
    One request, so that a machine where it cannot answer does not wait for pip-audit's hundreds."""
    if not pins:
        return None
    name, version = next(iter(pins.items()))
    try:
        answer = requests.get(f"{base_url.rstrip('/')}/{name}/{version}/json", timeout=timeout_s)
    except requests.RequestException as error:
        return f"unreachable ({type(error).__name__})"
    return None if answer.status_code == 200 else f"HTTP {answer.status_code} for {name}=={version}"


def pip_audit(lock: Path, audit: Audit, timeout_s: float) -> None:
    """Step 1: pip-audit against PyPI's vulnerability service."""
    command = [sys.executable, "-m", "pip_audit", "-r", str(lock), "--no-deps", "--disable-pip"]
    command += ["--progress-spinner", "off", "--format", "json", "--timeout", "15"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        audit.not_audited.update(dict.fromkeys(audit.pins, f"pip-audit timed out after {timeout_s:.0f} s"))
        return
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:  # it crashes when the service is unreachable
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        audit.not_audited.update(dict.fromkeys(audit.pins, f"pip-audit failed: {last[:160]}"))
        return
    for dependency in report.get("dependencies", []):
        name = canonical(dependency["name"])
        if "skip_reason" in dependency:
            audit.not_audited[name] = f"pip-audit: {dependency['skip_reason']}"
            continue
        audit.audited_by[name] = "pip-audit"
        for vuln in dependency.get("vulns", []):
            aliases, fixed = tuple(vuln.get("aliases", [])), tuple(vuln.get("fix_versions", []))
            audit.findings.append(Finding(name, dependency["version"], vuln["id"], aliases, fixed))
    for name in audit.pins:
        if name not in audit.audited_by:
            audit.not_audited.setdefault(name, "pip-audit did not report it")


def _project(base_url: str, name: str, timeout_s: float) -> dict | str:
    try:
        answer = requests.get(f"{base_url.rstrip('/')}/{name}/json", timeout=timeout_s)
    except requests.RequestException as error:
        return f"unreachable: {type(error).__name__}"
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}"
    return answer.json()


def pypi_latest(audit: Audit, names: Iterable[str], base_url: str, timeout_s: float) -> None:
    """Step 2: the ``vulnerabilities`` of each project's latest release, for pins equal to it."""
    names = sorted(names)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(zip(names, pool.map(lambda n: _project(base_url, n, timeout_s), names), strict=True))
    for name, answer in answers.items():
        if isinstance(answer, str):
            audit.not_audited[name] += f"; PyPI project JSON {answer}"
            continue
        latest = answer.get("info", {}).get("version")
        if latest != audit.pins[name]:
            audit.not_audited[name] += f"; pinned {audit.pins[name]}, PyPI lists advisories for {latest} only"
            continue
        del audit.not_audited[name]
        audit.audited_by[name] = "pypi-latest"
        for vuln in answer.get("vulnerabilities") or []:
            if vuln.get("withdrawn"):
                continue
            audit.findings.append(Finding(name, latest, vuln["id"], tuple(vuln.get("aliases") or []),
                                          tuple(vuln.get("fixed_in") or []), "pypi-latest"))  # fmt: skip


def load_exceptions(path: Path, today: date) -> tuple[dict[str, dict], list[str]]:
    """``{advisory id: exception}`` and the problems of the file (no reason, expired)."""
    if not path.exists():
        return {}, []
    accepted, problems = {}, []
    for entry in tomllib.loads(path.read_text()).get("exception", []):
        key = entry.get("id", "?")
        if not str(entry.get("reason", "")).strip():
            problems.append(f"exception {key}: no reason given")
        until = entry.get("until")
        if not isinstance(until, date) or until < today:
            problems.append(f"exception {key}: `until` missing or past ({until})")
        accepted[key] = entry
    return accepted, problems


def report(audit: Audit, accepted: dict[str, dict], problems: list[str]) -> tuple[list[str], list[str]]:
    """The lines to print and the unexplained findings."""
    unexplained = []
    lines = []
    for finding in sorted(audit.findings, key=lambda f: (f.package, f.id)):
        known = next((accepted[i] for i in sorted(finding.ids()) if i in accepted), None)
        fix = f", fixed in {', '.join(finding.fixed_in)}" if finding.fixed_in else ""
        text = f"{finding.package}=={finding.version}: {finding.id}{fix} [{finding.source}]"
        if known:
            lines.append(f"accepted   {text}: {known['reason']} (until {known['until']})")
        else:
            unexplained.append(text)
    sources: dict[str, int] = {}
    for source in audit.audited_by.values():
        sources[source] = sources.get(source, 0) + 1
    total = len(audit.pins)
    by = ", ".join(f"{n} by {s}" for s, n in sorted(sources.items())) or "none"
    lines.append(f"dependency audit: {total} pins; audited {len(audit.audited_by)} ({by}); "
                 f"NOT audited {len(audit.not_audited)}; findings {len(audit.findings)}, "
                 f"unexplained {len(unexplained)}")  # fmt: skip
    if audit.not_audited:
        banner = "NOTHING WAS AUDITED" if not audit.audited_by else "PARTLY AUDITED"
        lines.append(f"dependency audit: {banner}: {len(audit.not_audited)} pins have no advisory data:")
        for name in sorted(audit.not_audited)[:15]:
            lines.append(f"  not audited: {name}=={audit.pins[name]} ({audit.not_audited[name]})")
        if len(audit.not_audited) > 15:
            lines.append(f"  ... and {len(audit.not_audited) - 15} more")
    lines += [f"bad exceptions file: {p}" for p in problems]
    return lines, unexplained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--exceptions", type=Path, default=EXCEPTIONS)
    parser.add_argument("--pypi-url", default=PYPI, help="PyPI's JSON API (tests point it at a local server)")
    parser.add_argument("--no-pip-audit", action="store_true", help="skip step 1")
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds for each step")
    parser.add_argument("--require-audit", action="store_true", help="exit 3 when nothing could be audited")
    args = parser.parse_args(argv)
    audit = Audit(pins=read_pins(args.lock))
    down = None if args.no_pip_audit else service_answers(args.pypi_url, audit.pins, 15.0)
    if args.no_pip_audit or down:
        why = f"pip-audit's service (PyPI per-version JSON): {down}" if down else "pip-audit not run"
        audit.not_audited.update(dict.fromkeys(audit.pins, why))
    else:
        pip_audit(args.lock, audit, args.timeout)
    if audit.not_audited:
        pypi_latest(audit, list(audit.not_audited), args.pypi_url, min(args.timeout, 15.0))
    accepted, problems = load_exceptions(args.exceptions, date.today())
    lines, unexplained = report(audit, accepted, problems)
    for line in lines:
        print(line, file=sys.stderr if "NOT" in line or "bad" in line else sys.stdout)
    for text in unexplained:
        print(f"VULNERABLE {text}: fix it, or explain it in {args.exceptions.name}", file=sys.stderr)
    if unexplained or problems:
        return 1
    return 3 if args.require_audit and not audit.audited_by else 0


if __name__ == "__main__":
    sys.exit(main())
