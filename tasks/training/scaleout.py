"""Candidates trained data-parallel: on Ray Train when ``train.workers`` > 1, or on the ranks of
a ``torchrun`` pod (``training_pod.runner: torchrun``, ``tasks.training.torchrun``).

The driver fits the encoder on the training split (as one process does), encodes the splits,
cuts one shard per worker and runs the family's worker loop (``families.workers``) on every
worker: through ``XGBoostTrainer`` or ``TorchTrainer`` with ``training_pod.ray.worker`` resources
per worker (the shards in Ray's object store), or on the torchrun ranks (rank 0 is the driver;
the shards travel over torch.distributed). The trained trees or weights come back from rank 0 and
become the same ``FraudModel`` one process makes, Platt-calibrated on the validation split here,
so evaluation, the gate, registration and the model card never know how many workers trained it.

``session`` gives the run its Ray: the cluster at ``training_pod.ray.address`` (``auto`` inside a
Ray job), or a private local one (``address="local"``, its own temp dir, no dashboard) started
for the run and stopped after it.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from tasks.common import storage
from tasks.training import torchrun
from tasks.training.families import Fitted, workers, xgb
from tasks.training.families.base import Encoder, FraudModel
from tasks.training.families.mlp import MLPScorer

if TYPE_CHECKING:
    from config import Settings
    from tasks.training.families.base import InputSpec

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: the private Ray's workers import ``tasks`` from it."""


class FitContext(Protocol):
    """What a candidate's fit gets (``tasks.training.candidates.FitContext``)."""

    settings: Settings
    spec: InputSpec
    pos_weight: float
    seed: int

    def arrays(self) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]: ...


def scale_tags(settings: Settings) -> dict[str, str]:
    """How candidates were trained, for the run and the registered version's tags."""
    if torchrun.launched():
        return torchrun.scale_tags(settings)
    w = settings.training_pod.ray.worker
    memory = f",memory_mb={w.memory_mb}" if w.memory_mb else ""
    resources = f"cpus={w.cpus:g},gpus={w.gpus:g}{memory}" if settings.train.workers > 1 else "in-process"
    return {"train_workers": str(settings.train.workers), "train_worker_resources": resources}


