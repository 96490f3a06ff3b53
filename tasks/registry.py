"""The MLflow Model Registry side of training: champion lookup, registration, lineage, hashes.

A model that passed the gate is logged (pyfunc, signature, input example) in its candidate's
run and registered as a new version of ``mlflow.registered_model`` with:
- the alias ``challenger`` (and ``champion`` too when the model has no champion yet: the first
  model ever is what the deploy DAG starts from);
- lineage tags (``TAG_*`` below): DAG id and run id, trigger reason, data version, feature
  service and features, git commit, the model card's artifact URI;
- ``model_sha256``: the SHA-256 of the model's artifact directory (``artifact_sha256``), which
  serving recomputes on the files it downloads before loading them (``fetch_verified``).

Registration is all-or-nothing: if anything after creating the version fails, the version is
deleted again, so no half-tagged version can become a challenger.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from config import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

TAG_DAG_ID = "dag_id"
TAG_DAG_RUN_ID = "dag_run_id"
TAG_REASON = "trigger_reason"
TAG_DATA_SHA256 = "data_sha256"
TAG_DATA_PARTITIONS = "data_partitions"
TAG_DATA_ROWS = "data_rows"
TAG_TRAINING_SET = "training_set_uri"
TAG_FEATURE_SERVICE = "feature_service"
TAG_FEATURES = "features"
TAG_GIT_COMMIT = "git_commit"
TAG_MODEL_SHA256 = "model_sha256"
TAG_MODEL_CARD = "model_card"
TAG_FAMILY = "family"
TAG_CANDIDATE = "candidate"
TAG_RUN_ID = "mlflow_run_id"
LINEAGE_TAGS = (
    TAG_DAG_ID,
    TAG_DAG_RUN_ID,
    TAG_REASON,
    TAG_DATA_SHA256,
    TAG_DATA_PARTITIONS,
    TAG_DATA_ROWS,
    TAG_TRAINING_SET,
    TAG_FEATURE_SERVICE,
    TAG_FEATURES,
    TAG_GIT_COMMIT,
)

IGNORED_FILES = frozenset({"registered_model_meta"})
"""Written by MLflow into a model directory at registration and download time (it names the
registered model and version), so it is not part of the model's content."""

TAG_VALUE_LIMIT = 5000


class IntegrityError(RuntimeError):
    """A downloaded model's files do not hash to the SHA-256 recorded at registration."""


def artifact_sha256(path: str | Path) -> str:
    """SHA-256 of a model directory: over ``<relative path>\\0<sha256 of the file>\\n`` of every
    file, sorted by path, ignoring ``IGNORED_FILES``. Same files, same hash, wherever they lie."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if rel in IGNORED_FILES:
            continue
        digest.update(f"{rel}\0{hashlib.sha256(file.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def version_for_alias(mlflow_client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``name@alias``, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


@dataclass
class Registration:
    name: str
    version: str
    aliases: list[str]
    model_uri: str
    """``models:/<name>/<version>``."""
    logged_model_uri: str
    model_sha256: str
    model_card_uri: str
    run_id: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tag_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= TAG_VALUE_LIMIT else text[: TAG_VALUE_LIMIT - 3] + "..."


def register(
    settings: Settings,
    tracking_uri: str,
    *,
    logged_model_uri: str,
    logged_model_id: str,
    run_id: str,
    tags: dict[str, Any],
    model_card_uri: str,
    description: str = "",
) -> Registration:
    """Register a logged model as the next version, with its hash, lineage tags and aliases."""
    import mlflow

    name = settings.mlflow.registered_model
    mc = client(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="airloop-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(logged_model_uri, dst_path=tmp, tracking_uri=tracking_uri)
        sha = artifact_sha256(local)
    try:
        mc.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        mc.create_registered_model(
            name,
            description="Fraud probability of a card transaction (airloop). Registered only through the "
            "quality gate of tasks.train; see each version's model card.",
        )
    all_tags = {
        **{k: tag_value(v) for k, v in tags.items()},
        TAG_MODEL_SHA256: sha,
        TAG_MODEL_CARD: model_card_uri,
    }
    all_tags[TAG_RUN_ID] = run_id
    version = mc.create_model_version(
        name,
        logged_model_uri,
        run_id=run_id,
        tags=all_tags,
        description=description or None,
        model_id=logged_model_id,
    )
    try:
        _wait_ready(mc, name, version.version)
        aliases = [CHALLENGER]
        if version_for_alias(mc, name, CHAMPION) is None:
            aliases.append(CHAMPION)
        for alias in aliases:
            mc.set_registered_model_alias(name, alias, version.version)
    except BaseException:
        log.error(
            "registration of %s version %s failed half-way: deleting the version", name, version.version
        )
        mc.delete_model_version(name, version.version)
        raise
    return Registration(
        name=name,
        version=str(version.version),
        aliases=aliases,
        model_uri=f"models:/{name}/{version.version}",
        logged_model_uri=logged_model_uri,
        model_sha256=sha,
        model_card_uri=model_card_uri,
        run_id=run_id,
    )


def _wait_ready(mc: MlflowClient, name: str, version: str, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        status = mc.get_model_version(name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RuntimeError(f"model version {name}/{version} is {status}")
        time.sleep(0.2)


def fetch_verified(tracking_uri: str, name: str, alias: str, dst: str | Path) -> tuple[Path, ModelVersion]:
    """Download ``name@alias`` into ``dst`` and check its files against the ``model_sha256`` tag;
    returns the local model directory (load it with ``mlflow.pyfunc.load_model``) and the version.
    Raises ``IntegrityError`` when the hash is missing or differs."""
    import mlflow

    mc = client(tracking_uri)
    version = mc.get_model_version_by_alias(name, alias)
    # The version's own artifact URI: a ``models:/`` URI would be resolved against the process's
    # default registry, not ``tracking_uri`` (it failed that way in fresh serving replicas).
    source = mc.get_model_version_download_uri(name, version.version)
    local = Path(mlflow.artifacts.download_artifacts(source, dst_path=str(dst), tracking_uri=tracking_uri))
    expected = version.tags.get(TAG_MODEL_SHA256)
    actual = artifact_sha256(local)
    if not expected or expected != actual:
        raise IntegrityError(
            f"{name} version {version.version} ({alias}): files hash to {actual}, "
            f"registered {TAG_MODEL_SHA256} is {expected or 'missing'}"
        )
    return local, version
