"""Sections of monitoring: drift tests, live performance, the retrain decision."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config.base import Section

DriftMethod = Literal[
    "wasserstein",
    "ks",
    "psi",
    "jensenshannon",
    "chisquare",
    "kl_div",
    "hellinger",
    "TVD",
    "anderson",
    "cramer_von_mises",
    "ed",
    "es",
    "mannw",
    "t_test",
    "z",
    "g_test",
    "fisher_exact",
    "empirical_mmd",
]
"""Evidently's drift tests by name. Distances (``wasserstein``, ``psi``, ``jensenshannon``,
``kl_div``, ``hellinger``, ``TVD``, ``ed``) flag drift at or above their threshold; the others are
statistical tests whose score is a p-value, flagged at or below it."""


class MonitorDrift(Section):
    """Data drift per input column and prediction (score) drift, computed by Evidently."""

    numeric_method: DriftMethod = "wasserstein"
    numeric_threshold: float | None = 0.1
    """``None``: the test's own default threshold."""
    categorical_method: DriftMethod = "jensenshannon"
    categorical_threshold: float | None = 0.1
    per_column_method: dict[str, DriftMethod] = {}
    per_column_threshold: dict[str, float] = {}
    share_threshold: float = Field(0.3, gt=0, le=1)
    """Data drift: at least this share of the model's input columns drifted."""
    prediction_method: DriftMethod = "psi"
    prediction_threshold: float | None = 0.1
    min_rows: int = Field(500, ge=1)
    """A window with fewer live predictions is recorded but not judged."""
    max_rows: int = Field(50_000, ge=1000)
    """Uniform sample size per side (window, reference) above which drift runs on a sample; the
    bound on the error this adds is recorded with every window (see ``tasks.monitoring.drift``)."""
    error_confidence: float = Field(0.95, gt=0, lt=1)
    """Confidence of the recorded sampling error bound (Dvoretzky-Kiefer-Wolfowitz)."""
    seed: int = 0


class MonitorPerformance(Section):
    """Live performance on predictions whose delayed labels have arrived, against the champion's
    numbers on its own hold-out (same threshold, same code)."""

    lookback_hours: float = Field(24.0, gt=0)
    """Labelled predictions made in the last this-many hours before the window's end count."""
    threshold: float | None = Field(None, ge=0, le=1)
    """Decision threshold for precision and recall; ``None``: ``serving.threshold``."""
    min_labels: int = Field(500, ge=1)
    min_positives: int = Field(30, ge=1)
    """Fewer labelled rows or fraud labels: performance is reported but not judged."""
    roc_auc_tolerance: float | None = Field(0.05, ge=0)
    """Degraded when live ROC AUC is below the hold-out's by more than this (``None``: not checked)."""
    recall_tolerance: float | None = Field(0.25, ge=0)
    precision_tolerance: float | None = Field(None, ge=0)


class MonitorEstimation(Section):
    """Performance estimated from the calibrated scores alone, before labels arrive (CBPE,
    ``tasks.monitoring.estimation``)."""

    enabled: bool = True
    """Estimate and show it beside realised performance."""
    confidence: float = Field(0.95, gt=0, lt=1)
    """The band's two-sided confidence (from the window's size)."""
    lookback_hours: float = Field(24.0, gt=0)
    """The estimate covers the champion's live scores of the last this-many hours before the
    window's end, labelled or not: one hour holds too few expected fraud rows for a recall to act
    on (at 600 predictions an hour, about four)."""
    max_rows: int = Field(100_000, ge=1)
    """At most this many of those scores, sampled uniformly (the band widens to match)."""
    min_rows: int = Field(200, ge=1)
    """Fewer scored rows: no estimate."""
    max_holdout_ece: float = Field(0.02, gt=0)
    """Not trusted when the champion's hold-out calibration error is above this: CBPE reads
    probabilities as the truth."""
    max_out_of_support: float = Field(0.05, ge=0, le=1)
    """Not trusted when more than this share of the window's rows lies outside the reference's
    support (a number outside its range, a category it never saw)."""
    trigger: bool = False
    """A trusted estimate that fell below the same estimate of the champion's hold-out by more
    than the performance tolerances (``monitor.performance``) triggers a retrain before labels
    arrive."""


class MonitorDecision(Section):
    """When a window's drift or performance leads to a retrain."""

    cooldown_hours: float = Field(6.0, ge=0)
    """No retrain within this long after the last one (no retrain storms)."""
    failed_retry_hours: float = Field(1.0, ge=0)
    """After a retrain the monitor triggered failed (its train run ended failed, or never
    started), a triggered window may retry this long after it instead of waiting out the
    cooldown (the shorter of the two applies)."""
    confirm_windows: int = Field(2, ge=1)
    """Drift must hold in this many consecutive windows (this one included) to trigger."""
    on_prediction_drift: bool = True
    """Prediction drift alone triggers a retrain (reason ``drift``)."""


class Monitor(Section):
    """The monitor DAG: when it looks, what it compares, when it asks for a retrain."""

    cron: str = "*/15 * * * *"
    min_new_predictions: int = Field(1000, ge=1)
    """The sensor waits until the inference log holds this many live predictions since the last
    monitored window."""
    poke_interval_seconds: float = Field(60.0, gt=0)
    sensor_timeout_hours: float = Field(6.0, gt=0)
    log_lag_seconds: float = Field(60.0, ge=0)
    """A window ends this long before the sensor's check, so predictions still buffered by
    serving's inference-log writers (``serving.inference_log.flush_seconds``) are in it when read."""
    first_window_hours: float = Field(24.0, gt=0)
    """With no window monitored yet, the first one starts this long before its end."""
    routes: list[str] = ["champion", "challenger"]
    """Inference-log routes that are live traffic (``shadow`` mirrors them, ``smoke`` is a test)."""
    store_dir: str = "monitoring"
    """Metrics and decisions per window, under ``storage.data_uri``."""
    reports_dir: str = "monitoring"
    """HTML reports, under ``storage.reports_uri``."""
    summary_days: float = Field(7.0, gt=0)
    """The summary page (``index.html``) covers this many days."""
    pushgateway_url: str | None = None
    """A Prometheus Pushgateway that gets each monitored window's numbers (drift share, live ROC
    AUC, the retrain decision: ``tasks.monitoring.gauges``); ``None``: nothing is pushed."""
    drift: MonitorDrift = MonitorDrift()
    performance: MonitorPerformance = MonitorPerformance()
    estimation: MonitorEstimation = MonitorEstimation()
    decision: MonitorDecision = MonitorDecision()
