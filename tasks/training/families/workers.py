"""What each Ray Train worker runs: its shard of the encoded splits, one family's training loop.

The driver (``tasks.training.scaleout``) encodes the splits once and puts one shard per worker in
Ray's object store; ``config["shards"][rank]`` is this worker's. Rank 0 reports the trained model
as a checkpoint directory (``MODEL_FILE`` and ``META_FILE``); every worker reports, since Ray
Train's ``report`` is a barrier.

- XGBoost (``xgb_worker``): ``XGBoostTrainer`` wraps the loop in xgboost's collective context, so
  ``xgb.train`` builds histograms over every worker's rows and evaluates the validation metrics
  (early stopping) on all shards together.
- MLP (``mlp_worker``): ``TorchTrainer`` runs the loop under DDP (gloo on CPU, NCCL on GPU); each
  worker walks its own equal-sized shard in mini-batches of ``batch_size / workers`` rows (the
  global batch of one process), gradients are averaged, and every worker scores the whole
  validation split, so the early-stopping decision is the same everywhere.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Any

import numpy as np

from tasks.training.families.mlp import EarlyStopping, Tensors, _epoch, _layers, _network, _validate

MODEL_FILE = "model.bin"
META_FILE = "meta.json"


def _report(rank: int, metrics: dict[str, Any], payload: bytes, meta: dict[str, Any]) -> None:
    """Every worker reports (a barrier); rank 0 attaches the model as a checkpoint."""
    import ray.train  # noqa: PLC0415 - Ray only inside a worker

    if rank != 0:
        ray.train.report(metrics)
        return
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
    """One XGBoost worker: its shard as DMatrices, ``xgb.train`` inside the collective."""
    import xgboost as xgb  # noqa: PLC0415 - training workers only

    rank, _, data = _shard(config)
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
    _report(rank, {"best_iteration": best}, bytes(booster.save_raw("ubj")), {"best": best, "history": flat})


def mlp_worker(config: dict[str, Any]) -> None:
    """One MLP worker under DDP: its shard, the whole validation split, one early stopping."""
    import ray.train.torch  # noqa: PLC0415 - see _report
    import torch  # noqa: PLC0415 - training workers only

    rank, world, data = _shard(config)
    params, seed = config["params"], int(config["seed"])
    torch.manual_seed(seed)
    dev = ray.train.torch.get_device()
    tensors = Tensors(
        *(torch.as_tensor(data[k], device=dev) for k in ("x_train", "y_train", "x_valid", "y_valid"))
    )
    net = _network(tensors.x_train.shape[1], list(params["hidden"]), float(params["dropout"]))
    net = ray.train.torch.prepare_model(net)
    optimizer = torch.optim.Adam(
        net.parameters(), lr=float(params["learning_rate"]), weight_decay=float(params["weight_decay"])
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(config["pos_weight"], device=dev))
    stopping, batch = EarlyStopping(int(config["patience"])), max(1, int(config["batch_size"]) // world)
    rng = np.random.default_rng([seed, rank])
    for epoch in range(int(config["max_epochs"])):
        order = torch.as_tensor(rng.permutation(len(tensors.x_train)), device=dev)
        train_loss = _epoch(net, tensors, optimizer, loss_fn, order=order, batch=batch)
        if stopping.update(epoch, net, train_loss, *_validate(net, tensors, loss_fn, data["y_valid"])):
            break
    assert stopping.best_state is not None  # max_epochs >= 1
    layers = _layers({k.removeprefix("module."): v for k, v in stopping.best_state.items()})
    buffer = io.BytesIO()
    np.savez(buffer, *[a for layer in layers for a in layer])
    payload = buffer.getvalue()
    meta = {"best": stopping.best_epoch, "history": stopping.history}
    _report(rank, {"best_epoch": stopping.best_epoch}, payload, meta)
