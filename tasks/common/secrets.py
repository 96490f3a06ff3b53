"""The secrets the loop's own components share: the serving control token, the model signing key
and the local MLflow server's admin password.

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
MLFLOW_PASSWORD = "mlflow-admin-password"
MLFLOW_SESSION_KEY = "mlflow-flask-secret-key"
MLFLOW_USER = "admin"


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


def local_mlflow_auth(settings: Settings) -> bool:
    """Whether MLflow is the local stack's own server, which runs MLflow's basic auth with the
    local secrets (production's clients bring their own credentials in the environment)."""
    return settings.profile != "production" and not settings.mlflow.tracking_uri


def mlflow_credentials(settings: Settings) -> dict[str, str]:
    """The environment an MLflow client logs in to the local server with (MLflow reads
    ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``); nothing for any other server."""
    if not local_mlflow_auth(settings):
        return {}
    return {
        "MLFLOW_TRACKING_USERNAME": MLFLOW_USER,
        "MLFLOW_TRACKING_PASSWORD": mlflow_admin_password(settings),
    }


def mlflow_admin_password(settings: Settings) -> str:
    """The local MLflow server's ``admin`` password (``mlflow.admin_password``)."""
    return _configured_or_local(settings.mlflow.admin_password, settings, MLFLOW_PASSWORD)


def use_mlflow_credentials(settings: Settings) -> None:
    """Log this process's MLflow clients in to the local server; credentials the environment
    already holds win."""
    for name, value in mlflow_credentials(settings).items():
        os.environ.setdefault(name, value)


def log_in_to_local_mlflow() -> None:
    """A command's MLflow clients (training, the monitor, the demo) log in to the local stack's
    server; production's bring their own credentials, and a configuration that does not load is
    left for the command itself to report."""
    if os.environ.get("AIRLOOP_PROFILE", "local") == "production":
        return
    from config import load_config  # noqa: PLC0415 - config is read only when a command runs

    try:
        settings = load_config()
    except Exception:  # noqa: BLE001 - see the docstring
        return
    use_mlflow_credentials(settings)
