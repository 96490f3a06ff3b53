"""Registration of a model that passed the gate: the next version, its hash, lineage and aliases.

A model that passed the gate is logged (pyfunc, signature, input example) in its candidate's
run and registered as a new version of ``mlflow.registered_model`` with:
- the alias ``challenger`` (and ``champion`` too when the model has no champion yet: the first
  model ever is what the deploy DAG starts from);
- lineage tags (``registry.TAG_*``): DAG id and run id, trigger reason, data version, feature
  service and features, git commit, the model card's artifact URI;
- ``model_sha256``: the SHA-256 of the model's artifact directory, which every load site
  recomputes before loading (``registry.download_verified``), and ``model_signature``, that hash
  signed (HMAC) with this deployment's signing key, so that rewriting the tag is not enough to
  slip other files in.

Registration is all-or-nothing: if anything after creating the version fails, the version is
deleted again, so no half-tagged version can become a challenger.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.exceptions import MlflowException

from tasks.common.registry import (
    CHALLENGER,
    CHAMPION,
    TAG_MODEL_CARD,
    TAG_MODEL_SHA256,
    TAG_MODEL_SIGNATURE,
    TAG_RUN_ID,
    artifact_sha256,
    client,
    signature,
    version_for_alias,
)
from tasks.common.secrets import model_signing_key

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from config import Settings

log = logging.getLogger(__name__)

TAG_VALUE_LIMIT = 5000
MODEL_DESCRIPTION = (
    "Fraud probability of a card transaction (airloop). Registered only through the quality gate "
    "of tasks.training; see each version's model card."
)


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


def _model_sha256(logged_model_uri: str, tracking_uri: str) -> str:
    """The SHA-256 of the logged model's files, as every load site will recompute it."""
    with tempfile.TemporaryDirectory(prefix="airloop-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(logged_model_uri, dst_path=tmp, tracking_uri=tracking_uri)
        return artifact_sha256(local)


def _ensure_model(mc: MlflowClient, name: str) -> None:
    try:
        mc.get_registered_model(name)
    except MlflowException:
        mc.create_registered_model(name, description=MODEL_DESCRIPTION)


def _sign_and_alias(mc: MlflowClient, name: str, version: str, sha: str, key: bytes) -> list[str]:
    """Sign the hash, then ``challenger`` (and ``champion`` when there is none yet); deletes the
    version on failure, so no unsigned or alias-less version is left behind."""
    try:
        _wait_ready(mc, name, version)
        mc.set_model_version_tag(name, version, TAG_MODEL_SIGNATURE, signature(key, name, version, sha))
        aliases = [CHALLENGER]
        if version_for_alias(mc, name, CHAMPION) is None:
            aliases.append(CHAMPION)
        for alias in aliases:
            mc.set_registered_model_alias(name, alias, version)
    except BaseException:
        log.error("registration of %s version %s failed half-way: deleting the version", name, version)
        mc.delete_model_version(name, version)
        raise
    return aliases


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
    name = settings.mlflow.registered_model
    mc = client(tracking_uri)
    sha = _model_sha256(logged_model_uri, tracking_uri)
    _ensure_model(mc, name)
    all_tags = {
        **{k: tag_value(v) for k, v in tags.items()},
        TAG_MODEL_SHA256: sha,
        TAG_MODEL_CARD: model_card_uri,
        TAG_RUN_ID: run_id,
    }
    version = mc.create_model_version(
        name,
        logged_model_uri,
        run_id=run_id,
        tags=all_tags,
        description=description or None,
        model_id=logged_model_id,
    )
    return Registration(
        name=name,
        version=str(version.version),
        aliases=_sign_and_alias(mc, name, str(version.version), sha, model_signing_key(settings)),
        model_uri=f"models:/{name}/{version.version}",
        logged_model_uri=logged_model_uri,
        model_sha256=sha,
        model_card_uri=model_card_uri,
        run_id=run_id,
    )


def _wait_ready(mc: MlflowClient, name: str, version: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = mc.get_model_version(name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RuntimeError(f"model version {name}/{version} is {status}")
        time.sleep(0.2)
