"""Training sets and training itself: content-addressed data versions, determinism with a seed,
the CLI contract (``python -m tasks.training``) and the MLflow service of the local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from config import PROJECT_ROOT
from tasks.common import storage
from tasks.platform import stack
from tasks.training import cli, dataset
from tasks.training.candidates import plan
from tasks.training.families.base import model_input
from tasks.training.job import prepare
from tasks.training.result import TrainingResult


def test_training_set_is_content_addressed_and_records_its_version(world):
    settings = world.settings()
    again = dataset.build(settings)
    assert again.sha256 == world.data_sha256 and again.uri == world.training_set_uri
    frame, version = dataset.read(settings, world.training_set_uri)
    assert version.sha256 == world.data_sha256
    assert version.rows == len(frame) == 16_000
    assert version.positives == int(frame.is_fraud.sum()) > 100
    assert version.feature_service == "fraud_features_v1"
    assert version.partitions == ["event_date=2026-01-01", "event_date=2026-01-02"]
    assert len(version.batches) == 4
    assert frame.event_timestamp.is_monotonic_increasing
    assert list(frame.columns[-len(version.features) :]) == version.features


def test_a_training_set_changed_after_it_was_built_is_refused(world, tmp_path):
    settings = world.settings()
    copy = storage.join(tmp_path.as_uri(), "ts.parquet")
    frame, _ = dataset.read(settings, world.training_set_uri)
    storage.write_bytes(copy, dataset.to_parquet_bytes(frame.head(100)))
    recorded = world.training_set_uri.rsplit(".", 1)[0] + ".json"
    storage.write_bytes(copy.rsplit(".", 1)[0] + ".json", storage.read_bytes(recorded))
    with pytest.raises(dataset.TrainingDataError, match="changed after it was built"):
        dataset.read(settings, copy)
    with pytest.raises(dataset.TrainingDataError, match="no training set at"):
        dataset.read(settings, storage.join(tmp_path.as_uri(), "missing.parquet"))


@pytest.mark.parametrize("family", ["xgboost", "mlp"])
def test_training_is_deterministic_with_a_seed(world, family):
    settings = world.settings()
    job = prepare(settings, world.training_set_uri, tracking_uri=world.tracking_uri, say=lambda _: None)
    cand = next(c for c in plan(settings) if c.family == family)
    holdout = model_input(job.split.holdout, job.spec)
    first, second = cand.fit(job.fit), cand.fit(job.fit)
    assert first.best_iteration == second.best_iteration
    assert first.history == second.history
    np.testing.assert_array_equal(first.model.predict_proba(holdout), second.model.predict_proba(holdout))
    other = prepare(
        world.settings(train__seed="7"),
        world.training_set_uri,
        tracking_uri=world.tracking_uri,
        say=lambda _: None,
    )
    assert not np.array_equal(
        cand.fit(other.fit).model.predict_proba(holdout), first.model.predict_proba(holdout)
    )


def test_plan_expands_the_configured_grids_in_order(world):
    settings = world.settings(
        train__families="[xgboost, mlp]",
        train__xgboost__grid__max_depth="[3, 5]",
        train__xgboost__grid__learning_rate="[0.05, 0.1]",
    )
    names = [c.name for c in plan(settings)]
    assert names == [
        "xgboost(max_depth=3,learning_rate=0.05)",
        "xgboost(max_depth=3,learning_rate=0.1)",
        "xgboost(max_depth=5,learning_rate=0.05)",
        "xgboost(max_depth=5,learning_rate=0.1)",
        "mlp",
    ]


def test_cli_writes_the_result_json_and_exits_zero_when_the_gate_says_no(world, tmp_path):
    out = tmp_path / "xcom" / "return.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOOP")} | world.env
    env |= {
        "AIRLOOP__MLFLOW__REGISTERED_MODEL": "fraud-cli",
        "AIRLOOP__TRAIN__FAMILIES": "[prior]",
        "MLFLOW_TRACKING_URI": world.tracking_uri,  # the default of --tracking-uri
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    context = {"dag_id": "train", "run_id": "scheduled__2026-01-04", "reason": "schedule"}
    cmd = [sys.executable, "-m", "tasks.training", "--training-set-uri", world.training_set_uri]
    cmd += ["--run-context", json.dumps(context), "--output", str(out)]
    proc = subprocess.run(
        cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == result
    assert result["status"] == "rejected" and result["version"] is None
    assert result["tracking_uri"] == world.tracking_uri
    assert result["context"] == {**context, "drift": None}
    assert result["data_version"]["sha256"] == world.data_sha256
    assert result["reasons"] and all(r.startswith("prior: FAIL") for r in result["reasons"])
    assert set(result) >= {
        "mlflow_run_id",
        "run_url",
        "registered_model",
        "model_uri",
        "model_sha256",
        "model_card_uri",
        "model_card_url",
        "candidates",
        "champion",
        "split",
        "git_commit",
        "device",
        "seconds",
    }
    assert "NOTHING REGISTERED" in proc.stdout and "prior" in proc.stdout
    # the typed result reads the pod's JSON back whole
    typed = TrainingResult.from_dict(result)
    assert typed.as_dict() == result
    assert typed.candidates[0].failed_checks == result["candidates"][0]["failed_checks"]
    assert typed.context.dag_run_id == context["run_id"] and typed.data_sha256 == world.data_sha256


def test_cli_help_is_quick_to_load():
    """``--help`` (and ``airloop train --help``) must not wait for mlflow, pandas or torch."""
    probe = (
        "import sys\n"
        "from tasks.training import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "print(sorted(m for m in ('mlflow', 'pandas', 'numpy', 'torch', 'xgboost') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "--training-set-uri" in proc.stdout and "--run-context" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_cli_refuses_a_missing_training_set_with_exit_status_1(world, capsys):
    code = cli.main(
        ["--training-set-uri", "file:///nowhere/ts.parquet", "--tracking-uri", world.tracking_uri]
    )
    assert code == 1
    assert "error: no training set at file:///nowhere/ts.parquet" in capsys.readouterr().err


def test_mlflow_is_a_service_of_the_local_stack(world):
    settings = world.settings()
    assert stack.MLFLOW in stack.SERVICES
    st = stack.status(settings, services=[stack.MLFLOW])
    assert st["services"]["mlflow"]["health"] == "healthy"
    assert st["mlflow_url"] == world.tracking_uri
    pid = st["services"]["mlflow"]["pid"]
    again = stack.start(settings, services=[stack.MLFLOW], quiet=True)  # idempotent
    assert again["mlflow"] == pid and set(again) == {"postgres", "mlflow"}  # with the database it needs
    cmd = stack.MLFLOW.command(settings)
    assert "--backend-store-uri" not in cmd, "the store's URI holds a password: environment only"
    backend = stack.MLFLOW.env(settings)["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql+psycopg://airloop:") and "/mlflow?host=" in backend
    assert cmd[cmd.index("--artifacts-destination") + 1] == f"file://{world.home}/data/mlflow/artifacts"
    assert "--serve-artifacts" in cmd
    assert stack.airflow_vars(settings)["MLFLOW_TRACKING_URI"] == world.tracking_uri


def test_airloop_train_without_a_training_set_builds_one_first(world, tmp_path):
    """What a user runs by hand: the same training set the DAG's first task builds, then training."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOOP")} | world.env
    env |= {
        "AIRLOOP__MLFLOW__REGISTERED_MODEL": "fraud-cli-build",
        "AIRLOOP__TRAIN__FAMILIES": "[prior]",
        "MLFLOW_TRACKING_URI": world.tracking_uri,
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    out = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "tasks.platform.cli", "train", "--reason", "manual", "--output", str(out)]
    proc = subprocess.run(
        cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training set " in proc.stdout
    result = json.loads(out.read_text())
    assert result["data_version"]["sha256"] == world.data_sha256
    assert result["status"] == "rejected" and result["context"]["reason"] == "manual"