@contextmanager
def session(settings: Settings) -> Iterator[None]:
    """Ray for distributed candidates; nothing with one worker, under torchrun (its ranks are the
    workers) or when Ray is already up."""
    if settings.train.workers <= 1 or torchrun.launched():
        yield
        return
    import ray  # noqa: PLC0415 - only runs with workers > 1 load Ray

    if ray.is_initialized():
        yield
        return
    cfg = settings.training_pod.ray
    if cfg.address:
        ray.init(address=cfg.address, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()
        return
    temp = tempfile.mkdtemp(prefix="airloop-ray-")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        address="local",
        num_cpus=math.ceil(settings.train.workers * cfg.worker.cpus) + 1,
        num_gpus=math.ceil(settings.train.workers * cfg.worker.gpus),
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=temp,
        runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_WAIT_POLICY": "PASSIVE"}},
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


Shard = dict[str, np.ndarray]


def _shards(n: int, split: Shard, whole: Shard, *, equal: bool) -> list[Shard]:
    """One shard per worker: its slice of ``split`` and all of ``whole``. ``equal``: every slice
    the same length (DDP steps in lockstep; fewer than ``n`` rows drop)."""
    rows = len(next(iter(split.values())))
    if equal:
        per = rows // n
        bounds = [(i * per, (i + 1) * per) for i in range(n)]
    else:
        edges = np.linspace(0, rows, n + 1).astype(int)
        bounds = list(itertools.pairwise(edges))
    return [{**{k: v[a:b] for k, v in split.items()}, **whole} for a, b in bounds]


Loop = Callable[[dict[str, Any]], None]


def _scaling(settings: Settings) -> Any:
    """``train.workers`` workers, each with ``training_pod.ray.worker``'s resources."""
    from ray.train import ScalingConfig  # noqa: PLC0415 - see session

    w = settings.training_pod.ray.worker
    resources: dict[str, float] = {"CPU": w.cpus, **({"GPU": w.gpus} if w.gpus else {})}
    if w.memory_mb:
        resources["memory"] = w.memory_mb * 1024 * 1024
    return ScalingConfig(
        num_workers=settings.train.workers, use_gpu=w.gpus > 0, resources_per_worker=resources
    )


def _train(settings: Settings, family: str, shards: list[Shard], config: dict[str, Any]) -> workers.Trained:
    """Every worker runs ``family``'s loop on its shard; rank 0's model bytes and meta."""
    if torchrun.launched():
        return torchrun.train(family, shards, config)
    import ray  # noqa: PLC0415 - see session

    trainer: Any
    if family == "xgboost":
        from ray.train.xgboost import XGBoostTrainer  # noqa: PLC0415 - see session

        trainer, loop = XGBoostTrainer, workers.xgb_worker
    else:
        from ray.train.torch import TorchTrainer  # noqa: PLC0415 - see session

        trainer, loop = TorchTrainer, workers.mlp_worker
    return _train_on_ray(settings, trainer, loop, {**config, "shards": [ray.put(s) for s in shards]})


def _train_on_ray(
    settings: Settings, trainer_cls: Any, loop: Loop, config: dict[str, Any]
) -> workers.Trained:
    """Run a Ray Train trainer; rank 0's checkpoint (model bytes, meta). On a cluster the
    checkpoint goes through ``storage.data_uri`` (every node reaches it), locally a temp dir."""
    from ray.train import RunConfig  # noqa: PLC0415 - see session

    on_cluster = settings.training_pod.ray.address is not None
    with tempfile.TemporaryDirectory(prefix="airloop-train-") as local:
        where = storage.join(settings.storage.data_uri, "ray_train") if on_cluster else local
        run = RunConfig(name=f"candidate-{uuid.uuid4().hex[:12]}", storage_path=where.removeprefix("file://"))
        result = trainer_cls(
            loop, train_loop_config=config, scaling_config=_scaling(settings), run_config=run
        ).fit()
        if result.checkpoint is None:
            raise RuntimeError(f"distributed training returned no model: {result.error}")
        with result.checkpoint.as_directory() as directory:
            payload = (Path(directory) / workers.MODEL_FILE).read_bytes()
            meta = json.loads((Path(directory) / workers.META_FILE).read_text())
    return payload, dict(meta)


def distributed(settings: Settings) -> bool:
    """Whether candidates of ``DISTRIBUTED`` families train on several workers."""
    return settings.train.workers > 1 or torchrun.launched()


def _workers(settings: Settings) -> int:
    return torchrun.world_size() if torchrun.launched() else settings.train.workers


def fit(family: str, params: dict[str, Any], ctx: FitContext) -> Fitted:
    """One candidate of ``family`` on ``train.workers`` Ray Train workers or the torchrun ranks."""
    with session(ctx.settings):
        if family == "xgboost":
            return _fit_xgb(params, ctx)
        if family == "mlp":
            return _fit_mlp(params, ctx)
    raise ValueError(f"family {family!r} does not train distributed")


def _device(settings: Settings) -> str:
    if torchrun.launched():
        return torchrun.device_kind()
    return "cuda" if settings.training_pod.ray.worker.gpus > 0 else "cpu"


def _fit_xgb(params: dict[str, Any], ctx: FitContext) -> Fitted:
    started, n = time.perf_counter(), _workers(ctx.settings)
    train, y_train, valid, y_valid = ctx.arrays()
    encoder = Encoder.fit(train, ctx.spec, dense=False)
    split = {
        "x_train": encoder.transform(train),
        "y_train": y_train,
        "x_valid": encoder.transform(valid),
        "y_valid": y_valid,
        "w_valid": np.where(y_valid == 1, ctx.pos_weight, 1.0),
    }
    family, device = ctx.settings.train.xgboost, _device(ctx.settings)
    shards = _shards(n, split, {}, equal=False)
    config = {
        "params": xgb.training_params(params, pos_weight=ctx.pos_weight, seed=ctx.seed, device=device),
        "rounds": family.max_rounds,
        "early_stopping_rounds": family.early_stopping_rounds,
    }
    payload, meta = _train(ctx.settings, "xgboost", shards, config)
    scorer = xgb.XGBScorer(raw=payload, best_iteration=int(meta["best"]))
    model = FraudModel(spec=ctx.spec, encoder=encoder, scorer=scorer, family="xgboost", params=params)
    model = model.calibrated(valid, y_valid)
    return Fitted(model, meta["history"], int(meta["best"]), f"{device} x{n}", time.perf_counter() - started)


def _fit_mlp(params: dict[str, Any], ctx: FitContext) -> Fitted:
    import io  # noqa: PLC0415 - reading the checkpoint only

    started, n = time.perf_counter(), _workers(ctx.settings)
    train, y_train, valid, y_valid = ctx.arrays()
    encoder = Encoder.fit(train, ctx.spec, dense=True)
    split = {"x_train": encoder.transform(train), "y_train": y_train.astype("float32")}
    whole = {"x_valid": encoder.transform(valid), "y_valid": y_valid.astype("float32")}
    family = ctx.settings.train.mlp
    shards = _shards(n, split, whole, equal=True)
    config = {
        "params": params,
        "seed": ctx.seed,
        "pos_weight": ctx.pos_weight,
        "patience": family.patience,
        "batch_size": family.batch_size,
        "max_epochs": family.max_epochs,
    }
    payload, meta = _train(ctx.settings, "mlp", shards, config)
    arrays = np.load(io.BytesIO(payload))
    flat = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    scorer = MLPScorer(list(zip(flat[0::2], flat[1::2], strict=True)))
    model = FraudModel(spec=ctx.spec, encoder=encoder, scorer=scorer, family="mlp", params=params)
    model = model.calibrated(valid, y_valid)
    device = _device(ctx.settings)
    return Fitted(model, meta["history"], int(meta["best"]), f"{device} x{n}", time.perf_counter() - started)
