"""A small kustomize: renders ``deploy/kubernetes`` without the kustomize binary (tests, tools).

Only what the layout uses: ``resources`` (files and directories with a kustomization),
``namespace`` (namespaced kinds only), ``labels`` (``pairs`` on ``metadata.labels``), ``images``
(``newName``/``newTag`` on every ``containers``/``initContainers`` entry, at any depth) and
``patches`` by ``path`` (a strategic merge patch, matched by kind and name: mappings merge, lists
and scalars replace). Anything else in a kustomization is an error, so the layout cannot start
relying on a feature this renderer silently ignores.

    python -m tools.kustomize deploy/kubernetes/overlays/production   # print the manifests
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
CLUSTER_SCOPED = {
    "Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding", "StorageClass",
    "CustomResourceDefinition", "PersistentVolume", "IngressClass",
}  # fmt: skip

Manifest = dict[str, Any]


class KustomizeError(ValueError):
    pass


def _documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return patch


def _set_images(node: Any, images: list[dict[str, str]]) -> None:
    if isinstance(node, list):
        for item in node:
            _set_images(item, images)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("containers", "initContainers") and isinstance(value, list):
            for container in value:
                container["image"] = _new_image(container.get("image", ""), images)
        _set_images(value, images)


def _new_image(image: str, images: list[dict[str, str]]) -> str:
    name, _, tag = image.partition(":")
    for rule in images:
        if rule["name"] == name:
            return f"{rule.get('newName', name)}:{rule.get('newTag', tag)}".rstrip(":")
    return image


def _key(doc: Manifest) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _apply_patches(docs: list[Manifest], root: Path, patches: list[dict[str, Any]]) -> list[Manifest]:
    for entry in patches:
        if set(entry) != {"path"}:
            raise KustomizeError(f"{root}: only `patches: - path:` is supported, not {sorted(entry)}")
        for patch in _documents(root / entry["path"]):
            matches = [i for i, doc in enumerate(docs) if _key(doc) == _key(patch)]
            if len(matches) != 1:
                raise KustomizeError(f"{root / entry['path']}: patch matches {len(matches)} resources")
            docs[matches[0]] = _merge(docs[matches[0]], patch)
    return docs


def build(directory: Path) -> list[Manifest]:
    """The manifests a kustomization directory renders to, in order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    if unknown := set(kustomization) - SUPPORTED:
        raise KustomizeError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    docs: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        docs += build(path) if path.is_dir() else _documents(path)
    docs = _apply_patches(docs, directory, kustomization.get("patches", []))
    for doc in docs:
        labels = doc.setdefault("metadata", {}).setdefault("labels", {})
        for entry in kustomization.get("labels", []):
            labels.update(entry["pairs"])
        if "namespace" in kustomization and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = kustomization["namespace"]
    _set_images(docs, kustomization.get("images", []))
    return docs


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tools.kustomize <kustomization directory>", file=sys.stderr)
        return 2
    print(yaml.safe_dump_all(build(Path(args[0])), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
