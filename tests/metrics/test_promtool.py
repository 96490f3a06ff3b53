"""deploy/prometheus checked by Prometheus' own tool: both scrape configs, the alert rules, and
their unit tests (every alert firing and not firing). promtool must be installed (.ci/run
installs the ``prometheus`` package): these tests fail without it, they do not skip."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.metrics.prom import PROMETHEUS_DIR, ROOT, tool

RULES = PROMETHEUS_DIR / "rules" / "airloop.yml"
RULE_TESTS = PROMETHEUS_DIR / "rules" / "airloop.test.yml"
POD_META = {
    "__meta_kubernetes_namespace",
    "__meta_kubernetes_pod_name",
    "__meta_kubernetes_pod_phase",
    "__meta_kubernetes_pod_container_port_name",
}
"""The pod role's meta labels the Kubernetes config reads (besides pod labels)."""


def promtool(*args: str | Path, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    command = [tool("promtool"), *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def test_the_compose_scrape_config_is_valid():
    out = promtool("check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_kubernetes_scrape_config_is_valid(tmp_path):
    """Debian's Prometheus is built without Kubernetes discovery: where promtool does not know
    ``kubernetes_sd_configs``, the rest of the file is checked with static targets in its place,
    and the discovery blocks against the documented fields."""
    out = promtool("check", "config", "prometheus-kubernetes.yml")
    if out.returncode != 0 and "kubernetes_sd_configs not found" in out.stdout + out.stderr:
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-kubernetes.yml").read_text())
        for job in config["scrape_configs"]:
            for sd in job.pop("kubernetes_sd_configs", []):
                assert set(sd) <= {"role", "namespaces", "selectors", "api_server", "kubeconfig_file"}
                assert sd["role"] in ("pod", "endpoints", "endpointslice", "service", "node", "ingress")
                assert set(sd.get("namespaces", {})) <= {"names", "own_namespace"}
                job["static_configs"] = [{"targets": ["placeholder:80"]}]
        (tmp_path / "rules").symlink_to(PROMETHEUS_DIR / "rules")
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        out = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_kubernetes_config_keeps_only_serving_ray_pods_on_their_serve_port():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-kubernetes.yml").read_text())
    [serving] = [j for j in config["scrape_configs"] if j["job_name"] == "airloop-serving"]
    assert serving["params"] == {"scope": ["replicas"]} and serving["metrics_path"] == "/metrics"
    assert [sd["role"] for sd in serving["kubernetes_sd_configs"]] == ["pod"]
    keeps = {
        r["source_labels"][0]: r["regex"] for r in serving["relabel_configs"] if r.get("action") == "keep"
    }
    assert keeps["__meta_kubernetes_pod_label_ray_io_serve"] == "true"
    assert keeps["__meta_kubernetes_pod_container_port_name"] == "serve"
    for rule in serving["relabel_configs"]:
        for label in rule["source_labels"]:
            assert label in POD_META or label.startswith("__meta_kubernetes_pod_label_"), label
    compose = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    [local] = [j for j in compose["scrape_configs"] if j["job_name"] == "airloop-serving"]
    assert local["params"] == serving["params"], "both scrape serving the same way"


def test_the_alert_rules_are_valid():
    out = promtool("check", "rules", RULES)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing():
    alerts = {
        r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r
    }
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alerts and fires == alerts and quiet == alerts, (
        f"not tested firing: {alerts - fires}; not tested quiet: {alerts - quiet}"
    )
    out = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_ci_installs_promtool():
    script = (ROOT / ".ci" / "run").read_text()
    assert "command -v promtool >/dev/null 2>&1 || need+=(prometheus)" in script
