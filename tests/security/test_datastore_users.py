"""The production stack's database and Redis users, for real: ``deploy/postgres/10-airloop-roles.sh``
against a Postgres started here with password authentication, and ``deploy/redis/start.sh``
starting a Redis here. Each component's user can do its job and nothing of the others'."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from config import read_config
from tasks.common.net import free_port
from tests.services import _as_postgres_user, _binary, wait_until

ROOT = Path(__file__).resolve().parents[2]
ROLES_SCRIPT = ROOT / "deploy" / "postgres" / "10-airloop-roles.sh"
REDIS_SCRIPT = ROOT / "deploy" / "redis" / "start.sh"
SUPERUSER_PASSWORD = "superuser-test-password-0123"
ROLE_PASSWORDS = {
    "AIRFLOW_DB_PASSWORD": "airflow-test-password-0123",
    "MLFLOW_DB_PASSWORD": "mlflow-test-password-0123",
    "FEAST_DB_PASSWORD": "feast-test-password-0123",
}


@pytest.fixture(scope="module")
def postgres_with_passwords():
    """A Postgres that checks passwords on TCP (scram-sha-256), as the postgres image does."""
    root = Path(tempfile.mkdtemp(prefix="airloop-pg-roles-"))
    data, sockets, pwfile = root / "data", root / "sock", root / "pw"
    sockets.mkdir()
    pwfile.write_text(SUPERUSER_PASSWORD)
    if os.geteuid() == 0:
        for path in (root, sockets, pwfile):
            shutil.chown(path, "postgres")
    sudo = _as_postgres_user()
    initdb = [_binary("initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile), "-E", "UTF8"]
    initdb += ["--auth-local=trust", "--auth-host=scram-sha-256"]
    subprocess.run([*sudo, *initdb], check=True, capture_output=True)
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [_binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
    subprocess.run([*sudo, *pg_ctl], check=True, capture_output=True)
    try:
        yield port
    finally:
        stop = [_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run([*sudo, *stop], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def run_roles_script(port: int, **passwords: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **ROLE_PASSWORDS,
        **passwords,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(port),
        "PGUSER": "postgres",
        "PGPASSWORD": SUPERUSER_PASSWORD,
    }
    env.pop("POSTGRES_USER", None)
    return subprocess.run(
        ["sh", str(ROLES_SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def connect(port: int, role: str, password: str, database: str):
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=port, user=role, password=password, dbname=database)


def test_each_role_reaches_only_its_own_databases(postgres_with_passwords):
    import psycopg

    port = postgres_with_passwords
    done = run_roles_script(port)
    assert done.returncode == 0, done.stderr
    assert "role mlflow owns mlflow mlflow_auth" in done.stdout
    owners = {"airflow": ["airflow"], "mlflow": ["mlflow", "mlflow_auth"], "feast": ["feast"]}
    for role, databases in owners.items():
        password = ROLE_PASSWORDS[f"{role.upper()}_DB_PASSWORD"]
        for database in ("airflow", "mlflow", "mlflow_auth", "feast"):
            if database in databases:
                with connect(port, role, password, database) as conn:
                    conn.execute("CREATE TABLE probe (x int)")  # owns it: may create its schema
                    conn.execute("DROP TABLE probe")
                    superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                    assert superuser.fetchone() == (False,)
            else:
                with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                    connect(port, role, password, database).close()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(port, role, "wrong-password-0123", databases[0]).close()


def test_a_second_run_changes_nothing_but_the_passwords_it_is_given(postgres_with_passwords):
    import psycopg

    port = postgres_with_passwords
    assert run_roles_script(port).returncode == 0
    rotated = "feast-rotated-password-0123"
    done = run_roles_script(port, FEAST_DB_PASSWORD=rotated)
    assert done.returncode == 0, done.stderr
    connect(port, "feast", rotated, "feast").close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(port, "feast", ROLE_PASSWORDS["FEAST_DB_PASSWORD"], "feast").close()
    missing = run_roles_script(port, MLFLOW_DB_PASSWORD="")
    assert missing.returncode != 0 and "MLFLOW_DB_PASSWORD" in missing.stderr


@pytest.fixture
def redis_with_users(tmp_path):
    import redis

    port = free_port()
    env = {
        **os.environ,
        "REDIS_PASSWORD": "redis-default-password-0123",
        "REDIS_SERVING_PASSWORD": "redis-serving-0123",
    }
    args = [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(tmp_path),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    proc = subprocess.Popen(
        ["sh", str(REDIS_SCRIPT), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: redis.Redis(port=port, password=env["REDIS_PASSWORD"]).ping(), 20, "Redis")
        yield port, env
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def feast_client(connection_string: str):
    """A client built from a connection string the way Feast 0.67's Redis online store reads it
    (``RedisOnlineStore._parse_connection_string``: ``host:port`` then ``key=value`` pairs; not
    imported here, Feast takes 10 to 40 s to import)."""
    import redis

    parts = connection_string.split(",")
    host, port = parts[0].split(":")
    kwargs = dict(part.split("=", 1) for part in parts[1:])
    return redis.Redis(host=host, port=int(port), **kwargs)


def test_redis_needs_a_password_and_serving_may_only_read(redis_with_users):
    import redis

    port, env = redis_with_users
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).get("anything")
    # the production profile's strings, pointed at this server
    production = read_config("production", {"REDIS_PASSWORD": env["REDIS_PASSWORD"]})
    pipeline = feast_client(
        production.feast.online_store.connection_string.replace("redis:6379", f"127.0.0.1:{port}")
    )
    pipeline.hset("airloop:entity", mapping={"feature": "1.5"})
    serving = feast_client(f"127.0.0.1:{port},username=serving,password={env['REDIS_SERVING_PASSWORD']}")
    assert serving.hmget("airloop:entity", ["feature"]) == [b"1.5"]
    with serving.pipeline(transaction=False) as pipe:  # how Feast reads a batch
        pipe.hmget("airloop:entity", ["feature"])
        assert pipe.execute() == [[b"1.5"]]
    for write in (
        lambda: serving.hset("airloop:entity", "feature", "9"),
        lambda: serving.delete("airloop:entity"),
        serving.flushall,
        lambda: serving.config_get("requirepass"),
        lambda: serving.keys("*"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    assert pipeline.hget("airloop:entity", "feature") == b"1.5"
