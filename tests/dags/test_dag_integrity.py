"""Every DAG file imports cleanly, declares what operators need, and parses fast and light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
HEAVY = [
    "pandas",
    "numpy",
    "pyarrow",
    "feast",
    "mlflow",
    "ray",
    "torch",
    "xgboost",
    "great_expectations",
    "evidently",
    "sklearn",
    "scipy",
]


@pytest.fixture(scope="module")
def dagbag(airloop_home_module):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(ROOT / "dags"))


@pytest.fixture(scope="module")
def airloop_home_module(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRLOOP_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    mp.undo()


def test_dag_folder_has_dags():
    assert DAG_FILES, "dags/ holds no DAG files"


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, "\n".join(f"{k}: {v}" for k, v in dagbag.import_errors.items())


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: f"dags/{p.name}")
def test_dag_declares_owner_retries_tags_docs(dagbag, path):
    dags = [d for d in dagbag.dags.values() if Path(d.fileloc).name == path.name]
    assert dags, f"{path.name} defines no DAG"
    for dag in dags:
        assert dag.tags, f"{dag.dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md.strip()) > 40, f"{dag.dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), f"{dag.dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} has no retries"


_PROBE = """
import json, runpy, sys
runpy.run_path(sys.argv[1])
print(json.dumps(sorted(m for m in sys.argv[2].split(",") if m in sys.modules)))
"""


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: f"dags/{p.name}")
def test_parsing_loads_no_heavy_library(path, tmp_path):
    """The dag-processor re-parses every file every few seconds: heavy imports belong in tasks."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**__import__("os").environ, "AIRLOOP_HOME": str(tmp_path)},
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"parsing {path.name} imported {loaded}"


def test_every_dag_file_parses_under_limit():
    from benchmarks.dag_parse import LIMIT_MS, measure

    baseline, times = measure(repeats=7)
    slow = {name: round(ms, 1) for name, ms in times.items() if ms > LIMIT_MS}
    assert not slow, f"over {LIMIT_MS} ms to parse (empty DAG: {baseline:.1f} ms): {slow}"


def _task_bodies(path: Path) -> list[ast.FunctionDef]:
    """The callables of a DAG file's tasks: functions nested in the ``@dag`` function."""
    tree = ast.parse(path.read_text())
    bodies = []
    for dag_fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        bodies += [n for n in ast.walk(dag_fn) if isinstance(n, ast.FunctionDef) and n is not dag_fn]
    return bodies


RULES = (ast.If, ast.For, ast.While, ast.Try, ast.Raise, ast.With, ast.IfExp, ast.ListComp, ast.DictComp)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: f"dags/{p.name}")
def test_dag_files_are_wiring_only(path):
    """A task's callable is one call into tasks/ (plus its import and the asset event's extra):
    a condition, a loop or a raise in it is a rule, and rules live in tasks/, tested without Airflow."""
    found = [
        f"{path.name}:{node.lineno} {fn.name}() has {type(node).__name__.lower()}"
        for fn in _task_bodies(path)
        for node in ast.walk(fn)
        if isinstance(node, RULES)
    ]
    assert not found, "rules in a DAG file (move them into tasks/):\n" + "\n".join(found)


def test_a_fresh_stack_starts_no_retrain_of_a_past_slot(dagbag):
    """The weekly retrain's first run is its next cron time after the DAG is first seen. With a
    start date in the past, Airflow fires last week's slot at once (catchup off still runs the
    latest one): on a fresh stack that run raced the first ingest and trained a second first
    model beside the one the demo asked for."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    now = datetime.now(UTC)
    dag = dagbag.dags["train"]
    first = coerce_to_core_timetable(dag.timetable).next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup),
    )
    assert first is not None and first.run_after > now, first
