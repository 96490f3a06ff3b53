"""The features DAG's rules and the CLI, without Airflow and without Feast."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tasks.common.outcomes import Skip
from tasks.features.materialization import materialize, materialize_refresh
from tasks.features.tables import FeatureChanges


def test_feature_changes_round_trip_through_their_dict():
    changes = FeatureChanges(
        batches=["b-1"],
        dates=["2026-01-01"],
        rows={"customer_activity": 3, "merchant_risk": 2},
        start="2026-01-01T00:05:00+00:00",
        end="2026-01-01T00:55:00+00:00",
    )
    assert FeatureChanges.from_dict(changes.as_dict()) == changes
    assert changes.rewritten and not FeatureChanges(batches=["b-2"]).rewritten


def test_nothing_rewritten_skips_materialize_before_touching_the_store(settings):
    # an empty home: reaching Feast would create a registry, so the rule must answer first
    with pytest.raises(Skip, match="online store is already current"):
        materialize_refresh(settings, FeatureChanges(batches=["b-1"]).as_dict())
    assert materialize(settings, FeatureChanges()) == []


def test_the_cli_answers_help_without_importing_feast():
    probe = "import sys, tasks.features.cli; print('feast' in sys.modules, 'pandas' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["False", "False"]
    helped = subprocess.run(
        [sys.executable, "-m", "tasks.features", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("refresh", "apply", "status", "lookup", "yaml"):
        assert command in helped.stdout
