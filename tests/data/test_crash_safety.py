"""Crashes while a batch is ingested: a retry finishes the work, reports what the first attempt
decided (so the run still posts the curated asset event), and never duplicates a row; a file
being written is never seen half-written where readers look.

Before the journal, a retry after a crash between writing the curated files and archiving the
landed file found the batch's manifest, took the file for a repeat delivery ("duplicate", 0 rows
added), and the run's publish step skipped the curated event: the features DAG never heard of
the batch. Crashes are injected for real: an exception raised between the two steps, and a
process killed with SIGKILL there (and in the middle of writing a Parquet file).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from config import PROJECT_ROOT
from tasks.common import storage
from tasks.ingest import batches, curated, landing
from tasks.ingest.batches import ingest_batch
from tasks.ingest.curated import curated_row_count, read_curated
from tasks.ingest.run_summary import curated_event_extra
from tasks.platform import simulate

ROWS = 300


def _land(settings, index: int = 0, name: str = "batch.parquet") -> str:
    df = simulate.generate_batch(settings, "stable", index=index, rows=ROWS)
    return simulate.write_batch(df, settings.storage.landing_uri, name)


class Crash(Exception):
    pass


def _crash_once(monkeypatch, module, name: str) -> None:
    original = getattr(module, name)
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise Crash(f"crash in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, crashing)


def _retry_reports_the_batch(settings, uri: str) -> None:
    result = ingest_batch(uri, settings)
    assert result.status == "ingested" and result.rows_added == ROWS, result
    assert curated_event_extra(settings, [result.as_dict()])["rows_added"] == ROWS  # the event is posted
    assert curated_row_count(settings) == ROWS and read_curated(settings)["transaction_id"].is_unique
    assert not storage.exists(uri) and storage.exists(result.location)
    manifest = curated.read_manifest(settings, result.batch_id)
    assert manifest is not None and manifest.archived
    rerun = ingest_batch(uri, settings)
    assert rerun.status == "already_processed" and rerun.rows_added == 0


@pytest.mark.parametrize(
    ("module", "step"),
    [
        (landing, "move_landed"),  # curated and noted, not archived
        (landing, "remember"),  # curated, nothing noted or archived
        (batches, "_settle"),  # archived, the move not noted
    ],
)
def test_a_retry_after_a_crash_between_curating_and_archiving_still_reports_the_rows(
    settings, monkeypatch, module, step
):
    uri = _land(settings)
    _crash_once(monkeypatch, module, step)
    with pytest.raises(Crash):
        ingest_batch(uri, settings)
    assert curated_row_count(settings) == ROWS  # the first attempt curated the rows
    _retry_reports_the_batch(settings, uri)


def _killed_in(settings, patch: str, call: str) -> subprocess.CompletedProcess:
    """Run ``call`` in a child process whose ``patch`` target kills it with SIGKILL."""
    code = "\n".join(
        ["import os, signal", "from config import load_config", patch, "settings = load_config()", call]
    )
    env = {**os.environ, "AIRLOOP_HOME": settings.home, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=120, check=False
    )


def test_a_process_killed_between_curating_and_archiving_is_finished_by_the_retry(settings):
    uri = _land(settings)
    killed = _killed_in(
        settings,
        "import tasks.ingest.landing as landing\n"
        "landing.move_landed = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)",
        f"from tasks.ingest.batches import ingest_batch; ingest_batch({uri!r}, settings)",
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert storage.exists(uri) and curated_row_count(settings) == ROWS
    _retry_reports_the_batch(settings, uri)


def test_a_process_killed_while_writing_a_parquet_file_leaves_nothing_where_readers_look(settings):
    first = _land(settings, 0, "first.parquet")
    assert ingest_batch(first, settings).rows_added == ROWS
    second = _land(settings, 1, "second.parquet")
    killed = _killed_in(
        settings,
        "import os as _os\nos.fsync = lambda fd: _os.kill(_os.getpid(), signal.SIGKILL)",
        f"from tasks.ingest.batches import ingest_batch; ingest_batch({second!r}, settings)",
    )
    assert killed.returncode == -signal.SIGKILL
    leftovers = [p for p in _walk(storage.filesystem(settings.storage.curated_uri)[1]) if p.endswith(".tmp")]
    assert leftovers, "the child was killed before it renamed its temporary file"
    assert all(os.path.basename(p).startswith(".") for p in leftovers)
    # readers see the first batch only, and whole
    assert curated_row_count(settings) == ROWS and len(read_curated(settings)) == ROWS
    retry = ingest_batch(second, settings)
    assert retry.status == "ingested" and retry.rows_added == ROWS
    assert curated_row_count(settings) == 2 * ROWS


def _walk(root: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary_copy(settings, monkeypatch, tmp_path):
    target = (tmp_path / "out" / "x.parquet").as_uri()

    def refuse(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        curated.write_atomically(target, b"PAR1 data PAR1")
    assert os.listdir(tmp_path / "out") == []
