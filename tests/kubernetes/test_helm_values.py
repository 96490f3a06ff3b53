"""deploy/helm/airflow-values.yaml, the values of the official apache-airflow chart: valid
against the chart's own values.schema.json (vendored), every key one the chart knows, and
what the layout relies on: the executor, the image, the external database, StatsD."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from tests.containers.test_dockerfiles import requirement_pins
from tests.kubernetes.manifests import helm_values, vendored


def _schema() -> dict[str, Any]:
    return json.loads(vendored("airflow-chart/values.schema.json").read_text())


def _unknown_keys(values: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Keys the chart's schema does not declare (its top level allows any key, so a misspelt
    value would be ignored by Helm without this)."""
    if not isinstance(values, dict) or "$ref" in schema or "properties" not in schema:
        return []
    unknown = []
    for key, value in values.items():
        if key not in schema["properties"]:
            unknown.append(f"{path}{key}")
        else:
            unknown += _unknown_keys(value, schema["properties"][key], f"{path}{key}.")
    return unknown


def test_values_are_valid_against_the_charts_schema():
    jsonschema.Draft7Validator(_schema()).validate(helm_values())


def test_every_key_is_one_the_chart_declares():
    schema = _schema()
    assert _unknown_keys(helm_values(), schema) == []
    assert _unknown_keys({"statsd": {"enabeld": True}}, schema) == ["statsd.enabeld"]


def test_kubernetes_executor_with_the_airloop_image_and_baked_in_dags():
    values = helm_values()
    assert values["executor"] == "KubernetesExecutor"
    assert (
        values["images"]["airflow"]["repository"] == values["defaultAirflowRepository"] == "airloop/airflow"
    )
    assert values["airflowVersion"] == requirement_pins()["apache-airflow"]
    assert values["dags"]["gitSync"]["enabled"] is False
    assert values["dags"]["persistence"]["enabled"] is False
    assert values["config"]["core"]["dags_folder"] == "/opt/airloop/dags"


def test_external_database_from_a_secret_and_statsd_on():
    values = helm_values()
    assert values["postgresql"]["enabled"] is False
    assert values["redis"]["enabled"] is False
    assert values["data"]["metadataSecretName"]
    assert "metadataConnection" not in values["data"]
    assert values["statsd"]["enabled"] is True
    for name in ("fernetKey", "apiSecretKey", "jwtSecret", "webserverSecretKey"):
        assert name not in values, f"{name}: an inline secret; name a Secret instead"


@pytest.mark.parametrize("component", ["scheduler", "workers", "triggerer"])
def test_service_accounts_have_fixed_names(component):
    """rbac.yaml binds them by name."""
    assert helm_values()[component]["serviceAccount"]["name"].startswith("airloop-airflow-")
