"""The simulator as an upstream system: drop batches in the landing zone and tell Airflow.

``write_batch``/``write_bad_batch`` land one file (atomically where the store allows);
``notify_airflow`` posts the landing asset event an upstream system would; ``land`` does both
for a run of batches with a progress line each and a summary (``airloop simulate``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import requests

from config import Settings
from tasks.common import storage
from tasks.common.clock import utc_timestamp
from tasks.platform.airflow_client import AirflowAPIError, AirflowClient
from tasks.platform.simulate.bad_batches import BadBatch, make_bad_batch
from tasks.platform.simulate.batches import batch_name, generate_batch, to_bytes


def landed_batches(settings: Settings) -> int:
    """Batches upstream has delivered so far (curated, or still in the landing zone): the index
    the simulated history continues from."""
    done = storage.list_files(storage.join(settings.storage.curated_uri, "_sources"), ["*.json"])
    pending = storage.list_files(settings.storage.landing_uri, ["*.parquet", "*.csv"])
    return len(done) + len(pending)


def history_end(settings: Settings, batches: int | None = None) -> pd.Timestamp:
    """Where the simulated history ends after ``batches`` windows (default: those landed): the
    simulated world's present, when live transactions happen."""
    n = landed_batches(settings) if batches is None else batches
    sim = settings.simulate
    return utc_timestamp(sim.start) + pd.Timedelta(minutes=sim.batch_minutes * n)


def write_batch(df: pd.DataFrame, landing_uri: str, name: str, fmt: str = "parquet") -> str:
    """Drop a batch into the landing zone (atomically where possible); returns its URI."""
    if not name.endswith(f".{fmt}"):
        name = f"{name}.{fmt}"
    return storage.write_bytes(storage.join(landing_uri, name), to_bytes(df, fmt))


def write_bad_batch(bad: BadBatch, landing_uri: str, name: str | None = None) -> str:
    """Drop a bad batch into the landing zone, as the file its defect calls for."""
    name = name or bad.default_name
    return storage.write_bytes(storage.join(landing_uri, name), bad.to_bytes())


class NotifyError(RuntimeError):
    """Airflow did not accept the asset event (the message names the URL and status)."""


def notify_airflow(
    batch_uri: str,
    settings: Settings,
    rows: int | None = None,
    *,
    base_url: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Post the landing asset event for ``batch_uri``, as an upstream system would.

    Token from ``/auth/token``, asset id by exact name, then ``POST /api/v2/assets/events``.
    Returns the created event.
    """
    client = AirflowClient.from_settings(settings, base_url)
    client.timeout = timeout
    extra: dict[str, Any] = {"batch_uri": batch_uri, "source": "simulator"}
    if rows is not None:
        extra["rows"] = int(rows)
    try:
        return client.post_asset_event(settings.assets.landing, extra)
    except AirflowAPIError as exc:
        raise NotifyError(str(exc)) from exc
    except requests.RequestException as exc:
        url = getattr(exc.request, "url", None) or client.base_url
        raise NotifyError(f"{url} unreachable: {exc}") from exc


@dataclass(frozen=True)
class BatchPlan:
    """Which batches ``land`` writes: ``batches`` of a scenario from ``start_index`` on, or bad
    batches of kind ``bad``; ``landing_uri`` None means ``storage.landing_uri``."""

    scenario: str = "stable"
    batches: int = 1
    rows: int | None = None
    start_index: int = 0
    fmt: str = "parquet"
    bad: str | None = None
    drift_strength: float = 1.0
    notify: bool = False
    landing_uri: str | None = None


def _write_one(settings: Settings, plan: BatchPlan, index: int, landing: str) -> tuple[str, int, int, str]:
    """Write batch ``index`` of the plan: (its URI, rows, fraud rows, what to say about it)."""
    if plan.bad:
        bad = make_bad_batch(settings, plan.bad, index=index, rows=plan.rows)
        rows = 0 if bad.frame is None else len(bad.frame)
        return write_bad_batch(bad, landing), rows, 0, f"defect={plan.bad} ({bad.description})"
    df = generate_batch(settings, plan.scenario, index, plan.rows, drift_strength=plan.drift_strength)
    uri = write_batch(df, landing, batch_name(plan.scenario, index, plan.fmt), plan.fmt)
    fraud = int(df[settings.schema_.label].sum())
    return uri, len(df), fraud, f"fraud_rate={fraud / max(len(df), 1):.2%}"


def land(settings: Settings, plan: BatchPlan, out: Callable[[str], None] = print) -> int:
    """Write the plan's batches, one progress line each, then a summary line; 1 if Airflow
    could not be told about a batch that was written (the error names the file), else 0."""
    if plan.batches < 0:
        raise ValueError("batches must be >= 0")
    storage.configure(settings.storage.s3_endpoint_url)
    landing = plan.landing_uri or settings.storage.landing_uri
    total_rows = total_fraud = 0
    for index in range(plan.start_index, plan.start_index + plan.batches):
        uri, rows, fraud, detail = _write_one(settings, plan, index, landing)
        total_rows, total_fraud = total_rows + rows, total_fraud + fraud
        line = f"{storage.basename(uri)}  rows={rows}  {detail}"
        if plan.notify:
            try:
                event = notify_airflow(uri, settings, rows=rows)
            except NotifyError as exc:
                out(line)
                print(f"error: {uri} was written but Airflow was not told: {exc}", file=sys.stderr)
                return 1
            line += f"  event={event.get('id')}"
        out(line)
    what = f"bad:{plan.bad}" if plan.bad else plan.scenario
    rate = f", fraud rate {total_fraud / total_rows:.2%}" if total_rows and not plan.bad else ""
    out(f"wrote {plan.batches} {what} batch(es), {total_rows} rows{rate} to {landing}")
    return 0
