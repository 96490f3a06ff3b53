"""The local stack's metadata database (``tasks.platform.stack.database``/``postgres``) and the
stack's plumbing that needs no Airflow: stop order, memory of process trees.

PostgreSQL runs from the machine's binaries, started and stopped through ``stack.start``/``stop``
like ``airloop up``/``down`` do, in a temporary home.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from config import read_config
from tasks.platform import stack
from tasks.platform.stack import database, memory
from tasks.platform.stack.postgres import prepare
from tasks.platform.stack.stopping import stop_waves


@pytest.fixture
def home_settings(monkeypatch):
    """A home outside pytest's base temp: as root the server runs as ``postgres``, which must
    reach its folders, and every pytest session on the machine resets that base to 0700."""
    home = Path(tempfile.mkdtemp(prefix="airloop-platform-"))
    monkeypatch.setenv("AIRLOOP_HOME", str(home))
    for name in [k for k in os.environ if k.startswith("AIRLOOP__")]:
        monkeypatch.delenv(name)
    yield read_config("local")
    shutil.rmtree(home, ignore_errors=True)


def _server_pids(settings) -> list[int]:
    data = str(database.layout(settings).data)
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if data in text and "postgres" in text:
            found.append(int(cmdline.parent.name))
    return found


def test_postgres_starts_on_a_private_socket_keeps_its_data_and_stops(home_settings):
    settings = home_settings
    pids = stack.start(settings, services=[stack.POSTGRES], quiet=True)
    try:
        assert set(pids) == {"postgres"}
        where = database.layout(settings)
        assert stat.S_IMODE(where.password_file.stat().st_mode) == 0o600
        with database.connect(settings) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)  # no TCP at all
            names = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        assert {"airflow", "mlflow"} <= names
        with database.connect(settings, "airflow") as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host=str(where.sockets), user="airloop", password="wrong", dbname="airflow")
        status = stack.status(settings, services=[stack.POSTGRES])["services"]["postgres"]
        assert status["health"] == "healthy" and status["rss"] > 0 and status["processes"] >= 3
    finally:
        stopped = stack.stop(settings, services=[stack.POSTGRES], quiet=True)
    assert stopped == ["postgres"]
    assert not _server_pids(settings)
    assert not database.answers(settings)

    # a second start reuses the data (what a second `airloop up` does)
    stack.start(settings, services=[stack.POSTGRES], quiet=True)
    try:
        with database.connect(settings, "airflow") as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(7,)]
    finally:
        stack.stop(settings, services=[stack.POSTGRES], quiet=True)


def test_a_killed_server_is_restarted_by_the_next_start(home_settings):
    settings = home_settings
    first = stack.start(settings, services=[stack.POSTGRES], quiet=True)["postgres"]
    try:
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while stack.service_pid(settings, stack.POSTGRES) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        again = stack.start(settings, services=[stack.POSTGRES], quiet=True)["postgres"]
        assert again != first and database.answers(settings)
    finally:
        stack.stop(settings, services=[stack.POSTGRES], quiet=True)
    assert not _server_pids(settings)


def test_connection_settings_per_kind(home_settings, monkeypatch):
    settings = home_settings
    env = stack.airflow_vars(settings)
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert url.startswith("postgresql+psycopg://airloop:") and url.endswith(
        f"/airflow?host={database.layout(settings).sockets}"
    )
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == url  # psycopg 3 does both
    assert database.mlflow_backend(settings).endswith(f"/mlflow?host={database.layout(settings).sockets}")

    monkeypatch.setenv("AIRLOOP__METADATA_DB__KIND", "sqlite")
    lite = read_config("local")
    env = stack.airflow_vars(lite)
    path = Path(lite.airflow.home) / "airflow.db"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{path}?timeout=30"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == f"sqlite+aiosqlite:///{path}?timeout=30"
    assert database.mlflow_backend(lite) == lite.mlflow.backend_store_uri
    assert stack.POSTGRES not in stack.services.enabled(lite, stack.SERVICES)
    path.parent.mkdir(parents=True, exist_ok=True)
    import sqlite3

    sqlite3.connect(path).close()
    database.use_wal(lite)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_data_made_by_another_major_version_is_refused(home_settings):
    settings = home_settings
    prepare(settings)
    version = database.layout(settings).data / "PG_VERSION"
    version.write_text("9\n")
    with pytest.raises(database.DatabaseError, match="made by PostgreSQL 9"):
        prepare(settings)
    with pytest.raises(stack.StackError, match="made by PostgreSQL 9"):
        stack.start(settings, services=[stack.POSTGRES], quiet=True)


def test_missing_binaries_say_what_to_do(home_settings, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRLOOP__METADATA_DB__BINARIES", str(tmp_path))
    with pytest.raises(database.DatabaseError, match="has no initdb and postgres"):
        database.binaries(read_config("local"))
    monkeypatch.delenv("AIRLOOP__METADATA_DB__BINARIES")
    monkeypatch.setattr(database.shutil, "which", lambda name: None)
    monkeypatch.setattr(database, "Path", _NoSystemPostgres)
    monkeypatch.setattr(database, "_pgserver_bin", lambda: None)
    with pytest.raises(database.DatabaseError, match=r"pgserver==0\.1\.4.*KIND=sqlite"):
        database.binaries(read_config("local"))


class _NoSystemPostgres(type(Path())):  # type: ignore[misc]
    def glob(self, pattern):  # /usr/lib/postgresql/*/bin finds nothing
        return iter(())


def test_a_long_home_puts_the_socket_under_tmp(tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    monkeypatch.setenv("AIRLOOP_HOME", str(deep))
    sockets = database.layout(read_config("local")).sockets
    assert len(str(sockets / ".s.PGSQL.5432")) < 107
    assert sockets.parent == Path(os.environ.get("TMPDIR", "/tmp"))


def test_stop_order_goes_from_dependents_to_the_database():
    waves = stop_waves(stack.LOOP, [s.name for s in stack.LOOP])
    flat = [name for wave in waves for name in wave]
    assert waves[-1] == ["postgres"]
    assert flat.index("scheduler") < flat.index("api-server") < flat.index("postgres")
    assert flat.index("mlflow") < flat.index("postgres")
    assert {"scheduler", "triggerer", "dag-processor", "serve", "mlflow"} <= set(waves[0])


def test_memory_counts_a_whole_process_tree():
    code = (
        "import subprocess, sys, time\n"
        "hold = 'b = bytearray(60 * 2**20); import time; time.sleep(60)'\n"
        "kid = subprocess.Popen([sys.executable, '-c', hold])\n"
        "print('ready', flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            used = memory.usage(parent.pid)
            if used.processes == 2 and used.rss > 60 * 2**20:
                break
            time.sleep(0.1)
        assert used.processes == 2
        assert used.rss > 60 * 2**20 and 0 < used.pss <= used.rss
        both = memory.by_service({"a": parent.pid, "b": parent.pid})
        assert both["b"].processes == 0  # a process is counted once
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert memory.usage(parent.pid).processes == 0


def test_mlflow_starts_the_database_only_when_it_keeps_its_runs_there(tmp_path, monkeypatch):
    from tasks.platform.stack.control import _enabled

    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    on_postgres = read_config("local", {"AIRLOOP_HOME": str(tmp_path)})
    on_a_file = read_config(
        "local", {"AIRLOOP_HOME": str(tmp_path), "AIRLOOP__METADATA_DB__MLFLOW_DATABASE": "null"}
    )
    assert [s.name for s in _enabled(on_postgres, [stack.MLFLOW])] == ["postgres", "mlflow"]
    # a server nobody would stop: `stop` of MLflow alone left it running after the serving tests
    assert [s.name for s in _enabled(on_a_file, [stack.MLFLOW])] == ["mlflow"]


def test_the_services_get_the_home_their_settings_resolved(home_settings, monkeypatch, tmp_path):
    """``airloop up`` after a crash, from a shell whose AIRLOOP_HOME differs (or is unset): the
    restarted scheduler's tasks must read and write the stack's data dir, not the caller's."""
    settings = home_settings
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path / "elsewhere"))
    assert stack.airflow_vars(settings)["AIRLOOP_HOME"] == settings.home != str(tmp_path / "elsewhere")
