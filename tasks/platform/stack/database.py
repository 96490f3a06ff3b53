"""The local stack's database: a PostgreSQL server the stack starts itself, or SQLite by choice.

``metadata_db.kind: postgres`` (the local default) runs ``postgres`` from the machine's binaries
(``PATH``, ``/usr/lib/postgresql/*/bin``) or, when there are none, from the ``pgserver`` wheel,
with its data under ``<airflow.home>/postgres/data``. It listens on a unix socket only (no TCP
port to collide on, nothing reachable from the network) and takes the user ``metadata_db.user``
with a password generated once into ``<airflow.home>/postgres/password`` (0600). Airflow's
metadata lives in one database and, when ``metadata_db.mlflow_database`` is set, MLflow's backend
store in another. As root (CI, containers) the server runs as the ``postgres`` user (``nobody``
when there is none), the only way PostgreSQL agrees to run.

``kind: sqlite`` keeps Airflow's metadata in ``<airflow.home>/airflow.db`` in WAL mode with a busy
timeout, so readers do not block the writer and a writer waits instead of failing at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from config import Settings

SOCKET_PORT = 5432
"""Names the socket file (``.s.PGSQL.5432``); nothing listens on TCP."""
MAX_SOCKET_DIR = 90
"""A unix socket path holds at most 107 bytes; deeper homes get their socket dir under /tmp."""


class DatabaseError(RuntimeError):
    """The database could not be prepared; the message says what to do."""


@dataclass(frozen=True)
class Layout:
    """Where the server's files are: ``root`` (ours), ``data`` and ``sockets`` (the server's)."""

    root: Path
    data: Path
    sockets: Path
    password_file: Path
    log: Path


def postgres_enabled(settings: Settings) -> bool:
    return settings.metadata_db.kind == "postgres"


def layout(settings: Settings) -> Layout:
    root = Path(settings.airflow.home) / "postgres"
    sockets = root / "run"
    if len(str(sockets)) > MAX_SOCKET_DIR:
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
        sockets = Path(tempfile.gettempdir()) / f"airloop-pg-{digest}"
    return Layout(root, root / "data", sockets, root / "password", root / "initdb.log")


def _has_server(folder: Path) -> bool:
    return (folder / "postgres").is_file() and (folder / "initdb").is_file()


def _pgserver_bin() -> Path | None:
    """The ``pgserver`` wheel's binaries, found without importing it (its import starts nothing,
    but it pulls in more than we need)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "pginstall" / "bin"
    return folder if _has_server(folder) else None


def binaries(settings: Settings) -> Path:
    """The folder holding ``initdb`` and ``postgres``: configured, the machine's, else pgserver's."""
    configured = settings.metadata_db.binaries
    if configured:
        folder = Path(configured).expanduser()
        if not _has_server(folder):
            raise DatabaseError(f"metadata_db.binaries={folder} has no initdb and postgres")
        return folder
    candidates: list[Path] = []
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major_of_path, reverse=True)
    wheel = _pgserver_bin()
    candidates += [wheel] if wheel else []
    for folder in candidates:
        if _has_server(folder):
            return folder
    raise DatabaseError(
        "no PostgreSQL server binaries: install PostgreSQL (initdb, postgres), or the embedded "
        "server (pip install pgserver==0.1.4), or choose SQLite: AIRLOOP__METADATA_DB__KIND=sqlite"
    )


def _major_of_path(folder: Path) -> int:
    name = folder.parent.name
    return int(name) if name.isdigit() else 0


def server_major(folder: Path) -> int:
    """The server's major version (``postgres --version``: "postgres (PostgreSQL) 15.18 ...")."""
    out = subprocess.run(
        [str(folder / "postgres"), "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise DatabaseError(f"cannot read the version of {folder / 'postgres'}: {out!r}")
    return int(match.group(1))


def run_as(settings: Settings) -> str | None:
    """The system user the server runs as: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise DatabaseError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


def dropped_to(user: str | None) -> dict[str, Any]:
    """``subprocess`` arguments that run a child as ``user`` with that user's group and no other
    (keeping root's group would put root-only folders' group bits in its way)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def password(settings: Settings) -> str:
    """The server password, generated once per home (0600, readers never see half of it)."""
    path = layout(settings).password_file
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(24)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    tmp.replace(path)
    return value


def sqlalchemy_url(settings: Settings, database: str) -> str:
    """``postgresql+psycopg://user:password@/database?host=<socket dir>`` (psycopg 3; sync and async)."""
    db = settings.metadata_db
    return f"postgresql+psycopg://{db.user}:{password(settings)}@/{database}?host={layout(settings).sockets}"


def airflow_conn(settings: Settings) -> dict[str, str]:
    """Airflow's ``[database]`` connection variables for the configured kind."""
    db = settings.metadata_db
    name = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
    if db.kind == "postgres":
        url = sqlalchemy_url(settings, db.airflow_database)
        return {name: url, f"{name}_ASYNC": url}
    if db.kind == "sqlite":
        path = Path(settings.airflow.home) / "airflow.db"
        timeout = f"timeout={db.sqlite_busy_timeout_s:g}"
        return {name: f"sqlite:///{path}?{timeout}", f"{name}_ASYNC": f"sqlite+aiosqlite:///{path}?{timeout}"}
    return {}


def mlflow_on_stack_database(settings: Settings) -> bool:
    """Whether MLflow keeps its runs in a database on the stack's PostgreSQL."""
    db = settings.metadata_db
    return db.kind == "postgres" and bool(db.mlflow_database)


def mlflow_backend(settings: Settings) -> str:
    """MLflow's backend store: a database on the stack's server, or ``mlflow.backend_store_uri``."""
    db = settings.metadata_db
    if mlflow_on_stack_database(settings) and db.mlflow_database:
        return sqlalchemy_url(settings, db.mlflow_database)
    return settings.mlflow.backend_store_uri


def describe(settings: Settings) -> str:
    """Where the metadata lives, in words (for progress lines; no password)."""
    db = settings.metadata_db
    if db.kind == "postgres":
        where = layout(settings)
        return f"PostgreSQL {db.airflow_database} on {where.sockets} (data {where.data})"
    if db.kind == "sqlite":
        return f"SQLite {Path(settings.airflow.home) / 'airflow.db'} (WAL)"
    return "external"


def use_wal(settings: Settings) -> None:
    """Put the SQLite metadata file in WAL mode (persistent in the file; after ``db migrate``)."""
    path = Path(settings.airflow.home) / "airflow.db"
    if settings.metadata_db.kind == "sqlite" and path.exists():
        with contextlib.closing(
            sqlite3.connect(path, timeout=settings.metadata_db.sqlite_busy_timeout_s)
        ) as c:
            c.execute("PRAGMA journal_mode=WAL")


def connect(
    settings: Settings, database: str = "postgres", timeout: float = 5.0
) -> psycopg.Connection[object]:
    db = settings.metadata_db
    return psycopg.connect(
        host=str(layout(settings).sockets),
        port=SOCKET_PORT,
        user=db.user,
        password=password(settings),
        dbname=database,
        connect_timeout=max(1, int(timeout)),
        autocommit=True,
    )


def answers(settings: Settings) -> bool:
    """Whether the server accepts our login and answers a query (the service's readiness)."""
    try:
        with connect(settings, timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def ensure_databases(settings: Settings) -> list[str]:
    """Create Airflow's (and MLflow's) database when missing; the names created."""
    db = settings.metadata_db
    wanted = [name for name in (db.airflow_database, db.mlflow_database) if name]
    created = []
    with connect(settings) as conn:
        for name in wanted:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
                created.append(name)
    return created
