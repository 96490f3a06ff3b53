"""The training entrypoint under ``torchrun`` (``training_pod.runner: torchrun``): one pod, N ranks.

The pod's command is ``torchrun --standalone --nproc_per_node=N -m tasks.training ...``
(``command``): N copies of the entrypoint, each with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``
set (``launched``). ``main`` joins them in torch.distributed (NCCL when CUDA is available, one
GPU per rank; gloo otherwise) plus a gloo group for rank 0's requests and the data, then:

- rank 0 is the driver, exactly as the Ray Train path's driver (``tasks.training.scaleout``): it
  reads the training set, scores the champion, encodes and shards each distributed candidate's
  splits, and evaluates, calibrates, gates, registers and prints the result line; everything
  that is not training happens there once;
- ranks 1..N-1 follow: each waits for rank 0's next request (a family, its loop's config and this
  rank's shard), runs the same worker loop Ray Train's workers run (``families.workers``) and
  waits again, until rank 0 says it is done; then it exits 0 and has written nothing.

XGBoost trains through its collective across the ranks (a ``RabitTracker`` on rank 0, each rank
in ``xgboost.collective.CommunicatorContext``, ranks ordered as torch's), as ``XGBoostTrainer``
does on Ray: the same loop on both launchers, every rank's GPU builds histograms over its own
rows, and the registered version's worker count is true of whichever family wins. Training on
rank 0 alone would leave N-1 GPUs idle for that family and make ``train_workers`` a lie for it.

Rank 0 works alone between two distributed candidates (reading the set, the champion,
evaluating and registering), so the ranks wait up to ``training_pod.torchrun.timeout_seconds``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config import Settings
    from tasks.training.families.workers import Trained

LAUNCHER = ("torchrun", "--standalone")
MODULE = ("-m", "tasks.training")
"""The training pod's module (``tasks.training.ray_job.ENTRYPOINT`` without ``python``)."""
RANK_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
"""What torchrun sets in each process it starts."""
TRACKER_HOST = "127.0.0.1"
"""``--standalone``: every rank is in this pod, so XGBoost's tracker listens on loopback only."""

_control: Any = None
"""The gloo group rank 0 sends requests and shards over (NCCL moves only CUDA tensors)."""


def command(settings: Settings) -> list[str]:
    """The pod's command: the training entrypoint under torchrun, one rank per process."""
    n = settings.training_pod.torchrun_processes
    return [*LAUNCHER, f"--nproc_per_node={n}", *MODULE]


def launched() -> bool:
    """Whether this process is one of torchrun's ranks."""
    return all(os.environ.get(name) for name in RANK_ENV)


def world_size() -> int:
    return int(os.environ["WORLD_SIZE"])


def rank() -> int:
    return int(os.environ["RANK"])


def local_rank() -> int:
    return int(os.environ["LOCAL_RANK"])


def device_kind() -> str:
    """``cuda`` (NCCL, one GPU per rank) when CUDA is available, else ``cpu`` (gloo)."""
    import torch  # noqa: PLC0415 - torch only under torchrun

    return "cuda" if torch.cuda.is_available() else "cpu"


def scale_tags(settings: Settings) -> dict[str, str]:
    """The run's and the registered version's scale tags: the ranks and what each one had."""
    kind = device_kind()
    backend = "nccl" if kind == "cuda" else "gloo"
    pod = ",".join(f"pod_{k}={v}" for k, v in sorted(settings.training_pod.requests.items()))
    resources = f"torchrun,backend={backend},gpus={1 if kind == 'cuda' else 0}" + (f",{pod}" if pod else "")
    return {"train_workers": str(world_size()), "train_worker_resources": resources}


def main(settings: Settings, lead: Callable[[], int]) -> int:
    """Join the ranks; rank 0 runs ``lead`` (the whole training run) and its exit status is the
    pod's; the others follow its requests and exit 0."""
    import torch  # noqa: PLC0415 - see device_kind
    import torch.distributed as dist  # noqa: PLC0415 - as above

    global _control
    if settings.train.workers > 1:  # config refuses it with runner: torchrun; a hand-run torchrun
        print("error: under torchrun the ranks are the workers: set train.workers to 1", file=sys.stderr)
        return 1
    timeout = timedelta(seconds=settings.training_pod.torchrun.timeout_seconds)
    cuda = device_kind() == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    _control = dist.new_group(backend="gloo", timeout=timeout)
    try:
        if rank() != 0:
            _follow()
            return 0
        try:
            return lead()
        finally:
            dist.broadcast_object_list([None], src=0, group=_control)  # the followers are done
    finally:
        dist.destroy_process_group()
        _control = None


def train(family: str, shards: list[dict[str, Any]], config: dict[str, Any]) -> Trained:
    """On rank 0: every rank runs ``family``'s loop on its shard; rank 0's model bytes and meta."""
    import torch.distributed as dist  # noqa: PLC0415 - see device_kind

    tracker = _xgb_tracker() if family == "xgboost" else None
    request = {"family": family, "config": config, "tracker": tracker[1] if tracker else None}
    dist.broadcast_object_list([request], src=0, group=_control)
    try:
        return _run(request, shards)
    finally:
        if tracker:
            tracker[0].join(timeout=30)


def _follow() -> None:
    """Ranks 1..N-1: run rank 0's requests until it sends ``None``."""
    import torch.distributed as dist  # noqa: PLC0415 - see device_kind

    while True:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=_control)
        if box[0] is None:
            return
        _run(box[0], None)


def _run(request: dict[str, Any], shards: list[dict[str, Any]] | None) -> Trained:
    """Every rank: receive this rank's shard from rank 0 and run the family's loop on it."""
    import torch.distributed as dist  # noqa: PLC0415 - see device_kind

    from tasks.training.families import workers  # noqa: PLC0415 - pandas, mlflow: not at DAG parse (plugins)

    box: list[Any] = [None]
    dist.scatter_object_list(box, shards, src=0, group=_control)
    shard, config = box[0], dict(request["config"])
    if request["family"] == "xgboost":
        import xgboost  # noqa: PLC0415 - training ranks only

        if str(config["params"].get("device", "cpu")).startswith("cuda"):
            config["params"] = {**config["params"], "device": f"cuda:{local_rank()}"}
        args = {**request["tracker"], "dmlc_task_id": f"rank-{rank():08d}"}
        with xgboost.collective.CommunicatorContext(**args):
            return workers.xgb_loop(shard, config)
    return workers.mlp_loop(shard, config, rank=rank(), world=world_size(), device=_device(), wrap=_ddp)


def _xgb_tracker() -> tuple[threading.Thread, dict[str, Any]]:
    """XGBoost's tracker for the ranks (as Ray Train's ``XGBoostTrainer`` starts one): ranks sort
    by task id, so XGBoost's rank is torch's."""
    from xgboost.tracker import RabitTracker  # noqa: PLC0415 - see _run

    tracker = RabitTracker(n_workers=world_size(), host_ip=TRACKER_HOST, sortby="task")
    tracker.start()
    waiting = threading.Thread(target=tracker.wait_for, daemon=True)
    waiting.start()
    return waiting, {"n_workers": world_size(), **tracker.worker_args()}


def _device() -> Any:
    import torch  # noqa: PLC0415 - see device_kind

    return torch.device(f"cuda:{local_rank()}") if device_kind() == "cuda" else torch.device("cpu")


def _ddp(net: Any) -> Any:
    """The network on this rank's device under DDP (gradients averaged over the default group)."""
    from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415 - see device_kind

    device = _device()
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net.to(device), device_ids=ids)
