"""The feature service's features on every hour of a backtest, computed by production's code.

Production computes the feature tables from curated transactions (``tables.compute``, which the
features DAG's refresh writes as the views' Parquet sources) and joins them point in time into
training sets (``offline.point_in_time``: per view, the entity's latest row strictly before the
event and within the view's TTL, then the on-demand views through Feast's transformation). Here
the same two functions run once over the whole history, for every policy: a table row stamped
``t`` depends on transactions at or before ``t`` only, so one computation gives the rows an
hourly refresh would have written, and the join gives each event only rows from before it.

The service is the one ``feature_repo.definitions`` declares (``offline.declared``): a backtest
needs no Feast registry. Before the history, ``context`` transactions feed the windows only (not
scored, not trained on); for a simulated history, ``train.warmup_hours`` of stable hours (the
longest window by default), so the first champion trains on settled windows as production's
training sets do (``dataset.after_warmup``). As in production, where curated transactions carry
their label, the merchant table counts the fraud of every earlier transaction: the backtest's
label delay applies to what the monitor measures, not to the features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tasks.features import offline
from tasks.features.tables import TIMESTAMP, compute
from tasks.platform.simulate.batches import build_batch, knobs_for
from tasks.training.dataset import warmup

if TYPE_CHECKING:
    from feast import FeatureView

    from config import Settings
    from tasks.backtest.history import History

_WARMUP_STREAM = (16, 1)
"""The warm-up hours' random stream: draws and ids of their own (``st`` hours use ``(1, ...)``)."""
_READ = [TIMESTAMP, "customer_id", "merchant_id", "amount", "is_fraud"]
"""What ``tables.compute`` and the join read of a transaction (the other columns stay behind)."""


def names(settings: Settings) -> list[str]:
    """The feature service's feature columns, in order: the models' features."""
    return offline.declared(settings).names


def warmup_hours(settings: Settings, rows_per_hour: int, start: pd.Timestamp) -> list[pd.DataFrame]:
    """Stable simulated hours just before ``start``, ``train.warmup_hours`` of them: the context
    the windows of a simulated history's first hours need."""
    hours = int(warmup(settings) / pd.Timedelta(hours=1))
    prefix = f"wu{settings.simulate.seed}"
    return [
        build_batch(
            settings,
            knobs_for("stable", 0.0),
            stream=_WARMUP_STREAM,
            id_prefix=prefix,
            index=k,
            rows=rows_per_hour,
            start=None,
            at=start - pd.Timedelta(hours=hours - k),
        )
        for k in range(hours)
    ]


def add(settings: Settings, history: History, context: list[pd.DataFrame]) -> None:
    """Put the feature service's features on every hour of ``history`` (in place), computed from
    ``context`` and the history's own transactions."""
    events = pd.concat([h[_READ] for h in history.hours], ignore_index=True)
    tables = compute(pd.concat([*(h[_READ] for h in context), events], ignore_index=True))

    def read(view: FeatureView, key: str, columns: list[str], lo: Any, hi: Any) -> pd.DataFrame:
        table = tables[view.name]
        at = table[TIMESTAMP]
        return table.loc[(at >= lo) & (at <= hi), [key, TIMESTAMP, *columns]]

    joined = offline.point_in_time(offline.declared(settings), events, read).drop(columns=_READ)
    ends = np.cumsum([len(h) for h in history.hours])
    for k, (lo, hi) in enumerate(zip([0, *ends[:-1]], ends, strict=True)):
        hour = history.hours[k]
        history.hours[k] = pd.concat([hour, joined.iloc[lo:hi].set_axis(hour.index)], axis=1)
