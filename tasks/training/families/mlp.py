"""The PyTorch MLP family: a small feed-forward network on the dense encoding, trained with
Adam on the class-weighted (``pos_weight``) binary cross-entropy, on CUDA when present.

Early stopping keeps the epoch with the lowest validation loss. The trained weights are exported
to numpy, so scoring (and serving) needs no torch: two matrix products and a ReLU per layer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.training.families import Fitted
from tasks.training.families.base import Encoder, FraudModel, InputSpec

if TYPE_CHECKING:
    import pandas as pd

    from config import MLPFamily


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
        return h[:, 0].astype("float64")


def _network(n_in: int, hidden: list[int], dropout: float) -> Any:
    from torch import nn

    layers: list[Any] = []
    width = n_in
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


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
    import torch
    from sklearn.metrics import roc_auc_score

    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = Encoder.fit(train, spec, dense=True)
    dev = torch.device(device)
    x_tr = torch.as_tensor(encoder.transform(train), device=dev)
    y_tr = torch.as_tensor(y_train, dtype=torch.float32, device=dev)
    x_va = torch.as_tensor(encoder.transform(valid), device=dev)
    y_va = torch.as_tensor(y_valid, dtype=torch.float32, device=dev)

    net = _network(x_tr.shape[1], list(params["hidden"]), float(params["dropout"])).to(dev)
    optimizer = torch.optim.Adam(
        net.parameters(), lr=float(params["learning_rate"]), weight_decay=float(params["weight_decay"])
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=dev))
    history: dict[str, list[float]] = {"train_loss": [], "valid_loss": [], "valid_roc_auc": []}
    best_loss, best_epoch, best_state, waited = float("inf"), 0, None, 0
    n, batch = len(x_tr), max(1, family.batch_size)
    for epoch in range(family.max_epochs):
        net.train()
        order = torch.as_tensor(rng.permutation(n), device=dev)
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x_tr[idx]).squeeze(1), y_tr[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        net.eval()
        with torch.no_grad():
            out = net(x_va).squeeze(1)
            valid_loss = float(loss_fn(out, y_va))
        scores = out.float().cpu().numpy()
        auc = float(roc_auc_score(y_valid, scores)) if len(np.unique(y_valid)) == 2 else float("nan")
        history["train_loss"].append(total / n)
        history["valid_loss"].append(valid_loss)
        history["valid_roc_auc"].append(auc)
        if best_state is None or valid_loss < best_loss - 1e-6:
            best_loss, best_epoch, waited = valid_loss, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= family.patience:
                break
    linears = [k.rsplit(".", 1)[0] for k in best_state if k.endswith(".weight")]
    layers = [
        (best_state[f"{k}.weight"].numpy().T.copy(), best_state[f"{k}.bias"].numpy().copy()) for k in linears
    ]
    model = FraudModel(spec=spec, encoder=encoder, scorer=MLPScorer(layers), family="mlp", params=params)
    model = model.calibrated(valid, y_valid)
    return Fitted(model, history, best_epoch, device, time.perf_counter() - started)
