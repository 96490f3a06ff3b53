"""The PyTorch MLP family: a small feed-forward network on the dense encoding, trained with
Adam on the class-weighted (``pos_weight``) binary cross-entropy, on CUDA when present.

Early stopping keeps the epoch with the lowest validation loss. The trained weights are exported
to numpy, so scoring (and serving) needs no torch: two matrix products and a ReLU per layer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.training.families import Fitted
from tasks.training.families.base import Encoder, FraudModel, InputSpec

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from config import MLPFamily

LOSS_EPSILON = 1e-6
"""How much lower a validation loss must be to count as better (early stopping)."""


@dataclass
class MLPScorer:
    """Dense layers as numpy arrays: ``(weight [in, out], bias [out])``, ReLU between them."""

    layers: list[tuple[np.ndarray, np.ndarray]]

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype="float32")
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                np.maximum(h, 0.0, out=h)
        return np.asarray(h[:, 0], dtype="float64")


@dataclass
class Tensors:
    """The encoded train and validation splits on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor


@dataclass
class EarlyStopping:
    """Keeps the weights of the epoch with the lowest validation loss; says when to stop."""

    patience: int
    best_loss: float = float("inf")
    best_epoch: int = 0
    best_state: dict[str, Any] | None = None
    waited: int = 0
    history: dict[str, list[float]] = field(
        default_factory=lambda: {"train_loss": [], "valid_loss": [], "valid_roc_auc": []}
    )

    def update(
        self, epoch: int, net: torch.nn.Module, train_loss: float, valid_loss: float, auc: float
    ) -> bool:
        """Record one epoch; True when training should stop."""
        self.history["train_loss"].append(train_loss)
        self.history["valid_loss"].append(valid_loss)
        self.history["valid_roc_auc"].append(auc)
        if self.best_state is None or valid_loss < self.best_loss - LOSS_EPSILON:
            self.best_loss, self.best_epoch, self.waited = valid_loss, epoch, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            return False
        self.waited += 1
        return self.waited >= self.patience


def _network(n_in: int, hidden: list[int], dropout: float) -> torch.nn.Module:
    # torch (seconds) only when an MLP trains: XGBoost-only runs never load it, and neither does
    # serving, which unpickles ``MLPScorer`` from this module
    from torch import nn  # noqa: PLC0415 - see above

    layers: list[nn.Module] = []
    width = n_in
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _epoch(
    net: torch.nn.Module, data: Tensors, optimizer: Any, loss_fn: Any, *, order: torch.Tensor, batch: int
) -> float:
    """One pass over the training split in mini-batches; the mean training loss."""
    net.train()
    total, n = 0.0, len(data.x_train)
    for start in range(0, n, batch):
        idx = order[start : start + batch]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(data.x_train[idx]).squeeze(1), data.y_train[idx])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return total / n


def _validate(net: torch.nn.Module, data: Tensors, loss_fn: Any, y_valid: np.ndarray) -> tuple[float, float]:
    """Validation loss and ROC AUC (NaN with one class) of the current weights."""
    import torch  # noqa: PLC0415 - see _network
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415 - training only, as torch (_network)

    net.eval()
    with torch.no_grad():
        out = net(data.x_valid).squeeze(1)
        valid_loss = float(loss_fn(out, data.y_valid))
    scores = out.float().cpu().numpy()
    auc = float(roc_auc_score(y_valid, scores)) if len(np.unique(y_valid)) == 2 else float("nan")
    return valid_loss, auc


def _layers(state: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The linear layers of a state dict as numpy ``(weight [in, out], bias)`` pairs."""
    linears = [k.rsplit(".", 1)[0] for k in state if k.endswith(".weight")]
    return [(state[f"{k}.weight"].numpy().T.copy(), state[f"{k}.bias"].numpy().copy()) for k in linears]


def fit(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    *,
    spec: InputSpec,
    params: dict[str, Any],
    family: MLPFamily,
    pos_weight: float,
    seed: int,
    device: str,
) -> Fitted:
    import torch  # noqa: PLC0415 - see _network

    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = Encoder.fit(train, spec, dense=True)
    dev = torch.device(device)
    data = Tensors(
        torch.as_tensor(encoder.transform(train), device=dev),
        torch.as_tensor(y_train, dtype=torch.float32, device=dev),
        torch.as_tensor(encoder.transform(valid), device=dev),
        torch.as_tensor(y_valid, dtype=torch.float32, device=dev),
    )
    net = _network(data.x_train.shape[1], list(params["hidden"]), float(params["dropout"])).to(dev)
    lr, decay = float(params["learning_rate"]), float(params["weight_decay"])
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=decay)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=dev))
    stopping, batch = EarlyStopping(family.patience), max(1, family.batch_size)
    for epoch in range(family.max_epochs):
        order = torch.as_tensor(rng.permutation(len(data.x_train)), device=dev)
        train_loss = _epoch(net, data, optimizer, loss_fn, order=order, batch=batch)
        if stopping.update(epoch, net, train_loss, *_validate(net, data, loss_fn, y_valid)):
            break
    assert stopping.best_state is not None  # max_epochs >= 1
    scorer = MLPScorer(_layers(stopping.best_state))
    model = FraudModel(spec=spec, encoder=encoder, scorer=scorer, family="mlp", params=params)
    model = model.calibrated(valid, y_valid)
    return Fitted(model, stopping.history, stopping.best_epoch, device, time.perf_counter() - started)
