"""What the simulator can produce, by name: scenarios, bad-batch kinds and file formats.

A leaf without numpy or pandas, so ``airloop --help`` can offer these names as choices without
loading the simulator.
"""

from __future__ import annotations

SCENARIOS: tuple[str, ...] = ("stable", "covariate_drift", "concept_drift", "ramp")
"""Good batches: steady traffic, inputs that drift, fraud that changes its pattern, or ``ramp``:
covariate drift that grows over ``simulate.ramp_batches`` batches (a slow drift that a policy
with a coarse threshold sees late)."""

BAD_KINDS: tuple[str, ...] = (
    "wrong_schema",
    "missing_column",
    "nulls",
    "duplicate_ids",
    "out_of_range",
    "wrong_types",
    "empty",
    "corrupt",
)
"""Batches with one deliberate defect, which validation must quarantine."""

FORMATS: tuple[str, ...] = ("parquet", "csv")
