"""The per-worker training loops of distributed candidates, and their Ray Train wrappers.

A distributed run has one driver, which encodes the splits once and gives each worker its shard,
and ``n`` workers that run the same loop on their shard: ``xgb_loop`` or ``mlp_loop``. Two
launchers call the loops, so there is one training loop per family whatever starts the workers:

- Ray Train (``tasks.training.scaleout``, ``train.workers`` > 1): ``xgb_worker`` and
  ``mlp_worker`` take the shard from Ray's object store (``config["shards"][rank]``), run the loop
  and report; rank 0 reports the trained model as a checkpoint directory (``MODEL_FILE`` and
  ``META_FILE``); every worker reports, since Ray Train's ``report`` is a barrier.
- torchrun (``tasks.training.torchrun``, ``training_pod.runner: torchrun``): the ranks of one pod
  receive their shard from rank 0 over torch.distributed and call the loops directly.

- XGBoost (``xgb_loop``): run inside xgboost's collective context (Ray Train's
  ``XGBoostTrainer`` or the torchrun ranks' tracker), so ``xgb.train`` builds histograms over
  every worker's rows and evaluates the validation metrics (early stopping) on all shards together.
- MLP (``mlp_loop``): under DDP (gloo on CPU, NCCL on GPU); each worker walks its own equal-sized
  shard in mini-batches of ``batch_size / workers`` rows (the global batch of one process),
  gradients are averaged, and every worker scores the whole validation split, so the
  early-stopping decision is the same everywhere.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.training.families.mlp import EarlyStopping, Tensors, _epoch, _layers, _network, _validate

if TYPE_CHECKING:
    import torch

MODEL_FILE = "model.bin"
META_FILE = "meta.json"

Trained = tuple[bytes, dict[str, Any]]
"""A loop's outcome: the model's bytes (UBJSON trees, or the layers as ``np.savez``) and its meta
(``best`` round or epoch, the ``history`` of metrics)."""


def xgb_loop(data: dict[str, np.ndarray], config: dict[str, Any]) -> Trained:
    """One XGBoost worker (inside the collective): its shard as DMatrices, ``xgb.train``."""
    import xgboost as xgb  # noqa: PLC0415 - training workers only

    dtrain = xgb.DMatrix(data["x_train"], label=data["y_train"])
    dvalid = xgb.DMatrix(data["x_valid"], label=data["y_valid"], weight=data["w_valid"])
    history: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        config["params"],
        dtrain,
        num_boost_round=config["rounds"],
        evals=[(dtrain, "train"), (dvalid, "valid")],
        evals_result=history,
        early_stopping_rounds=config["early_stopping_rounds"],
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    booster.set_param({"device": "cpu"})
    flat = {f"{split}_{metric}": v for split, ms in history.items() for metric, v in ms.items()}
    return bytes(booster.save_raw("ubj")), {"best": best, "history": flat}


def mlp_loop(
    data: dict[str, np.ndarray],
    config: dict[str, Any],
    *,
    rank: int,
    world: int,
    device: torch.device,
    wrap: Callable[[torch.nn.Module], torch.nn.Module],
) -> Trained:
    """One MLP worker: its shard, the whole validation split, one early stopping. ``wrap`` puts
    the network on ``device`` under DDP (the launcher's way: Ray's ``prepare_model``, or
    ``DistributedDataParallel`` under torchrun)."""
    import torch  # noqa: PLC0415 - training workers only

    params, seed = config["params"], int(config["seed"])
    torch.manual_seed(seed)
    tensors = Tensors(
        *(torch.as_tensor(data[k], device=device) for k in ("x_train", "y_train", "x_valid", "y_valid"))
    )
    net = wrap(_network(tensors.x_train.shape[1], list(params["hidden"]), float(params["dropout"])))
    optimizer = torch.optim.Adam(
        net.parameters(), lr=float(params["learning_rate"]), weight_decay=float(params["weight_decay"])
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(config["pos_weight"], device=device))
    stopping, batch = EarlyStopping(int(config["patience"])), max(1, int(config["batch_size"]) // world)
    rng = np.random.default_rng([seed, rank])
    for epoch in range(int(config["max_epochs"])):
        order = torch.as_tensor(rng.permutation(len(tensors.x_train)), device=device)
        train_loss = _epoch(net, tensors, optimizer, loss_fn, order=order, batch=batch)
        if stopping.update(epoch, net, train_loss, *_validate(net, tensors, loss_fn, data["y_valid"])):
            break
    assert stopping.best_state is not None  # max_epochs >= 1
    layers = _layers({k.removeprefix("module."): v for k, v in stopping.best_state.items()})
    buffer = io.BytesIO()
    np.savez(buffer, *[a for layer in layers for a in layer])
    return buffer.getvalue(), {"best": stopping.best_epoch, "history": stopping.history}


def _report(rank: int, metrics: dict[str, Any], trained: Trained) -> None:
    """Every worker reports (a barrier); rank 0 attaches the model as a checkpoint."""
    import ray.train  # noqa: PLC0415 - Ray only inside a worker

    if rank != 0:
        ray.train.report(metrics)
        return
    payload, meta = trained
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, MODEL_FILE), "wb") as fh:
            fh.write(payload)
        with open(os.path.join(tmp, META_FILE), "w") as fh:
            json.dump(meta, fh)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _shard(config: dict[str, Any]) -> tuple[int, int, dict[str, np.ndarray]]:
    import ray  # noqa: PLC0415 - see _report
    import ray.train  # noqa: PLC0415 - see _report

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    return rank, world, dict(ray.get(config["shards"][rank]))


def xgb_worker(config: dict[str, Any]) -> None:
    """A Ray Train XGBoost worker (``XGBoostTrainer`` runs it inside the collective)."""
    rank, _, data = _shard(config)
    trained = xgb_loop(data, config)
    _report(rank, {"best_iteration": trained[1]["best"]}, trained)


def mlp_worker(config: dict[str, Any]) -> None:
    """A Ray Train MLP worker (``TorchTrainer`` set up the process group)."""
    import ray.train.torch  # noqa: PLC0415 - see _report

    rank, world, data = _shard(config)
    device, wrap = ray.train.torch.get_device(), ray.train.torch.prepare_model
    trained = mlp_loop(data, config, rank=rank, world=world, device=device, wrap=wrap)
    _report(rank, {"best_epoch": trained[1]["best"]}, trained)
