"""What the Kubernetes tests share: the rendered layouts, the Helm values, the documented
secrets, and walks over containers and pod templates."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.kustomize import Manifest, build

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
LAYOUTS = {"base": KUBERNETES / "base", "production": KUBERNETES / "overlays" / "production"}
HELM_VALUES = ROOT / "deploy" / "helm" / "airflow-values.yaml"
SECRETS_README = KUBERNETES / "README.md"
VENDOR = KUBERNETES / "vendor"
NAMESPACE = "airloop"
SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|KEY)$")
"""Environment variables named like this hold secrets (config.interpolation's rule)."""


@cache
def _rendered(layout: str) -> tuple[Manifest, ...]:
    return tuple(build(LAYOUTS[layout]))


def rendered(layout: str) -> list[Manifest]:
    return list(_rendered(layout))


def by_kind(layout: str, kind: str) -> list[Manifest]:
    return [doc for doc in _rendered(layout) if doc["kind"] == kind]


def one(layout: str, kind: str, name: str) -> Manifest:
    [doc] = [doc for doc in by_kind(layout, kind) if doc["metadata"]["name"] == name]
    return doc


@cache
def helm_values() -> dict[str, Any]:
    return yaml.safe_load(HELM_VALUES.read_text())


@cache
def documented_secrets() -> frozenset[tuple[str, str]]:
    """``(secret, key)`` rows of the README's secret table."""
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| `([A-Za-z0-9_.-]+)` \|", SECRETS_README.read_text(), re.M)
    return frozenset(rows)


def vendored(relative: str) -> Path:
    """A vendored upstream file; the test is skipped (naming it) until it is vendored."""
    path = VENDOR / relative
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is not vendored yet (see deploy/kubernetes/vendor/README.md)")
    return path


def pod_templates(node: Any) -> Iterator[dict[str, Any]]:
    """Every pod template (``{metadata, spec: {containers}}``) at any depth of a manifest."""
    if isinstance(node, dict):
        spec = node.get("spec")
        if isinstance(spec, dict) and "containers" in spec:
            yield node
        for value in node.values():
            yield from pod_templates(value)
    elif isinstance(node, list):
        for item in node:
            yield from pod_templates(item)


def containers(node: Any) -> Iterator[dict[str, Any]]:
    for template in pod_templates(node):
        yield from template["spec"]["containers"]
        yield from template["spec"].get("initContainers", [])
