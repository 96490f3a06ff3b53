"""The stack's PostgreSQL server: its data folder made once (``initdb``), and its command line.

``prepare`` is idempotent: a data folder that exists is reused (a second ``airloop up`` keeps
every run and model), one made by another major version is refused with what to do. As root,
the folders the server writes belong to the user it runs as, and the folders above them get
the search bit (``o+x``) the server needs to reach them, nothing more.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from pathlib import Path

from config import Settings
from tasks.platform.stack.database import (
    SOCKET_PORT,
    DatabaseError,
    Layout,
    binaries,
    dropped_to,
    layout,
    password,
    run_as,
    server_major,
)

INITDB_TIMEOUT_S = 120.0


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _searchable(path: Path) -> None:
    """Give every folder above ``path`` the search bit for others, so the server's user reaches
    it (root-owned temporary folders are 0700)."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def _folders(where: Layout, user: str | None) -> None:
    where.root.mkdir(parents=True, exist_ok=True)
    where.root.chmod(0o711 if user else 0o700)
    for folder in (where.data, where.sockets):
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)
        _chown(folder, user)
    if user:
        _searchable(where.root)
        _searchable(where.sockets.parent)


def _initdb(settings: Settings, where: Layout, folder: Path, user: str | None) -> None:
    """A new cluster: our user with the generated password, scram-sha-256 for every login."""
    pwfile = where.data.parent / ".pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password(settings) + "\n")
    _chown(pwfile, user)
    command = [
        str(folder / "initdb"),
        "-D",
        str(where.data),
        "-U",
        settings.metadata_db.user,
        f"--pwfile={pwfile}",
        "--auth=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-instructions",
    ]
    try:
        with where.log.open("wb") as log:
            done = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=INITDB_TIMEOUT_S,
                check=False,
                **dropped_to(user),
            )
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        tail = where.log.read_text(errors="replace")[-2000:]
        raise DatabaseError(f"initdb failed (exit {done.returncode}); {where.log}:\n{tail}")


def _clear_stale_lock(lock: Path) -> None:
    """Remove a lock file (``postmaster.pid``, the socket's ``.lock``) left by a server that died
    (killed): its pid is gone or a zombie nobody has collected yet, which PostgreSQL would take
    for a server still running."""
    try:
        pid = int(lock.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        state = "gone"
    if state in ("gone", "Z"):
        lock.unlink(missing_ok=True)


def prepare(settings: Settings) -> Path:
    """The data folder ready for ``postgres`` (made once); the binaries' folder."""
    folder = binaries(settings)
    where = layout(settings)
    user = run_as(settings)
    _folders(where, user)
    version = where.data / "PG_VERSION"
    if version.exists():
        made_by, ours = int(version.read_text().strip()), server_major(folder)
        if made_by != ours:
            raise DatabaseError(
                f"{where.data} was made by PostgreSQL {made_by} but the server found is {ours} "
                f"({folder}); set metadata_db.binaries to a PostgreSQL {made_by}, or remove "
                f"{where.root} to start afresh (Airflow's history and, when shared, MLflow's "
                "registry go with it)"
            )
        _clear_stale_lock(where.data / "postmaster.pid")
        _clear_stale_lock(where.sockets / f".s.PGSQL.{SOCKET_PORT}.lock")
        return folder
    _initdb(settings, where, folder, user)
    return folder


def server_command(settings: Settings) -> list[str]:
    """``postgres`` in the foreground: unix socket only, small memory, logs to stderr (the service
    log). Prepares the data folder first."""
    folder = prepare(settings)
    where = layout(settings)
    db = settings.metadata_db
    options = {
        "listen_addresses": "",
        "unix_socket_directories": str(where.sockets),
        "unix_socket_permissions": "0700",
        "port": str(SOCKET_PORT),
        "shared_buffers": db.shared_buffers,
        "max_connections": str(db.max_connections),
        "log_checkpoints": "off",
        "logging_collector": "off",
    }
    command = [str(folder / "postgres"), "-D", str(where.data)]
    for key, value in options.items():
        command += ["-c", f"{key}={value}"]
    return command
