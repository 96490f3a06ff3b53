"""The monitor's numbers per window, for Prometheus: pushed to a Pushgateway (a batch job has no
``/metrics`` of its own to scrape) when ``monitor.pushgateway_url`` is set.

``push_window`` runs where a window is decided (``decision.decide_window``) with the decision's
``as_dict()``: the drift share and its threshold, the score drift, live and hold-out ROC AUC
(absent while too few labels arrived), and the retrain decision. Each push replaces the
group ``job="airloop_monitor", model=<registered model>``, so a number this window did not
measure is absent rather than stale. A push that fails is logged and the monitor goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from tasks.common.clock import utc_timestamp
from tasks.monitoring.retrain import FAILED, MISSING

log = logging.getLogger(__name__)

JOB = "airloop_monitor"
PREFIX = "airloop_monitor"
PUSH_TIMEOUT_SECONDS = 5.0

GAUGES: dict[str, str] = {
    f"{PREFIX}_drift_share": "Share of the model's input columns that drifted in the latest window.",
    f"{PREFIX}_drift_share_threshold": "Drift share at which a window counts as data drift.",
    f"{PREFIX}_prediction_drift_score": "Score drift of the latest window against the reference.",
    f"{PREFIX}_live_roc_auc": "ROC AUC on the latest window's labelled predictions.",
    f"{PREFIX}_holdout_roc_auc": "The model's ROC AUC on its hold-out (what live is compared to).",
    f"{PREFIX}_window_rows": "Live predictions in the latest window.",
    f"{PREFIX}_retrain_triggered": "1 when the latest window's decision was to retrain.",
    f"{PREFIX}_retrain_failed": "1 when the last retrain the monitor triggered failed or never started.",
    f"{PREFIX}_window_end_timestamp_seconds": "End of the latest monitored window (Unix time).",
}
"""Every gauge pushed, by name (what dashboards and alerts may query)."""

NUMBERS = {
    f"{PREFIX}_drift_share": "drift_share",
    f"{PREFIX}_drift_share_threshold": "share_threshold",
    f"{PREFIX}_prediction_drift_score": "prediction_score",
    f"{PREFIX}_live_roc_auc": "roc_auc",
    f"{PREFIX}_holdout_roc_auc": "holdout_roc_auc",
    f"{PREFIX}_window_rows": "rows",
}
"""Gauges set from the decision's ``numbers`` (``WindowResult.numbers()``)."""


def window_values(decision: Mapping[str, Any]) -> dict[str, float]:
    """The gauges' values for one decided window (``Decision.as_dict()``); a number the window
    did not measure is left out."""
    numbers = decision.get("numbers") or {}
    values = {g: float(numbers[k]) for g, k in NUMBERS.items() if numbers.get(k) is not None}
    values[f"{PREFIX}_retrain_triggered"] = 1.0 if decision.get("retrain") else 0.0
    failed = decision.get("last_retrain_state") in (FAILED, MISSING)
    values[f"{PREFIX}_retrain_failed"] = 1.0 if failed else 0.0
    if decision.get("end"):
        values[f"{PREFIX}_window_end_timestamp_seconds"] = utc_timestamp(decision["end"]).timestamp()
    return values


def registry(values: Mapping[str, float], model_version: str) -> CollectorRegistry:
    """A registry holding ``values`` as gauges labelled with the model version."""
    reg = CollectorRegistry(auto_describe=False)
    for name, value in values.items():
        Gauge(name, GAUGES[name], ["model_version"], registry=reg).labels(model_version).set(value)
    return reg


def push_window(url: str | None, decision: Mapping[str, Any]) -> bool:
    """Push a decided window's gauges to the Pushgateway at ``url`` (``None``: nothing to do).
    True when pushed; a failure is logged, never raised."""
    if not url:
        return False
    model = str(decision.get("model_name") or "unknown")
    try:
        push_to_gateway(
            url,
            job=JOB,
            registry=registry(window_values(decision), str(decision.get("model_version") or "")),
            grouping_key={"model": model},
            timeout=PUSH_TIMEOUT_SECONDS,
        )
    except Exception as exc:  # noqa: BLE001 - metrics are a side channel: the monitor goes on
        log.warning("monitor: could not push window %s to %s: %s", decision.get("window_id"), url, exc)
        return False
    return True
