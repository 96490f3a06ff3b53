"""Training under torchrun (``training_pod.runner: torchrun``), for real on CPU: the training pod's
own command, ``torchrun --standalone --nproc_per_node=2 -m tasks.training ...``, runs two ranks
joined over gloo against the session's MLflow. Rank 0 reads the data, drives both families on
both ranks (XGBoost through its collective, the MLP under DDP: the loops Ray Train's workers run),
gates, registers and prints the result; rank 1 trains beside it and exits 0 having written
nothing. Its models are judged by the same gate as one process's, on the same training set, and
come within the tolerances below of them; the registered version says 2 workers, on gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import PROJECT_ROOT
from tasks.training import torchrun
from tasks.training.result import TrainingResult
from tasks.training.run import run
from tests.train.test_scaleout import assert_like_one_process

"""How far a two-rank model's hold-out metrics may be from one process's (as for two Ray Train
workers, ``test_scaleout``): a 4-day hold-out with a few dozen fraud rows, histograms sketched
over two shards, DDP's shuffling per shard."""
RANKS = {"AIRLOOP__TRAINING_POD__RUNNER": "torchrun", "AIRLOOP__TRAINING_POD__TORCHRUN__NPROC_PER_NODE": "2"}


def _torchrun(world, name: str, out: Path, uri: str | None = None) -> subprocess.CompletedProcess[str]:
    """The pod's command as the rendered config says, with this environment's torchrun."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOOP")} | world.env | RANKS
    env |= {"AIRLOOP__MLFLOW__REGISTERED_MODEL": name, "PYTHONPATH": str(PROJECT_ROOT)}
    command = torchrun.command(world.settings(name, **_overrides(RANKS)))
    assert command[:3] == ["torchrun", "--standalone", "--nproc_per_node=2"]
    command[0] = str(Path(sys.executable).parent / "torchrun")
    command += ["--training-set-uri", uri or world.training_set_uri, "--tracking-uri", world.tracking_uri]
    command += ["--reason", "torchrun", "--output", str(out)]
    return subprocess.run(
        command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=800, check=False
    )


def _overrides(env: dict[str, str]) -> dict[str, str]:
    return {k.removeprefix("AIRLOOP__").lower(): v for k, v in env.items()}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_torchrun_ranks_train_models_as_good_as_one_process_and_record_it(
    world, mlflow_client, tmp_path
) -> None:
    one_settings = world.settings()
    one = run(one_settings, world.training_set_uri, tracking_uri=world.tracking_uri, reason="one")
    name, out = f"fraud-torchrun-{time.monotonic_ns() % 10**8}", tmp_path / "return.json"
    started = time.monotonic()
    proc = _torchrun(world, name, out)
    log = "\n".join(line for line in proc.stdout.splitlines() if line.startswith("[train]"))
    print(f"torchrun, 2 ranks: {time.monotonic() - started:.0f} s\n{log[-3000:]}")
    assert proc.returncode == 0, proc.stderr[-4000:]

    result = TrainingResult.from_dict(json.loads(out.read_text()))
    results = [line for line in proc.stdout.splitlines() if line.startswith('{"status"')]
    assert [json.loads(line) for line in results] == [result.as_dict()]  # rank 0 alone printed it
    assert proc.stdout.strip().splitlines()[-1] == results[0]
    assert result.status == one.status == "registered", result.reasons
    assert result.data_sha256 == world.data_sha256 and result.context.reason == "torchrun"
    assert sorted(c.family for c in result.candidates) == ["mlp", "xgboost"]
    assert_like_one_process(one, result)

    version = mlflow_client.get_model_version(name, result.version)
    assert version.tags["train_workers"] == "2"
    assert version.tags["train_worker_resources"] == "torchrun,backend=gloo,gpus=0"
    assert version.tags["model_sha256"] == result.model_sha256
    first = mlflow_client.get_model_version(one_settings.mlflow.registered_model, one.version)
    assert first.tags["train_workers"] == "1" and first.tags["train_worker_resources"] == "in-process"


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_when_rank_0_fails_the_whole_torchrun_fails_with_its_error(world, tmp_path) -> None:
    """An unusable training set: rank 0 exits 1 with its error, so torchrun (the pod) fails at
    once instead of leaving rank 1 waiting for requests, and no result is written or printed."""
    out = tmp_path / "return.json"
    started = time.monotonic()
    proc = _torchrun(world, "fraud-torchrun-fails", out, (tmp_path / "nowhere.parquet").as_uri())
    print(f"torchrun, 2 ranks, failing: {time.monotonic() - started:.0f} s")
    assert proc.returncode != 0
    assert "error: no training set at" in proc.stderr
    assert not out.exists() and '{"status"' not in proc.stdout
