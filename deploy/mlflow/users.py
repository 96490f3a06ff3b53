"""Create MLflow's users ``training`` and ``serving`` with their permissions; safe to run again.

The ``mlflow-init`` one-shot of docker-compose.yaml runs it after the server is healthy, stdlib
only, as MLflow's ``admin`` (over the REST API, basic auth):

    MLFLOW_TRACKING_URI          the server (http://mlflow:5000)
    MLFLOW_AUTH_ADMIN_PASSWORD   the admin's password (the server created the admin with it)
    MLFLOW_TRAINING_PASSWORD     the password ``training`` gets (Airflow, the training pod)
    MLFLOW_SERVING_PASSWORD      the password ``serving`` gets (the Ray head)

    python users.py --experiment fraud-detector --registered-model fraud-detector

The experiment and registered model named on the command line are created by ``admin`` when
missing, so no other user can claim the names first (a creator manages what it creates).

Each run brings the server to this state and changes nothing already there: a missing user is
created, a user whose password differs from the environment's gets the new one (rotation: change
it in .env, run again), and each grant below is added or corrected. The server refuses everyone
anything not granted (``default_permission = NO_PERMISSIONS``, see server.py).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

ADMIN = "admin"
GRANTS: dict[str, dict[str, str]] = {
    # runs, logged models and their files in experiments (EDIT: not their permissions); registered
    # models, versions, tags and aliases (MANAGE: the rollout deletes an alias on rollback, which
    # EDIT does not allow); never users (admin only)
    "training": {"experiment": "EDIT", "registered_model": "MANAGE"},
    # read a version, its tags and aliases, and download its files: nothing else
    "serving": {"experiment": "READ", "registered_model": "READ"},
}
"""Permission of each user on every resource of a type (the pattern ``*``)."""
PASSWORD_VARIABLE = {"training": "MLFLOW_TRAINING_PASSWORD", "serving": "MLFLOW_SERVING_PASSWORD"}


class Server:
    """Calls to MLflow's auth REST API as one user."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """``(status, JSON or text)``; HTTP errors are returned, not raised."""
        url = f"{self.url}{path}"
        data = None
        if body is not None and method == "GET":
            url += "?" + urllib.parse.urlencode(body)
        elif body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        status, payload = self.call(method, path, body)
        if status != 200:
            raise SystemExit(f"mlflow-init: {method} {path} answered {status}: {payload}")
        return payload


def ensure_user(admin: Server, user: Server, username: str, password: str) -> str:
    """Create ``username`` or set its password; returns what was done (``unchanged`` too)."""
    status, _ = admin.call("GET", "/api/2.0/mlflow/users/get", {"username": username})
    if status == 404:
        admin.ok("POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password})
        return "created"
    if status != 200:
        raise SystemExit(f"mlflow-init: looking up user {username} answered {status}")
    if user.call("GET", "/api/2.0/mlflow/users/current")[0] == 200:
        return "unchanged"
    admin.ok("PATCH", "/api/2.0/mlflow/users/update-password", {"username": username, "password": password})
    return "password updated"


def granted(admin: Server, username: str) -> dict[str, str]:
    """``{resource type: permission}`` of the user's grants on ``*``."""
    rows = admin.ok("GET", "/api/3.0/mlflow/users/permissions/list", {"username": username})["permissions"]
    return {r["resource_type"]: r["permission"] for r in rows if r.get("resource_pattern") == "*"}


def ensure_grants(admin: Server, username: str, wanted: dict[str, str]) -> list[str]:
    """Add or correct each grant of ``wanted``; returns what changed."""
    have = granted(admin, username)
    changed = []
    for resource_type, permission in sorted(wanted.items()):
        if have.get(resource_type) == permission:
            continue
        target = {"username": username, "resource_type": resource_type, "resource_id": "*"}
        if resource_type in have:
            admin.ok("POST", "/api/3.0/mlflow/users/permissions/revoke", target)
        admin.ok("POST", "/api/3.0/mlflow/users/permissions/grant", {**target, "permission": permission})
        changed.append(f"{resource_type}={permission}")
    return changed


def ensure_names(admin: Server, experiments: list[str], models: list[str]) -> list[str]:
    """Create the experiments and registered models that are missing; returns what was created."""
    created = []
    for name in experiments:
        if admin.call("GET", "/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": name})[0] == 404:
            admin.ok("POST", "/api/2.0/mlflow/experiments/create", {"name": name})
            created.append(f"experiment {name}")
    for name in models:
        if admin.call("GET", "/api/2.0/mlflow/registered-models/get", {"name": name})[0] == 404:
            admin.ok("POST", "/api/2.0/mlflow/registered-models/create", {"name": name})
            created.append(f"registered model {name}")
    return created


def run(
    environ: dict[str, str], experiments: Sequence[str] = (), models: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Bring names, users and grants to the state above; returns the changes (empty: none)."""
    missing = [v for v in ("MLFLOW_TRACKING_URI", "MLFLOW_AUTH_ADMIN_PASSWORD", *PASSWORD_VARIABLE.values())
               if not environ.get(v)]  # fmt: skip
    if missing:
        raise SystemExit(f"mlflow-init: {', '.join(missing)} not set (see .env.example)")
    url = environ["MLFLOW_TRACKING_URI"]
    admin_name = environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or ADMIN
    admin = Server(url, admin_name, environ["MLFLOW_AUTH_ADMIN_PASSWORD"])
    changes: dict[str, list[str]] = {"admin": ensure_names(admin, list(experiments), list(models))}
    for username, wanted in GRANTS.items():
        password = environ[PASSWORD_VARIABLE[username]]
        done = ensure_user(admin, Server(url, username, password), username, password)
        changes[username] = ([done] if done != "unchanged" else []) + ensure_grants(admin, username, wanted)
    return changes


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", action="append", default=[], help="create it as admin if missing")
    parser.add_argument("--registered-model", action="append", default=[], help="as above")
    args = parser.parse_args(argv)
    for username, changed in run(dict(os.environ), args.experiment, args.registered_model).items():
        print(f"mlflow-init: {username}: {', '.join(changed) or 'unchanged'}")


if __name__ == "__main__":
    main(sys.argv[1:])
