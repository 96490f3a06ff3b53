"""Secrets on Kubernetes: none ships with the layout, every reference names a documented
Secret and key, and no secret-looking variable has an inline value."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.kubernetes.manifests import (
    HELM_VALUES,
    LAYOUTS,
    ROOT,
    SECRET_NAME,
    containers,
    documented_secrets,
    helm_values,
    rendered,
)

CHART_SECRETS = {
    "data.metadataSecretName": "connection",
    "fernetKeySecretName": "fernet-key",
    "apiSecretKeySecretName": "api-secret-key",
    "jwtSecretName": "jwt-secret",
}
"""The chart's values that name a Secret, and the key the chart reads from it."""
DEPENDENT = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _env_example_variables() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M))


def _secret_refs(node: Any) -> Iterator[tuple[str, str]]:
    """Every ``(secret, key)`` a manifest reads: secretKeyRef, and KubeRay's authOptions."""
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            yield node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]
        if node.get("mode") == "token" and "secretName" in node:
            yield node["secretName"], "auth_token"  # KubeRay reads this key
        for value in node.values():
            yield from _secret_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _secret_refs(item)


def _helm_secret_refs() -> set[tuple[str, str]]:
    values = helm_values()
    refs = {(entry["secretName"], entry["secretKey"]) for entry in values["secret"]}
    for path, key in CHART_SECRETS.items():
        node: Any = values
        for part in path.split("."):
            node = node[part]
        refs.add((node, key))
    for volume in values["apiServer"]["extraVolumes"]:
        if "secret" in volume:
            refs.add((volume["secret"]["secretName"], "simple_auth_manager_passwords.json"))
    return refs


def test_the_secret_table_documents_only_env_example_values():
    table = (ROOT / "deploy" / "kubernetes" / "README.md").read_text()
    rows = re.findall(r"^\| `[a-z0-9-]+` \| `[^`]+` \| (.+?) \|", table, re.M)
    assert len(rows) == len(documented_secrets()) >= 20
    variables = _env_example_variables()
    for value in rows:
        named = set(re.findall(r"[A-Z][A-Z0-9_]{3,}", value))
        assert named and named <= variables, value


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_secret_reference_in_the_manifests_is_documented(layout):
    refs = {ref for doc in rendered(layout) for ref in _secret_refs(doc)}
    assert len(refs) >= 10
    assert refs <= documented_secrets(), sorted(refs - documented_secrets())


def test_every_secret_the_helm_values_use_is_documented():
    refs = _helm_secret_refs()
    assert len(refs) >= 10
    assert refs <= documented_secrets(), sorted(refs - documented_secrets())


def test_every_documented_secret_is_used():
    used = _helm_secret_refs() | {ref for doc in rendered("production") for ref in _secret_refs(doc)}
    assert documented_secrets() <= used, sorted(documented_secrets() - used)


def _inline_secrets(env: list[dict[str, Any]]) -> list[str]:
    """Secret-looking variables given a literal value (an empty one, to unset, is fine), and
    values that embed another variable that is not a secret reference."""
    by_ref = {e["name"] for e in env if "valueFrom" in e}
    bad = [e["name"] for e in env if SECRET_NAME.search(e["name"]) and e.get("value")]
    for e in env:
        for name in DEPENDENT.findall(e.get("value") or ""):
            if name not in by_ref:
                bad.append(f"{e['name']} -> $({name})")
    return bad


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_no_manifest_gives_a_secret_an_inline_value(layout):
    envs = [c.get("env", []) for doc in rendered(layout) for c in containers(doc)]
    assert len(envs) >= 3
    for env in envs:
        assert _inline_secrets(env) == []
    for doc in rendered(layout):
        if doc["kind"] == "ConfigMap":
            assert [k for k in doc["data"] if SECRET_NAME.search(k)] == []
    assert _inline_secrets([{"name": "X_TOKEN", "value": "t0ken"}]) == ["X_TOKEN"]


def _inline_values(node: Any, path: str = "") -> list[str]:
    """Keys named like a secret holding a literal (``...SecretName``/``secretKey`` name one)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            names_one = key in ("secretKey", "envName") or key.endswith(("SecretName", "secretName"))
            named_like_secret = re.search(r"(?i)(password|secret|token|key)$", key) and not names_one
            if named_like_secret and isinstance(value, str) and value:
                found.append(f"{path}{key}")
            found += _inline_values(value, f"{path}{key}.")
    elif isinstance(node, list):
        for item in node:
            found += _inline_values(item, path)
    return found


def test_helm_values_hold_no_secret_value():
    values = helm_values()
    for entry in values.get("env", []):
        assert not SECRET_NAME.search(entry["name"]), entry["name"]
    assert _inline_values(values) == []
    assert _inline_values({"redis": {"password": "hunter2"}}) == ["redis.password"]
    assert HELM_VALUES.exists()
    assert all(set(entry) == {"envName", "secretName", "secretKey"} for entry in values["secret"])
    assert yaml.safe_load(values["extraEnvFrom"]) == [{"configMapRef": {"name": "airloop-airflow-env"}}]
