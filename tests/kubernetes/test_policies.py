"""NetworkPolicies and RBAC: default-deny ingress, every policy selects pods that exist, only
Airflow reaches the Ray dashboard, nothing outside the Ray cluster reaches its workers, and the
Role gives Airflow exactly what the KubernetesPodOperator needs."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.kubernetes.manifests import (
    NAMESPACE,
    ROOT,
    by_kind,
    containers,
    helm_values,
    one,
    pod_templates,
    rendered,
)
from tools import training_ray_job

CHART_COMPONENTS = {"scheduler", "api-server", "dag-processor", "triggerer", "worker", "statsd"}
"""The chart's ``component`` label on its pods (with ``tier: airflow`` and the values' ``labels``)."""
OPERATOR_NEEDS = {
    ("pods", frozenset({"create", "get", "list", "watch", "delete", "patch"})),
    ("pods/log", frozenset({"get"})),
    ("pods/exec", frozenset({"create", "get"})),  # do_xcom_push reads the sidecar by exec
    ("events", frozenset({"list", "watch"})),
}
"""What a deferrable KubernetesPodOperator with an XCom sidecar does in the pods' namespace."""


def _pods() -> list[dict[str, str]]:
    """The label sets of every pod that runs in the namespace: this layout's pod templates, and
    the chart's Airflow pods (the values' ``labels`` plus each component's label), and the training
    RayJob's Ray pods (``deploy/kubernetes/jobs/``)."""
    docs = [*rendered("production"), yaml.safe_load(training_ray_job.TARGET.read_text())]
    pods = [
        {**template.get("metadata", {}).get("labels", {})} for doc in docs for template in pod_templates(doc)
    ]
    airflow = {**helm_values()["labels"], "tier": "airflow"}
    return pods + [{**airflow, "component": c} for c in CHART_COMPONENTS]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels is checked here: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _policies() -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p["spec"] for p in by_kind("production", "NetworkPolicy")}


def test_ingress_is_denied_by_default():
    deny = _policies()["default-deny-ingress"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}


@pytest.mark.parametrize("name", sorted(_policies()))
def test_every_policy_and_peer_selects_pods_that_exist(name):
    spec = _policies()[name]
    pods = _pods()
    assert [p for p in pods if _selects(spec["podSelector"], p)], f"{name} selects no pod"
    for rule in spec.get("ingress", []):
        for peer in rule["from"]:
            if "podSelector" in peer and "namespaceSelector" not in peer:
                assert [p for p in pods if _selects(peer["podSelector"], p)], f"{name}: {peer}"


def test_a_selector_that_matches_nothing_is_caught():
    assert not [p for p in _pods() if _selects({"matchLabels": {"airloop.dev/role": "airfow"}}, p)]


def _peers_of(port: int, pod: dict[str, str]) -> list[dict[str, Any]]:
    """Every peer some policy lets reach ``pod`` on ``port`` (a rule without ports: any port)."""
    peers = []
    for spec in _policies().values():
        if not _selects(spec["podSelector"], pod):
            continue
        for rule in spec.get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if not ports or port in ports:
                peers += rule["from"]
    return peers


def _ray_pod(component: str, cluster: str = "airloop-serve") -> dict[str, str]:
    pods = _pods()
    [pod] = [p for p in pods if p.get("app.kubernetes.io/component") == component and _named(p, cluster)]
    return pod


def _named(pod: dict[str, str], name: str) -> bool:
    return pod.get("app.kubernetes.io/name") == name


def test_only_airflow_and_the_kuberay_operator_reach_the_ray_dashboard():
    airflow = {"podSelector": {"matchLabels": {"airloop.dev/role": "airflow"}}}
    ray = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "airloop-serve"}}}
    peers = [p for p in _peers_of(8265, _ray_pod("ray-head")) if p != ray]
    assert airflow in peers and len(peers) == 2
    [operator] = [p for p in peers if p != airflow]
    assert operator["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}}


def test_nothing_outside_the_ray_cluster_reaches_the_workers_but_metrics():
    ray = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "airloop-serve"}}}
    worker = _ray_pod("ray-worker")
    for port in (8000, 8265, 6379, 10001, 52365):
        assert _peers_of(port, worker) == [ray], port
    scoring = _peers_of(8000, _ray_pod("ray-head"))
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in scoring


def test_only_the_training_ray_cluster_and_the_kuberay_operator_reach_its_pods():
    """The training RayJob's cluster (its submitter runs in the head pod): its own pods on every
    port, the KubeRay operator on the dashboard only, nothing else (not the serving cluster)."""
    train = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": training_ray_job.RAY_PODS}}}
    head, worker = (_ray_pod(c, training_ray_job.RAY_PODS) for c in ("ray-head", "ray-worker"))
    for port in (6379, 10001, 52365, 8000):
        assert _peers_of(port, head) == _peers_of(port, worker) == [train], port
    [operator] = [p for p in _peers_of(8265, head) if p != train]
    assert operator["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}}


def test_prometheus_reaches_the_port_its_kubernetes_scrape_config_scrapes():
    """deploy/prometheus/prometheus-kubernetes.yml scrapes serving's /metrics on the head's
    ``serve`` port; a policy that left Prometheus out would leave the production judge blind."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus-kubernetes.yml").read_text())
    jobs = [job for job in config["scrape_configs"] if "scope" in str(job.get("params", {}))]
    assert jobs, "a scrape job of /metrics?scope=replicas"
    kept = [rule.get("regex") for job in jobs for rule in job.get("relabel_configs", [])]
    assert "serve" in kept, "the job keeps the pods' port named serve"
    [service] = by_kind("production", "RayService")
    ports = [p for c in containers(service) for p in c.get("ports", []) if p["name"] == "serve"]
    assert ports, "the Ray head exposes a port named serve"
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert monitoring in _peers_of(ports[0]["containerPort"], _ray_pod("ray-head"))
    assert monitoring in _peers_of(9091, _pod_named("pushgateway")), "Prometheus scrapes the Pushgateway"


def _pod_named(name: str) -> dict[str, str]:
    [pod] = [p for p in _pods() if p.get("app.kubernetes.io/name") == name]
    return pod


def test_training_pods_accept_no_ingress():
    [train] = [p for p in _pods() if p.get("app.kubernetes.io/component") == "train"]
    assert all(_peers_of(port, train) == [] for port in (22, 80, 8080))


def test_the_role_grants_exactly_what_the_pod_operator_needs():
    [role] = by_kind("production", "Role")
    grants = {(res, frozenset(rule["verbs"])) for rule in role["rules"] for res in rule["resources"]}
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    assert grants == OPERATOR_NEEDS


def test_the_role_is_bound_to_the_airflow_service_accounts_that_run_the_operator():
    binding = one("production", "RoleBinding", "airloop-training-pods")
    assert binding["roleRef"]["name"] == by_kind("production", "Role")[0]["metadata"]["name"]
    subjects = {(s["kind"], s["name"], s["namespace"]) for s in binding["subjects"]}
    values = helm_values()
    assert subjects == {
        ("ServiceAccount", values[c]["serviceAccount"]["name"], NAMESPACE) for c in ("workers", "triggerer")
    }


def test_the_training_service_account_holds_no_api_token():
    assert one("production", "ServiceAccount", "airloop-train")["automountServiceAccountToken"] is False
