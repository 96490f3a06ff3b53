"""Training as a KubeRay ``RayJob`` (``deploy/kubernetes/jobs/training-rayjob.yaml``), offline: the
file is what ``tools.training_ray_job`` renders from the production config, valid against
KubeRay's RayJob CRD (v1.7.0, vendored beside the RayService's) and, pod by pod, against the
Kubernetes API strictly; it runs the training pod's entrypoint with the Jobs API runner's runtime
env, its worker group is ``training_pod.ray.worker``, and its secrets are references only."""

from __future__ import annotations

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tasks.training.ray_job import ENTRYPOINT, scale_env
from tests.kubernetes.manifests import NAMESPACE, containers, documented_secrets, one, pod_templates, vendored
from tests.kubernetes.test_manifests import KUBERNETES_VERSION
from tests.kubernetes.test_secret_references import _inline_secrets, _secret_refs
from tools import training_ray_job


@pytest.fixture(scope="module")
def on_disk() -> dict:
    return yaml.safe_load(training_ray_job.TARGET.read_text())


@pytest.fixture(scope="module")
def settings():
    return training_ray_job.settings()


def _crd_schema(name: str) -> dict:
    crd = yaml.safe_load(vendored(f"kuberay/{name}").read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def test_the_file_is_what_the_tool_renders_from_production_config(on_disk, settings):
    """Generated: when config/production.yaml or the pod changes, run python -m tools.training_ray_job."""
    assert on_disk == training_ray_job.manifest(settings)
    assert training_ray_job.main(["--check"]) == 0


def test_it_is_valid_against_kuberays_rayjob_crd_and_its_pods_against_kubernetes(on_disk):
    schema = _crd_schema("ray.io_rayjobs.yaml")
    assert on_disk["apiVersion"] == "ray.io/v1" and on_disk["kind"] == "RayJob"
    jsonschema.validate(on_disk, schema)
    broken = yaml.safe_load(yaml.safe_dump(on_disk))
    broken["spec"]["shutdownAfterJobFinishes"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    templates = list(pod_templates(on_disk["spec"]))
    assert len(templates) == 2
    for template in templates:
        doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_it_runs_the_training_entrypoint_with_the_job_runners_runtime_env(on_disk, settings):
    spec = on_disk["spec"]
    assert spec["entrypoint"].split()[:3] == list(ENTRYPOINT)
    assert yaml.safe_load(spec["runtimeEnvYAML"]) == {"env_vars": scale_env(settings)}
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["AIRLOOP__TRAIN__WORKERS"] == "2"
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] == 0
    assert on_disk["metadata"]["namespace"] == NAMESPACE
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token", "secretName": "airloop-ray-auth"}
    serving = one("base", "RayService", "airloop-serve")["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == serving["rayVersion"]


def test_the_head_is_the_training_pod_and_the_workers_are_training_pod_ray_worker(on_disk, settings):
    pod = one("base", "PodTemplate", "airloop-train")["template"]["spec"]
    [training] = pod["containers"]
    cluster = on_disk["spec"]["rayClusterSpec"]
    [head] = cluster["headGroupSpec"]["template"]["spec"]["containers"]
    assert head["image"] == training["image"] and head["env"] == training["env"]
    limits = training["resources"]["limits"]
    assert head["resources"]["limits"] == {k: v for k, v in limits.items() if "gpu" not in k}
    [group] = cluster["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == settings.train.workers == 2
    worker_pod = group["template"]["spec"]
    [worker] = worker_pod["containers"]
    w = settings.training_pod.ray.worker
    wanted = {"cpu": f"{w.cpus:g}", "memory": f"{w.memory_mb}Mi", "nvidia.com/gpu": "1"}
    assert worker["resources"]["limits"] == worker["resources"]["requests"] == wanted
    assert worker["image"] == training["image"] and worker["env"] == training["env"]
    assert worker_pod["tolerations"] == pod["tolerations"]
    assert worker_pod["nodeSelector"] == pod["nodeSelector"]
    assert worker_pod["serviceAccountName"] == pod["serviceAccountName"]


def test_secrets_are_documented_references_only(on_disk):
    refs = set(_secret_refs(on_disk))
    assert ("airloop-train", "MLFLOW_TRAINING_PASSWORD") in refs
    assert ("airloop-ray-auth", "auth_token") in refs
    assert refs <= documented_secrets(), sorted(refs - documented_secrets())
    envs = [c["env"] for c in containers(on_disk)]
    assert len(envs) == 2
    for env in envs:
        assert _inline_secrets(env) == []
