"""Where the loop's data ended up, read from each store as its own role: the curated Parquet and
MLflow's artifacts in S3, the features in Redis, Airflow's runs, MLflow's runs and the Feast
registry in their PostgreSQL databases, and the Serve application on the Ray cluster."""

from __future__ import annotations

from collections import Counter
from typing import Any

from config import Settings
from tasks.platform.prodlocal.services import alive_nodes, ray_get
from tasks.platform.prodlocal.state import BUCKET, State, sockets_dir


def s3_keys(state: State, prefix: str) -> list[str]:
    """Object keys under ``prefix`` in the bucket."""
    import boto3  # noqa: PLC0415 - only when checking

    s3 = boto3.client("s3", endpoint_url=state.url("s3"), region_name="us-east-1")
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def redis_facts(state: State) -> dict[str, Any]:
    """Keys in Redis, and whether the ``serving`` user may read but not write."""
    import redis  # noqa: PLC0415 - only when checking

    port, s = state.ports["redis"], state.secrets
    admin = redis.Redis(port=port, password=s["REDIS_PASSWORD"])
    serving = redis.Redis(port=port, username="serving", password=s["REDIS_SERVING_PASSWORD"])
    try:
        keys = int(admin.dbsize())  # type: ignore[arg-type]
        some = next(iter(admin.scan_iter(count=10)), None)
        readable = some is not None and serving.type(some) is not None
        try:
            serving.set("airloop:prodlocal:probe", "x")
            writable = True
        except redis.exceptions.NoPermissionError:
            writable = False
    finally:
        admin.close()
        serving.close()
    return {"keys": keys, "serving_reads": readable, "serving_writes": writable}


def _query(state: State, role: str, database: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg  # noqa: PLC0415 - only when checking

    password = state.secrets[f"{role.upper()}_DB_PASSWORD"]
    with psycopg.connect(
        host=str(sockets_dir(state)), dbname=database, user=role, password=password, connect_timeout=10
    ) as conn:
        return list(conn.execute(sql).fetchall())


def dag_runs(state: State) -> dict[str, dict[str, int]]:
    """``{dag_id: {state: runs}}`` from Airflow's metadata database (role ``airflow``)."""
    rows = _query(state, "airflow", "airflow", "SELECT dag_id, state, count(*) FROM dag_run GROUP BY 1, 2")
    out: dict[str, dict[str, int]] = {}
    for dag_id, run_state, n in rows:
        out.setdefault(str(dag_id), {})[str(run_state)] = int(n)
    return out


def mlflow_facts(state: State) -> dict[str, Any]:
    """Runs, versions and aliases in MLflow's backend database (role ``mlflow``)."""
    runs = _query(state, "mlflow", "mlflow", "SELECT status, count(*) FROM runs GROUP BY 1")
    versions = _query(state, "mlflow", "mlflow", "SELECT name, version FROM model_versions ORDER BY 2")
    aliases = _query(state, "mlflow", "mlflow", "SELECT alias, version FROM registered_model_aliases")
    users = _query(state, "mlflow", "mlflow_auth", "SELECT username FROM users ORDER BY 1")
    return {
        "runs": {str(status): int(n) for status, n in runs},
        "versions": [f"{name} v{version}" for name, version in versions],
        "aliases": {str(alias): str(version) for alias, version in aliases},
        "users": [str(u) for (u,) in users],
    }


def feast_tables(state: State) -> list[str]:
    """The Feast SQL registry's non-empty tables (role ``feast``)."""
    names = _query(
        state,
        "feast",
        "feast",
        "SELECT relname FROM pg_stat_user_tables WHERE n_live_tup > 0 ORDER BY 1",
    )
    return [str(n) for (n,) in names]


def serve_facts(settings: Settings) -> dict[str, Any]:
    """The Serve application as the cluster reports it (token auth): its status, and on which
    nodes its replicas run."""
    body = ray_get(settings, "/api/serve/applications/").json()
    app = (body.get("applications") or {}).get(settings.serving.app_name) or {}
    nodes = {str(n["raylet"].get("nodeId")): n.get("ip") for n in alive_nodes(settings)}
    placed: Counter[str] = Counter()
    for deployment in (app.get("deployments") or {}).values():
        for replica in deployment.get("replicas") or []:
            placed[str(replica.get("node_id"))] += 1
    return {
        "status": app.get("status"),
        "nodes_alive": len(nodes),
        "replicas_by_node": dict(placed),
        "replicas_on_cluster_nodes": sum(n for node, n in placed.items() if node in nodes),
    }


def all_facts(state: State, settings: Settings) -> dict[str, Any]:
    """Every check above, as one JSON-able dict."""
    curated = [k for k in s3_keys(state, "curated/") if k.endswith(".parquet")]
    return {
        "s3": {"curated_parquet": len(curated), "mlflow_artifacts": len(s3_keys(state, "mlflow/"))},
        "redis": redis_facts(state),
        "airflow_dag_runs": dag_runs(state),
        "mlflow": mlflow_facts(state),
        "feast_registry_tables": feast_tables(state),
        "serve": serve_facts(settings),
    }
