"""The monitor's command line answers ``--help`` at once: the heavy stack loads only to run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("pandas", "pyarrow", "evidently", "mlflow", "sklearn")


def test_help_answers_without_loading_the_heavy_stack():
    probe = (
        "import contextlib, io, json, sys\n"
        "from tasks.monitoring import cli\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        f"print(json.dumps([out.getvalue(), sorted(m for m in {HEAVY!r} if m in sys.modules)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    usage, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert usage.startswith("usage: python -m tasks.monitoring.cli") and "--decide" in usage
    assert loaded == []


def test_the_package_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "tasks.monitoring", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0 and "--start" in done.stdout and "--end" in done.stdout
