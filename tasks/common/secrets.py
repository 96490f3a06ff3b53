"""The secrets the loop's own components share: the serving control token and the model signing key.

In production both come from config (``serving.admin_token``, ``mlflow.signing_key``), which
reads them from the environment (``${SERVING_ADMIN_TOKEN}``, ``${MODEL_SIGNING_KEY}``); the
production profile refuses to load without them. The local profile needs no setup: the first
component that asks creates each one, random, in ``<AIRLOOP_HOME>/.airloop/secrets/<name>`` with
mode 0600 (the home the settings were resolved against: ``settings.home``), and every later one
(the serving process, the DAGs' tasks, the demo, the traffic player) reads the same file.
"""

from __future__ import annotations

import os
import secrets as random_secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config import Settings

SERVING_TOKEN = "serving-admin-token"
SIGNING_KEY = "model-signing-key"


def secrets_dir(settings: Settings) -> Path:
    return Path(settings.home) / ".airloop" / "secrets"


def local_secret(settings: Settings, name: str) -> str:
    """The local secret ``name``, created (random, 0600) the first time anyone asks for it."""
    path = secrets_dir(settings) / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = random_secrets.token_urlsafe(32)
    partial = path.with_name(f".{name}.{random_secrets.token_hex(8)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    try:
        os.link(partial, path)  # the first writer wins; a racing second one reads the winner's
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)
    return path.read_text().strip()


def _configured_or_local(value: str | None, settings: Settings, name: str) -> str:
    if value:
        return value
    if settings.profile == "production":
        raise RuntimeError(f"the production profile needs its {name} from the environment (config)")
    return local_secret(settings, name)


def serving_token(settings: Settings) -> str:
    """The bearer token of serving's control API and label posts (``serving.admin_token``)."""
    return _configured_or_local(settings.serving.admin_token, settings, SERVING_TOKEN)


def model_signing_key(settings: Settings) -> bytes:
    """The HMAC key that signs a registered model's hash (``mlflow.signing_key``): only training
    and the components that load models hold it."""
    return _configured_or_local(settings.mlflow.signing_key, settings, SIGNING_KEY).encode()
