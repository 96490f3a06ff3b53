"""The loop at CI scale: ``AIRLOOP__*`` overrides that make a whole closed loop fit in minutes on
two cores (small monitor windows, short rollout holds, one small model family, a gate sized to
small batches). Used by the local stack's end-to-end tests (``tests/e2e/conftest.py``) and by
the production profile run on one machine (``tasks.platform.prodlocal``)."""

from __future__ import annotations

SMALL_LOOP: dict[str, str] = {
    # the monitor: a window of 200 live predictions, visible 8 s after they were answered
    "AIRLOOP__MONITOR__MIN_NEW_PREDICTIONS": "200",
    "AIRLOOP__MONITOR__POKE_INTERVAL_SECONDS": "3",
    "AIRLOOP__MONITOR__LOG_LAG_SECONDS": "8",
    "AIRLOOP__MONITOR__DRIFT__MIN_ROWS": "150",
    "AIRLOOP__MONITOR__DECISION__CONFIRM_WINDOWS": "1",
    "AIRLOOP__SERVING__INFERENCE_LOG__FLUSH_SECONDS": "4",
    # training: one small XGBoost, a gate sized to small batches
    "AIRLOOP__TRAIN__FAMILIES": "[xgboost]",
    "AIRLOOP__TRAIN__XGBOOST__MAX_ROUNDS": "60",
    "AIRLOOP__TRAIN__XGBOOST__GRID__MAX_DEPTH": "[4]",
    "AIRLOOP__GATE__MIN_HOLDOUT_POSITIVES": "5",
    "AIRLOOP__GATE__FAIRNESS__MIN_POSITIVES": "1000",
    # a hold-out of a few hundred rows and a dozen fraud rows: looser absolute floors, and no
    # segment small enough to be judged (tests/train holds the segment gate to account)
    "AIRLOOP__GATE__MIN_PR_AUC": "0.1",
    "AIRLOOP__GATE__MAX_LOG_LOSS": "0.2",
    **{
        f"AIRLOOP__GATE__SEGMENTS__COLUMNS__{col}__{key}": value
        for col in ("REGION", "CHANNEL", "MERCHANT_CATEGORY")
        for key, value in (("MIN_ROWS", "1000000"), ("MAX_UNJUDGED_SHARE", "1.0"))
    },
    # the rollout: every step held a few seconds on the test's traffic
    "AIRLOOP__ROLLOUT__SHADOW__HOLD_SECONDS": "3",
    "AIRLOOP__ROLLOUT__SHADOW__MIN_REQUESTS": "30",
    "AIRLOOP__ROLLOUT__CANARY": (
        "[{weight: 0.1, hold_seconds: 3, min_requests: 5}, {weight: 0.5, hold_seconds: 3, "
        "min_requests: 20}, {weight: 1.0, hold_seconds: 3, min_requests: 30}]"
    ),
    "AIRLOOP__ROLLOUT__POLL_SECONDS": "1",
}
"""Overrides that make the closed loop fit in CI (``tests/e2e/test_closed_loop.py``)."""
