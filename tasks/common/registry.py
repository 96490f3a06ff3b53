"""The MLflow Model Registry as every stage sees it: aliases, tag names, verified downloads.

Training registers versions (``tasks.training.registration``), the rollout moves the
``champion`` alias, serving and monitoring load versions. What they share lives here once:
- the aliases ``champion`` and ``challenger`` and the lineage tag names (``TAG_*``);
- ``model_sha256``: the SHA-256 of a model's artifact directory (``artifact_sha256``), which
  every load site recomputes on the files it downloads before unpickling them
  (``download_verified``);
- ``model_signature``: an HMAC-SHA256 over the model's name, version and hash with a key that
  only training and the loaders hold (``tasks.common.secrets.model_signing_key``). Anyone who can
  write to MLflow can rewrite the hash tag along with the files; without the key they cannot
  sign the new hash, so a tampered version is refused before it is unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


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
TAG_MODEL_SIGNATURE = "model_signature"
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


class IntegrityError(RuntimeError):
    """A downloaded model's files do not hash to the SHA-256 recorded at registration, or that
    hash does not carry a valid signature."""


def signature(key: bytes, name: str, version: str, sha256: str) -> str:
    """The HMAC-SHA256 that vouches for ``sha256`` as the content of ``name`` version ``version``."""
    return hmac.new(key, f"{name}\n{version}\n{sha256}".encode(), hashlib.sha256).hexdigest()


def check_signature(key: bytes, version: ModelVersion, sha256: str) -> None:
    """``IntegrityError`` unless the version's ``model_signature`` tag signs ``sha256``."""
    given = (version.tags or {}).get(TAG_MODEL_SIGNATURE, "")
    expected = signature(key, version.name, str(version.version), sha256)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise IntegrityError(
            f"{version.name} version {version.version} refused: its {TAG_MODEL_SHA256} is "
            f"{'not signed' if not given else 'signed with another key'} (tag {TAG_MODEL_SIGNATURE}); "
            "it was not registered by this deployment's training, or its tags were rewritten"
        )


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
    """A client of one tracking server whose registry is that same server (never the process's
    default registry URI, which another component may have set)."""
    from mlflow import MlflowClient  # noqa: PLC0415 - mlflow takes seconds to import; tag names do not need it

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _absent(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) in (
        "RESOURCE_DOES_NOT_EXIST",
        "INVALID_PARAMETER_VALUE",
        "NOT_FOUND",
    )


