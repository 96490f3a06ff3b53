"""The write-ahead inference log on its own (no Ray): group commit, a writer process killed with
``kill -9`` mid-stream (every acknowledged prediction compacted exactly once by whoever adopts
its directory), compaction repeated after a crash, torn records, and a disk that refuses writes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from config import PROJECT_ROOT
from tasks.serving import compaction, inference_log, logfiles
from tasks.serving.compaction import PREDICTION
from tasks.serving.durable_log import DurableInferenceLog
from tasks.serving.wal import WalUnavailable, WriteAheadLog
from tasks.serving.wal_format import read_segment, segments
from tests.serving.faults import WalDisk


def _row(i: int, prefix: str = "r") -> dict:
    return {
        "request_id": [f"{prefix}{i}"],
        "timestamp": pd.Timestamp.now(tz="UTC"),
        "route": ["champion"],
        "score": [0.25],
        "customer_id": [i],
        "traffic": ["synthetic"],
    }


def _logged(settings) -> pd.DataFrame:
    return inference_log.read_predictions(settings, "2000-01-01", "2100-01-01", labels=False)


def test_concurrent_predictions_share_fsyncs_and_are_on_disk_when_acknowledged(settings):
    log = DurableInferenceLog(settings, writer_id="group")
    seen_on_disk: list[int] = []

    async def main() -> None:
        futures = [log.predictions(_row(i), 1) for i in range(300)]
        await asyncio.gather(*futures)
        records = sum(len(read_segment(p).records) for p in segments(log.wal.directory))
        seen_on_disk.append(records)

    asyncio.run(main())
    assert seen_on_disk == [300], "every acknowledged record was in a segment file"
    assert log.wal.stats.syncs < 300 / 4, f"{log.wal.stats.syncs} fsyncs for 300 concurrent records"
    log.flush()
    frame = _logged(settings)
    assert len(frame) == 300 and frame["request_id"].is_unique
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]" and set(frame["traffic"]) == {"synthetic"}
    log.close()


WRITER = """
import asyncio, sys, pandas as pd
from config import read_config
from tasks.serving.durable_log import DurableInferenceLog
env = {"AIRLOOP_HOME": sys.argv[1], "AIRLOOP__SERVING__INFERENCE_LOG__FLUSH_ROWS": "50"}
settings = read_config("local", env)
log = DurableInferenceLog(settings, writer_id="doomed")
async def main():
    i = 0
    while True:
        row = {"request_id": [f"k{i}"], "timestamp": pd.Timestamp.now(tz="UTC"), "score": [0.5]}
        await log.predictions(row, 1)
        print(f"k{i}", flush=True)  # acknowledged: the client got its answer
        i += 1
