"""How long the dag-processor spends on each file in dags/, against an empty DAG file.

Warm parse: Airflow and the project's config are already imported (as in a long-lived
dag-processor) and each file is executed again, as the processor does on every refresh.
Run: ``python -m benchmarks.dag_parse`` (prints ms per file and the ratio to the baseline).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"
LIMIT_MS = 50.0

EMPTY_DAG = """
from datetime import datetime
from airflow.sdk import dag


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def empty():
    pass


empty()
"""


def _exec_file(path: Path, index: int) -> None:
    spec = importlib.util.spec_from_file_location(f"_airloop_parse_{path.stem}_{index}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def parse_ms(path: Path, repeats: int = 15) -> float:
    """Median wall time of executing the file, after one warm-up run."""
    _exec_file(path, -1)
    samples = []
    for i in range(repeats):
        start = time.perf_counter()
        _exec_file(path, i)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def dag_files() -> list[Path]:
    return sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


def measure(repeats: int = 15) -> tuple[float, dict[str, float]]:
    """(baseline ms, {file name: ms}) measured in this process, baseline first."""
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty_dag.py"
        empty.write_text(EMPTY_DAG)
        baseline = parse_ms(empty, repeats)
    return baseline, {p.name: parse_ms(p, repeats) for p in dag_files()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    baseline, times = measure(args.repeats)
    print(f"baseline (empty DAG file): {baseline:7.2f} ms")
    print(f"{'file':<28}{'ms':>9}{'x empty':>10}  verdict")
    worst = 0.0
    for name, ms in times.items():
        worst = max(worst, ms)
        verdict = "ok" if ms <= LIMIT_MS else f"OVER {LIMIT_MS:.0f} ms"
        print(f"{name:<28}{ms:9.2f}{ms / baseline:10.1f}  {verdict}")
    return 0 if worst <= LIMIT_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