def version_for_alias(mlflow_client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``name@alias``, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 - see client()

    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _absent(exc):
            return None
        raise


def version_by_number(mlflow_client: MlflowClient, name: str, version: str) -> ModelVersion | None:
    """Version ``version`` of ``name``, or None when it does not exist."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 - see client()

    try:
        return mlflow_client.get_model_version(name, str(version))
    except MlflowException as exc:
        if _absent(exc):
            return None
        raise


def download_verified(
    tracking_uri: str, version: ModelVersion, dst: str | Path, *, key: bytes
) -> tuple[Path, str]:
    """Download a registered version's files into ``dst`` and check them against its
    ``model_sha256`` tag and that tag's signature before anything is unpickled; returns the model
    directory and its hash. Raises ``IntegrityError`` when the hash is missing, differs or is not
    signed with ``key`` (this deployment's, ``tasks.common.secrets.model_signing_key(settings)``)."""
    import mlflow  # noqa: PLC0415 - see client()

    # The version's own artifact URI: a ``models:/`` URI would be resolved against the process's
    # default registry, not ``tracking_uri`` (it failed that way in fresh serving replicas).
    source = client(tracking_uri).get_model_version_download_uri(version.name, version.version)
    local = Path(mlflow.artifacts.download_artifacts(source, dst_path=str(dst), tracking_uri=tracking_uri))
    expected = (version.tags or {}).get(TAG_MODEL_SHA256)
    actual = artifact_sha256(local)
    if not expected or expected != actual:
        raise IntegrityError(
            f"{version.name} version {version.version} refused: its files hash to {actual}, the "
            f"{TAG_MODEL_SHA256} recorded at registration is {expected or 'missing'}"
        )
    check_signature(key, version, actual)
    return local, actual


def fetch_verified(
    tracking_uri: str, name: str, alias: str, dst: str | Path, *, key: bytes
) -> tuple[Path, ModelVersion]:
    """Download ``name@alias`` into ``dst``, verified (``download_verified``); returns the local
    model directory and the version. ``LookupError`` when the alias does not exist."""
    version = version_for_alias(client(tracking_uri), name, alias)
    if version is None:
        raise LookupError(f"model {name!r} has no alias {alias!r}")
    local, _ = download_verified(tracking_uri, version, dst, key=key)
    return local, version


def load_verified(
    tracking_uri: str, name: str, alias: str, dst: str | Path, *, key: bytes
) -> tuple[Any, ModelVersion]:
    """The pyfunc model behind ``name@alias``, loaded only after its files were verified: the one
    path by which training (the champion on the hold-out) and monitoring (the reference) load."""
    import mlflow  # noqa: PLC0415 - see client()

    local, version = fetch_verified(tracking_uri, name, alias, dst, key=key)
    return mlflow.pyfunc.load_model(str(local)), version


# --- rollout moves: the only places the champion alias moves or a version is turned away -------

TAG_ROLLOUT_STATUS = "rollout_status"
TAG_ROLLOUT_ID = "rollout_id"
TAG_REJECTED_REASON = "rejected_reason"
TAG_REJECTED_STEP = "rejected_step"
TAG_PROMOTED_AT = "promoted_at"
TAG_RETIRED_AT = "retired_at"
PROMOTED = "promoted"
REJECTED = "rolled_back"
"""Values of ``rollout_status``: a rejected version is not rolled out again."""
MAX_TAG_CHARS = 4900
"""MLflow keeps tag values up to 5000 characters."""


def _drop_alias_if(mlflow_client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Delete ``name@alias`` when it points at ``version`` (and leave it alone otherwise)."""
    current = version_for_alias(mlflow_client, name, alias)
    if current is not None and str(current.version) == str(version):
        mlflow_client.delete_registered_model_alias(name, alias)


def promote(mlflow_client: MlflowClient, name: str, version: str, *, rollout_id: str, at: str) -> str | None:
    """Make ``version`` the champion: the ``champion`` alias moves to it, its ``challenger`` alias
    goes, it is tagged promoted (``at``: when) and the version it replaced is tagged retired.
    Returns the replaced champion's version (``None``: there was none)."""
    previous = version_for_alias(mlflow_client, name, CHAMPION)
    mlflow_client.set_registered_model_alias(name, CHAMPION, str(version))
    _drop_alias_if(mlflow_client, name, CHALLENGER, version)
    tags = {TAG_ROLLOUT_STATUS: PROMOTED, TAG_ROLLOUT_ID: rollout_id, TAG_PROMOTED_AT: at}
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version), key, value)
    if previous is None:
        return None
    if str(previous.version) != str(version):
        mlflow_client.set_model_version_tag(name, str(previous.version), TAG_RETIRED_AT, at)
    return str(previous.version)


def reject(
    mlflow_client: MlflowClient,
    name: str,
    version: str,
    reason: str,
    step: str | None,
    *,
    rollout_id: str,
    first: bool = False,
) -> None:
    """Turn ``version`` away: tagged rejected with the reason and the step that showed it, and its
    ``challenger`` alias gone. A first model (no champion before it) also loses the ``champion``
    alias its registration gave it."""
    tags = {
        TAG_ROLLOUT_STATUS: REJECTED,
        TAG_ROLLOUT_ID: rollout_id,
        TAG_REJECTED_REASON: reason[:MAX_TAG_CHARS],
    }
    if step:
        tags[TAG_REJECTED_STEP] = step
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version), key, value)
    _drop_alias_if(mlflow_client, name, CHALLENGER, version)
    if first:
        _drop_alias_if(mlflow_client, name, CHAMPION, version)


def rejection(version: ModelVersion) -> str | None:
    """Why ``version`` was rejected by an earlier rollout (``None``: it was not)."""
    tags = version.tags or {}
    if tags.get(TAG_ROLLOUT_STATUS) != REJECTED:
        return None
    return str(tags.get(TAG_REJECTED_REASON) or "no reason recorded")
