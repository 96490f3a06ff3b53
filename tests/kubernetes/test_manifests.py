"""The Kubernetes layout, offline: each kustomization renders, every manifest is valid against
the Kubernetes API's schemas (strict: an unknown or misspelt field fails), the RayService
against KubeRay's CRD, and the objects refer to each other consistently."""

from __future__ import annotations

import jsonschema
import kubernetes_validate
import pytest
import yaml

from config import read_config
from tasks.serving.process import serve_config
from tests.kubernetes.manifests import LAYOUTS, NAMESPACE, by_kind, one, pod_templates, rendered, vendored
from tools import training_pod_template

KUBERNETES_VERSION = "1.37.0"
"""The newest Kubernetes whose schemas kubernetes-validate bundles."""
CUSTOM_KINDS = {"RayService"}
"""Validated against their CRD's schema instead (below)."""

parametrize_layouts = pytest.mark.parametrize("layout", sorted(LAYOUTS))


def _ids(layout: str) -> list[str]:
    return [f"{doc['kind']}/{doc['metadata']['name']}" for doc in rendered(layout)]


@parametrize_layouts
def test_every_manifest_is_valid_against_the_kubernetes_api_strictly(layout):
    checked = 0
    for doc in rendered(layout):
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 15, _ids(layout)


def test_strict_validation_fails_a_misspelt_field():
    """The check above can fail: a typo in a pod spec is an error, not an ignored field."""
    doc = one("base", "PodTemplate", "airloop-train")
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["template"]["spec"]["nodeSelecter"] = broken["template"]["spec"].pop("nodeSelector")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@parametrize_layouts
def test_names_are_unique_and_namespaced_objects_are_in_the_airloop_namespace(layout):
    ids = _ids(layout)
    assert len(ids) == len(set(ids)), ids
    for doc in rendered(layout):
        if doc["kind"] in ("Namespace", "PriorityClass"):
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "airloop"
    assert one(layout, "Namespace", NAMESPACE)


def test_the_production_overlay_names_the_managed_services():
    for name in ("postgres", "redis", "mlflow"):
        base = one("base", "Service", name)["spec"]
        production = one("production", "Service", name)["spec"]
        assert base["type"] == production["type"] == "ExternalName"
        assert production["externalName"] != base["externalName"]


def test_no_secret_object_ships_with_the_layout():
    for layout in LAYOUTS:
        assert not by_kind(layout, "Secret")


@parametrize_layouts
def test_rayservice_is_valid_against_the_kuberay_crd(layout):
    crd = yaml.safe_load(vendored("kuberay/ray.io_rayservices.yaml").read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    for doc in by_kind(layout, "RayService"):
        assert doc["apiVersion"] == "ray.io/v1"
        jsonschema.validate(doc, schema)


def _serve_config(layout: str) -> dict:
    return yaml.safe_load(one(layout, "RayService", "airloop-serve")["spec"]["serveConfigV2"])


def test_rayservice_runs_the_application_the_deploy_dag_puts_on_the_cluster():
    """serveConfigV2 holds the application of ``python -m tasks.serving config`` (what the deploy
    DAG PUTs through the Serve REST API): same name, import path, arguments, environment."""
    expected = serve_config(read_config("production", {}))
    config = _serve_config("production")
    assert config["http_options"] == expected["http_options"]
    [app] = config["applications"]
    [wanted] = expected["applications"]
    assert {k: app[k] for k in wanted} == wanted
    assert app["import_path"] == "tasks.serving.app:app_builder"


def test_rayservice_autoscales_within_bounds_and_upgrades_on_a_new_cluster():
    settings = read_config("production", {})
    spec = one("production", "RayService", "airloop-serve")["spec"]
    [app] = _serve_config("production")["applications"]
    [ingress] = app["deployments"]
    bounds = ingress["autoscaling_config"]
    assert ingress["name"] == "ingress" and ingress["num_replicas"] == "auto"
    assert settings.serving.ingress_replicas <= bounds["min_replicas"] < bounds["max_replicas"]
    cluster = spec["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert spec["upgradeStrategy"]["type"] == "NewCluster"
    assert cluster["rayVersion"] == "2.60.0"


def test_ray_pods_run_the_serve_image_with_token_authentication():
    spec = one("production", "RayService", "airloop-serve")["spec"]["rayClusterConfig"]
    assert spec["authOptions"] == {"mode": "token", "secretName": "airloop-ray-auth"}
    templates = list(pod_templates(spec))
    assert len(templates) == 1 + len(spec["workerGroupSpecs"])
    for template in templates:
        [container] = template["spec"]["containers"]
        assert container["image"].startswith("airloop/serve:")
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "airloop-ray-auth",
            "key": "auth_token",
        }


def test_training_pod_template_is_what_the_operator_renders_from_production_config():
    """The file is generated; when config/production.yaml or the operator changes, regenerate
    it (python -m tools.training_pod_template) or this fails."""
    on_disk = one("base", "PodTemplate", "airloop-train")
    rendered_now = training_pod_template.render()
    rendered_now["metadata"]["labels"]["app.kubernetes.io/part-of"] = "airloop"
    assert on_disk == rendered_now
    assert training_pod_template.main(["--check"]) == 0


def test_training_pod_template_matches_the_training_pod_section():
    cfg = read_config("production", training_pod_template.airflow_env()).training_pod
    spec = one("base", "PodTemplate", "airloop-train")["template"]["spec"]
    [container] = spec["containers"]
    assert container["image"] == cfg.image
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(cfg.gpus) == "1"
    assert container["resources"]["requests"]["memory"] == cfg.requests["memory"]
    assert spec["tolerations"] == cfg.tolerations
    assert spec["nodeSelector"] == cfg.node_selector
    assert spec["priorityClassName"] == cfg.priority_class
    assert spec["serviceAccountName"] == cfg.service_account
    assert cfg.namespace == NAMESPACE
    # ... and what it names exists in the layout
    assert one("base", "PriorityClass", cfg.priority_class)["value"] > 0
    assert one("base", "ServiceAccount", cfg.service_account)
