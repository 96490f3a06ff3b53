"""Distributed training (``train.workers``): the same training set on one process and on two Ray
Train workers (a private local Ray: ``XGBoostTrainer`` over xgboost's collective, ``TorchTrainer``
with DDP on gloo) gives models of the same hold-out quality, both judged by the same gate, and
the registered version says how many workers trained it and with what resources.

Each run registers its own model, so both are gated alike (no champion to compare with). Most of
the two-worker run's time is Ray's: a local Ray and two worker actors per candidate start on a
busy two-core machine (minutes); the training itself takes seconds."""

from __future__ import annotations

import pytest

from tasks.training.run import run
from tests.services import release_shared_services

ROC_AUC_TOLERANCE = 0.02
PR_AUC_TOLERANCE = 0.06


def assert_like_one_process(one, two) -> None:
    """Each family's candidate trained by two workers passes the gate as the one-process one does,
    with hold-out ROC AUC and PR AUC within the tolerances of it."""
    by_family = {c.family: c for c in one.candidates}
    assert sorted(by_family) == sorted(c.family for c in two.candidates)
    for cand in two.candidates:
        base = by_family[cand.family]
        assert cand.device == "cpu x2" and base.device == "cpu"
        assert cand.passed and base.passed, (cand.reasons, base.reasons)
        assert abs(cand.metrics["roc_auc"] - base.metrics["roc_auc"]) < ROC_AUC_TOLERANCE, cand.family
        assert abs(cand.metrics["pr_auc"] - base.metrics["pr_auc"]) < PR_AUC_TOLERANCE, cand.family


"""How far a two-worker model's hold-out metrics may be from one process's: a 4-day hold-out
with a few dozen fraud rows, histograms sketched over two shards, DDP's shuffling per shard."""


@pytest.fixture
def no_ray_in_this_process() -> None:
    """The serving tests' session-wide Ray (its CPUs held by Serve replicas) would otherwise be
    the Ray training joins (``scaleout.session`` uses a Ray already up, as inside a Ray job), and
    its two workers would wait for CPUs for ever: those services are done by now, stop them."""
    import ray

    release_shared_services()
    assert not ray.is_initialized()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_workers_train_models_as_good_as_one_process_and_record_it(
    world, mlflow_client, no_ray_in_this_process
) -> None:
    lines: list[str] = []
    one_settings = world.settings()
    one = run(
        one_settings, world.training_set_uri, tracking_uri=world.tracking_uri, reason="one", say=lines.append
    )
    two_settings = world.settings(train__workers="2")  # its own model: no champion, as for ``one``
    two = run(
        two_settings, world.training_set_uri, tracking_uri=world.tracking_uri, reason="two", say=lines.append
    )
    print("\n".join(lines))

    assert_like_one_process(one, two)

    assert one.status == two.status == "registered"
    first = mlflow_client.get_model_version(one_settings.mlflow.registered_model, one.version)
    second = mlflow_client.get_model_version(two_settings.mlflow.registered_model, two.version)
    assert first.tags["train_workers"] == "1" and first.tags["train_worker_resources"] == "in-process"
    assert second.tags["train_workers"] == "2"
    assert second.tags["train_worker_resources"] == "cpus=1,gpus=0"
