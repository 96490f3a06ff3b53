"""Sections of training: MLflow, the model families and their grids, the training pod, the gate."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from config.base import Section


class MLflow(Section):
    """MLflow tracking server and model registry (the local stack runs the server)."""

    tracking_uri: str | None = None
    """What clients use; ``None`` means the local server at ``host:port``. In production the
    clients authenticate with ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` from
    their environment (MLflow's basic auth: ``training`` writes, ``serving`` reads)."""
    host: str = "127.0.0.1"
    port: int = 5000
    backend_store_uri: str = "sqlite:///data/mlflow/mlflow.db"
    """The local server's store when ``metadata_db`` gives MLflow no database of its own
    (relative paths follow ``AIRLOOP_HOME``). Production's server is configured in its own
    container (docker-compose.yaml), so the production profile holds no database credentials."""
    auth_store_uri: str = "sqlite:///data/mlflow/auth.db"
    """The local server's users (MLflow's basic auth, ``tasks.common.secrets``: clients log in as
    ``admin`` with a password generated under ``AIRLOOP_HOME``). Production's server keeps its
    users in its own database (deploy/mlflow/server.py)."""
    artifacts_destination: str
    """Where the server stores artifacts it proxies (``--serve-artifacts``): file:// or s3://."""
    experiment: str = "fraud-detector"
    registered_model: str = "fraud-detector"
    public_url: str | None = None
    """The address browsers use (Airflow's extra links); ``None`` means the tracking URI."""
    admin_password: str | None = None
    """The local server's ``admin`` password, read when the server first creates its users;
    ``None``: generated under ``AIRLOOP_HOME`` (``tasks.common.secrets``). Unused in production,
    whose clients bring their own credentials."""
    signing_key: str | None = None
    """HMAC key that signs each registered model's SHA-256 (``tasks.common.secrets``); only
    training and the components that load models hold it. ``None`` locally: a generated key under
    ``AIRLOOP_HOME``; production reads ``${MODEL_SIGNING_KEY}``."""

    @field_validator("signing_key", "admin_password")
    @classmethod
    def _empty_key_is_none(cls, value: str | None) -> str | None:
        return value or None

    @property
    def url(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return (self.public_url or self.url).rstrip("/")


class XGBoostGrid(Section):
    """Hyper-parameters of the XGBoost family: each combination is one candidate."""

    max_depth: list[int] = [4, 6]
    learning_rate: list[float] = [0.1]
    min_child_weight: list[float] = [1.0]
    subsample: list[float] = [0.9]
    colsample_bytree: list[float] = [0.9]
    reg_lambda: list[float] = [1.0]


class XGBoostFamily(Section):
    max_rounds: int = 400
    early_stopping_rounds: int = 30
    grid: XGBoostGrid = XGBoostGrid()


class MLPGrid(Section):
    """Hyper-parameters of the PyTorch MLP family: each combination is one candidate."""

    hidden: list[list[int]] = [[64, 32]]
    learning_rate: list[float] = [0.002]
    dropout: list[float] = [0.1]
    weight_decay: list[float] = [0.0001]


class MLPFamily(Section):
    max_epochs: int = Field(40, ge=1)
    patience: int = 5
    """Epochs without a better validation loss before training stops (the best epoch is kept)."""
    batch_size: int = 512
    grid: MLPGrid = MLPGrid()


Family = Literal["xgboost", "mlp", "prior"]


class TrainingSetBuild(Section):
    """How the point-in-time join is run: the whole history in memory, or streamed by days."""

    chunk_rows: int | None = Field(None, ge=1)
    """``None``: every event in one pandas frame (memory grows with the history). A number: the
    join streams over the curated partitions, whole days at a time up to about this many events
    (a day larger than that is one chunk), carrying each entity's latest feature row between
    chunks, so memory is bounded by this and the entity count, not by the history's length."""


class WorkerResources(Section):
    """What each distributed training worker asks the cluster for (Ray resources)."""

    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)
    """More than 0: XGBoost trains with ``device=cuda`` and the MLP's DDP uses NCCL."""
    memory_mb: int | None = Field(None, ge=1)


class RayTraining(Section):
    """Where ``train.workers`` > 1 trains: the Ray cluster Ray Train's workers run on."""

    address: str | None = None
    """Ray address to join (``auto`` inside a Ray job or on a cluster node); ``None``: a private
    local Ray started for the run and stopped after it (the local profile)."""
    worker: WorkerResources = WorkerResources()
    """Resources of each of the ``train.workers`` workers."""


class RayJobSubmission(Section):
    """``training_pod.runner: ray_job``: the entrypoint submitted to a Ray cluster's Jobs API."""

    address: str | None = None
    """The cluster's dashboard, where its Jobs API answers (``http://<head>:8265``). Its nodes must
    run the train image: the job runs ``python -m tasks.training`` there, and Ray Train's workers
    (``train.workers`` > 1) join the job's cluster (``training_pod.ray.address: auto``)."""
    token_env: str | None = "RAY_AUTH_TOKEN"
    """The Airflow worker's environment variable holding the cluster's token (Ray's token
    authentication, sent as ``Authorization: Bearer``); unset or empty there: no token."""
    timeout_seconds: float = Field(7200.0, gt=0)
    """A job still running after this long is stopped and fails the task."""
    poll_seconds: float = Field(5.0, gt=0)
    """How often the job's status and new log lines are read."""
    deferrable: bool = False
    """Wait for the job in Airflow's triggerer (``RayJobTrigger``) instead of a worker slot."""
    entrypoint_cpus: float = Field(0.0, ge=0)
    entrypoint_gpus: float = Field(0.0, ge=0)
    """What the entrypoint (the driver: encoding, calibration, gate, registration) reserves on
    the cluster; with ``train.workers`` = 1 it trains itself, so give it the GPU there."""


class TorchRun(Section):
    """``training_pod.runner: torchrun``: the training pod's entrypoint under ``torchrun``, its
    ranks training each candidate data-parallel (``tasks.training.torchrun``)."""

    nproc_per_node: int | None = Field(None, ge=1)
    """Ranks in the pod (``torchrun --standalone --nproc_per_node``). ``None``: ``gpus``, one rank
    per GPU (NCCL). A pod without GPUs (``gpus: 0``) sets it: its ranks train on CPU (gloo)."""
    timeout_seconds: float = Field(3600.0, gt=0)
    """How long a rank waits for the others (torch.distributed's timeout): rank 0 alone reads the
    training set, scores the champion and evaluates each candidate while the others wait."""


class Train(Section):
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
    warmup_hours: float | None = Field(None, ge=0)
    """Events this soon after the curated history begins are features' context, not training
    rows: their trailing windows reach before the history, so a 7-day count there ramps up from
    zero, a ramp serving never sees. ``None``: the longest feature window; 0: keep every row."""
    performance_window_hours: float | None = Field(None, gt=0)
    """A retrain the monitor triggered on live performance (reason ``performance``: the inputs
    look as before, the labels say the model is wrong, so the concept changed) trains on the
    events of this many hours before the window that triggered it only: older labels teach the
    old concept, and with the hold-out the newest part of the range, a long range leaves the new
    one in the hold-out alone for days. ``None``: the whole range, as any other run. Size it so
    the hold-out (``holdout_fraction`` of it) holds ``gate.min_holdout_positives`` fraud rows."""
    latency_rows: int = 2000
    build: TrainingSetBuild = TrainingSetBuild()
    workers: int = Field(1, ge=1)
    """Data-parallel workers per candidate: 1 trains in this process exactly as before; more
    train through Ray Train (``XGBoostTrainer``, ``TorchTrainer`` with DDP) on the cluster of
    ``training_pod.ray``, each with its resources."""
    xgboost: XGBoostFamily = XGBoostFamily()
    mlp: MLPFamily = MLPFamily()


class TrainingPod(Section):
    """Where training runs: a GPU pod (production) or a local process (local), same entrypoint."""

    runner: Literal["local", "kubernetes", "ray_job", "torchrun"] = "local"
    """Where ``python -m tasks.training`` runs: ``local`` a child process of the Airflow task,
    ``kubernetes`` this pod (KubernetesPodOperator), ``ray_job`` a job on the Ray cluster of
    ``ray_job.address`` (the Ray Jobs API; secrets from the Airflow worker's environment),
    ``torchrun`` this pod running it under ``torchrun`` with ``torchrun_processes`` ranks (DDP)."""
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
    """Extra environment for the training process (secrets belong in ``secret_env``)."""
    secret_env: dict[str, str] = {}
    """Environment variables read from Kubernetes Secrets, ``NAME: <secret>/<key>``: the pod
    spec references them (``secretKeyRef``), so no secret value passes through Airflow. A Ray job
    (``runner: ray_job``) gets them in its runtime environment from the Airflow worker's own
    environment, under the same names (its pods read them from the same Secrets)."""
    priority_class: str | None = None
    """The pod's ``priorityClassName`` (``deploy/kubernetes``: GPU jobs may preempt batch work)."""
    deferrable: bool = True
    in_cluster: bool = True
    kubernetes_conn_id: str = "kubernetes_default"
    startup_timeout_seconds: int = 900
    """Pulling a CUDA image onto a node that scaled up for it takes minutes."""
    ray: RayTraining = RayTraining()
    ray_job: RayJobSubmission = RayJobSubmission()
    torchrun: TorchRun = TorchRun()

    @model_validator(mode="after")
    def _ray_job_has_a_cluster(self) -> TrainingPod:
        if self.runner == "ray_job" and not self.ray_job.address:
            raise ValueError("training_pod.runner is ray_job: set training_pod.ray_job.address")
        return self

    @model_validator(mode="after")
    def _one_rank_per_gpu(self) -> TrainingPod:
        n = self.torchrun.nproc_per_node
        if self.runner != "torchrun":
            return self
        if not n and not self.gpus:
            raise ValueError("training_pod.runner is torchrun: set its gpus or torchrun.nproc_per_node")
        if n and self.gpus and n != self.gpus:
            raise ValueError(
                f"training_pod.torchrun.nproc_per_node is {n} but the pod has {self.gpus} GPUs: "
                "one rank per GPU (leave nproc_per_node unset)"
            )
        return self

    @property
    def torchrun_processes(self) -> int:
        """``runner: torchrun``'s ranks: ``torchrun.nproc_per_node``, else one per GPU."""
        return self.torchrun.nproc_per_node or self.gpus

    @field_validator("secret_env")
    @classmethod
    def _secret_and_key(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            secret, _, key = ref.partition("/")
            if not secret or not key or "/" in key:
                raise ValueError(f"secret_env.{name}: {ref!r} is not <secret>/<key>")
        return value

    def secret_refs(self) -> dict[str, tuple[str, str]]:
        """``secret_env`` as ``NAME -> (secret, key)``."""
        refs: dict[str, tuple[str, str]] = {}
        for name, ref in self.secret_env.items():
            secret, key = ref.split("/", 1)
            refs[name] = (secret, key)
        return refs


class Fairness(Section):
    segment: str = "region"
    """The column whose groups must see similar recall (true positive rate)."""
    threshold: float = 0.5
    """Decision threshold on the calibrated fraud probability."""
    max_tpr_gap: float = 0.3
    min_positives: int = 25
    """Segments with fewer fraud rows in the hold-out are reported but not compared."""


class SegmentRule(Section):
    """What every value of one segment column (each region, each channel...) must clear on the
    hold-out, at the serving threshold. ROC AUC and recall do not depend on a segment's fraud
    rate, so they are also compared with the overall figure; PR AUC does, so it has a floor and
    the champion's figure for the same segment only.

    A figure fails only when even its upper confidence bound (``confidence``: ROC AUC + z x its
    standard error, Wilson's bound for recall) is below the bound it must clear, so a segment with
    a dozen fraud rows is judged without its sampling noise failing good models."""

    min_roc_auc: float = 0.75
    min_pr_auc: float = 0.1
    min_recall: float = 0.1
    max_roc_auc_below_overall: float = 0.1
    max_recall_below_overall: float = 0.3
    champion_tolerance: float = 0.05
    """How far below the champion's ROC AUC and PR AUC for the same segment a candidate may fall."""
    confidence: float = Field(0.95, ge=0.5, lt=1)
    min_rows: int = 100
    min_positives: int = 5
    """A segment with fewer rows or fraud rows in the hold-out is too small to judge ..."""
    max_unjudged_share: float = Field(0.35, ge=0, le=1)
    """... and fails the gate when it holds more than this share of the hold-out's rows (it is
    reported, never silently skipped)."""


def _default_segments() -> dict[str, SegmentRule]:
    return {name: SegmentRule() for name in ("region", "channel", "merchant_category")}


class Segments(Section):
    """Quality per segment: every value of every column listed must clear its own floors."""

    threshold: float | None = None
    """Where recall is measured; ``None``: ``serving.threshold`` (what serving decides with)."""
    columns: dict[str, SegmentRule] = Field(default_factory=_default_segments)
    """Segment column -> its rule; add a column (it must be in the training set) to judge it too."""


class Gate(Section):
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
    champion_confidence: float | None = Field(0.95, ge=0.5, lt=1)
    """The ROC AUC comparison with the champion fails only when the candidate is worse beyond
    ``roc_auc_tolerance`` with this one-sided confidence (DeLong's paired test on the hold-out:
    on a small hold-out the difference is mostly noise). ``None``: the fixed tolerance alone."""
    pr_auc_tolerance: float = 0.03
    select_by: Literal["roc_auc", "pr_auc"] = "pr_auc"
    """Among passing candidates, the best by this metric is registered."""
    fairness: Fairness = Fairness()
    segments: Segments = Field(default_factory=Segments)
