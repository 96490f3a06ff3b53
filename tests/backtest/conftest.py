"""The backtest tests' small scale: hourly windows of 300 transactions, a 3-day training history,
one small XGBoost; the monitor's thresholds scaled to the window's size."""

from __future__ import annotations

from typing import Any

SMALL: dict[str, Any] = {
    "train_days": 3,
    "rows_per_hour": 300,
    "label_delay_hours": [1, 4],
    "retrain_hours": 1,
    "quality_hours": 12,
    "settings": {
        "simulate": {"ramp_batches": 12},
        "train": {
            "families": ["xgboost"],
            "device": "cpu",
            "latency_rows": 200,
            "xgboost": {"max_rounds": 60, "early_stopping_rounds": 10, "grid": {"max_depth": [4]}},
        },
        "gate": {"min_pr_auc": 0.2, "min_holdout_positives": 10},
        "monitor": {
            "drift": {"min_rows": 200, "max_rows": 5000},
            "performance": {"lookback_hours": 12, "min_labels": 300, "min_positives": 8},
            "decision": {"cooldown_hours": 6, "confirm_windows": 2},
        },
    },
}
