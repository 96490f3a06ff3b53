"""A seeded simulator of card transactions that plays the upstream systems of airloop.

It builds a fixed world (customers, merchants) from the configured seed and produces hourly (or
``batch_minutes``) batches that honour the configured schema, so the whole loop can be exercised
without real data: stable traffic, covariate drift, concept drift and deliberately bad batches
that validation must quarantine. ``notify_airflow`` posts the asset event an upstream system would.

    airloop simulate --scenario stable --batches 3 --notify

Parts: ``world`` (customers and merchants), ``generator`` (the mechanisms that draw one window's
transactions), ``batches`` (scenarios, one batch as a typed frame, serialising), ``bad_batches``
(one deliberate defect each), ``upstream`` (landing files, asset events, a run of batches). This
module re-exports what callers use; the names alone are in ``tasks.platform.scenarios``.
"""

from tasks.platform.scenarios import BAD_KINDS, FORMATS, SCENARIOS
from tasks.platform.simulate.bad_batches import BadBatch, make_bad_batch
from tasks.platform.simulate.batches import batch_name, generate_batch, schema_dtypes, to_bytes
from tasks.platform.simulate.upstream import (
    BatchPlan,
    NotifyError,
    history_end,
    land,
    landed_batches,
    notify_airflow,
    write_bad_batch,
    write_batch,
)
from tasks.platform.simulate.world import World, world_for

__all__ = [
    "BAD_KINDS",
    "FORMATS",
    "SCENARIOS",
    "BadBatch",
    "BatchPlan",
    "NotifyError",
    "World",
    "batch_name",
    "generate_batch",
    "history_end",
    "land",
    "landed_batches",
    "make_bad_batch",
    "notify_airflow",
    "schema_dtypes",
    "to_bytes",
    "world_for",
    "write_bad_batch",
    "write_batch",
]