asyncio.run(main())
"""


def test_kill_9_of_a_writer_loses_no_acknowledged_prediction_and_duplicates_none(settings, tmp_path):
    home = settings.storage.data_uri.removeprefix("file://").removesuffix("/data")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, home], stdout=subprocess.PIPE, text=True, env=env, cwd=PROJECT_ROOT
    )
    acked: list[str] = []
    out = proc.stdout
    assert out is not None
    reader = threading.Thread(target=lambda: acked.extend(line.strip() for line in out))
    reader.start()
    deadline = time.monotonic() + 120
    while len(acked) < 400 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: its compaction thread may be mid-file too
    proc.wait()
    reader.join()
    assert len(acked) >= 400
    root = logfiles.wal_root(settings)
    assert (root / "doomed").exists(), "the dead writer left its directory"

    survivor = DurableInferenceLog(settings, writer_id="survivor")  # adopts on start
    deadline = time.monotonic() + 30
    while (root / "doomed").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (root / "doomed").exists()
    frame = _logged(settings)
    assert set(acked) <= set(frame["request_id"]), "every acknowledged prediction is in the log"
    assert frame["request_id"].is_unique, "and none twice"
    assert survivor.stats()["rows_replayed"] > 0, "the dead writer's last segments were replayed"
    survivor.close()


def test_compaction_repeated_after_a_crash_writes_the_same_files(settings):
    wal = WriteAheadLog(logfiles.wal_root(settings) / "w1")
    for i in range(10):
        wal.write_blocking(PREDICTION, {"n": 1, "columns": _row(i)}, 1)
    wal.seal()
    (segment,) = wal.sealed()
    copy = segment.read_bytes()
    first = compaction.compact_segment(settings, segment, "w1")
    segment.write_bytes(copy)  # the process died after writing Parquet, before deleting the segment
    again = compaction.compact_segment(settings, segment, "w1")
    assert first.files == again.files and first.predictions == again.predictions == 10
    frame = _logged(settings)
    assert len(frame) == 10 and frame["request_id"].is_unique
    wal.close()


def test_a_torn_last_record_is_skipped_and_the_rest_kept(settings):
    wal = WriteAheadLog(logfiles.wal_root(settings) / "w2")
    for i in range(3):
        wal.write_blocking(PREDICTION, {"n": 1, "columns": _row(i)}, 1)
    wal.seal()
    wal.close()
    (segment,) = segments(wal.directory)
    data = segment.read_bytes()
    segment.write_bytes(data + data[:40])  # a header and part of a payload: cut by kill -9
    read = read_segment(segment)
    assert len(read.records) == 3 and read.torn_bytes == 40
    assert json.loads(json.dumps(read.records[0][1]))["columns"]["request_id"] == ["r0"]
    done = compaction.adopt_dead(settings, logfiles.wal_root(settings))
    assert done.predictions == 3 and not wal.directory.exists()


def test_a_live_writers_directory_is_never_adopted(settings):
    live = DurableInferenceLog(settings, writer_id="alive")

    async def one() -> None:
        await live.predictions(_row(1), 1)

    asyncio.run(one())
    done = compaction.adopt_dead(settings, logfiles.wal_root(settings))
    assert done.segments == 0 and live.wal.directory.exists()
    live.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_a_read_only_disk_fails_the_write_says_so_and_recovers(settings, tmp_path):
    disk = WalDisk(tmp_path / "waldisk", size_mb=8)
    assert disk.mounted, "tmpfs mount failed"
    try:
        cfg = settings.serving.model_copy(
            update={
                "inference_log": settings.serving.inference_log.model_copy(update={"wal_dir": str(disk.path)})
            }
        )
        log = DurableInferenceLog(settings.model_copy(update={"serving": cfg}), writer_id="ro")

        async def write(i: int) -> None:
            await log.predictions(_row(i), 1)

        asyncio.run(write(0))
        log.wal.seal()  # no segment open: the kernel lets the disk go read-only
        assert disk.remount(read_only=True).returncode == 0
        with pytest.raises(WalUnavailable, match="Read-only file system"):
            asyncio.run(write(1))
        assert "not writable" in (log.problem or "") and log.probe()
        assert log.stats()["wal_failed_records"] == 1
        assert disk.remount(read_only=False).returncode == 0
        assert log.probe() is None
        asyncio.run(write(2))
        log.flush()
        assert set(_logged(log.settings)["request_id"]) == {"r0", "r2"}
        log.close()
    finally:
        disk.remount(read_only=False)
        disk.release()


def test_a_record_that_cannot_be_encoded_fails_alone_and_the_writer_lives_on(settings):
    """A datetime outside what the log encodes (year 624: an OverflowError, not a ValueError)
    once killed the writer thread, and every later prediction waited for an answer forever."""
    from datetime import UTC, datetime

    log = DurableInferenceLog(settings, writer_id="poison")

    async def main() -> list[object]:
        bad = {**_row(0), "timestamp": [datetime(624, 10, 13, tzinfo=UTC)]}
        return await asyncio.wait_for(
            asyncio.gather(log.predictions(bad, 1), log.predictions(_row(1), 1), return_exceptions=True),
            timeout=10,
        )

    first, second = asyncio.run(main())
    assert isinstance(first, WalUnavailable) and "not loggable" in str(first), first
    assert second is None

    async def later() -> None:
        await asyncio.wait_for(log.predictions(_row(2), 1), timeout=10)

    asyncio.run(later())
    assert log.wal._thread.is_alive()
    log.flush()
    assert sorted(_logged(settings)["request_id"]) == ["r1", "r2"]
    log.close()
