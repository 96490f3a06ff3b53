"""What the serving API accepts and returns.

Request models are built from the configured data contract (``schema`` in ``config/``): every
column of a transaction except the label, with its type, range and allowed values. Types are
strict (``"12"`` is not a customer id, ``true`` is not an amount, NaN and infinities are refused)
and unknown fields are refused, so a typo is a 422 that names the field rather than a silently
ignored value. Responses are documented here; the app writes them directly for speed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

if TYPE_CHECKING:
    from config import Column, Settings

SLOTS = ("champion", "challenger")
Slot = Literal["champion", "challenger"]
ROUTES = ("champion", "challenger", "shadow", "smoke")
"""Where a logged score came from: the two slots serving traffic, the challenger scoring a mirrored
request in shadow mode (never returned), or a smoke test sent to one slot by the control API."""


class Unavailable(RuntimeError):
    """Scoring cannot happen now (no champion model, feature store down): a 503 with ``kind``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def event_time_bounds(earliest: datetime, max_future_minutes: float) -> Callable[[datetime], datetime]:
    """The data contract's time sanity for a request (ingest applies the same bounds): an event
    stamped before ``ingest.earliest_event`` or more than ``ingest.max_future_minutes`` ahead is a
    422 naming the field and the bound, never a time the log, the features or pandas cannot hold."""
    ahead = timedelta(minutes=max_future_minutes)

    def check(value: datetime) -> datetime:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if value < earliest:
            raise ValueError(f"before ingest.earliest_event {earliest.isoformat()}")
        latest = datetime.now(UTC) + ahead
        if value > latest:
            raise ValueError(f"more than ingest.max_future_minutes ({max_future_minutes:g}) ahead of now")
        return value

    return check


def _column_type(col: Column, *, required: bool, times: Callable[[datetime], datetime]) -> tuple[Any, Any]:
    if col.type == "int":
        # within int64 whatever the config says: Feast and Arrow hold entity keys as 64-bit
        low = INT64_MIN if col.min is None else max(int(col.min), INT64_MIN)
        high = INT64_MAX if col.max is None else min(int(col.max), INT64_MAX)
        kind: Any = Annotated[int, Field(strict=True, ge=low, le=high)]
    elif col.type == "float":
        kind = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=col.min, le=col.max)]
    elif col.type == "timestamp":
        kind = Annotated[datetime, AfterValidator(times)]
    elif col.allowed:
        kind = Literal[tuple(col.allowed)]
    else:
        kind = Annotated[str, Field(min_length=1, max_length=200)]
    if required and not col.nullable:
        return kind, ...
    return kind | None, None


def _models(settings: Settings) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
    schema = settings.schema_
    times = event_time_bounds(settings.ingest.earliest_event, settings.ingest.max_future_minutes)
    fields: dict[str, Any] = {}
    for col in schema.columns:
        if col.name == schema.label:
            continue
        # The transaction id (to join labels later) and the event time (default: now) are optional.
        required = col.name not in (schema.key, schema.timestamp)
        fields[col.name] = _column_type(col, required=required, times=times)
    transaction = create_model(
        "Transaction",
        __config__=ConfigDict(extra="forbid", frozen=True),
        __doc__="One card transaction to score: the data contract's columns but the label.",
        **fields,
    )
    batch = create_model(
        "TransactionBatch",
        __config__=ConfigDict(extra="forbid", frozen=True),
        rows=(list[transaction], Field(min_length=1, max_length=settings.serving.max_request_rows)),
    )
    labels = create_model(
        "LabelBatch",
        __config__=ConfigDict(extra="forbid", frozen=True),
        labels=(list[Label], Field(min_length=1, max_length=settings.serving.max_label_rows)),
        source=(Annotated[str, Field(min_length=1, max_length=100)] | None, None),
    )
    return transaction, batch, labels


class Contract:
    """The request models of one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.transaction, self.batch, self.labels = _models(settings)
        self.timestamp = settings.schema_.timestamp
        self.key = settings.schema_.key

    def rows(self, items: list[BaseModel], now: datetime | None = None) -> list[dict[str, Any]]:
        """Validated transactions as plain rows, the event time defaulting to ``now`` (UTC)."""
        now = now or datetime.now(UTC)
        out = []
        for item in items:
            row = item.model_dump()
            ts = row.get(self.timestamp)
            if ts is None:
                row[self.timestamp] = now
            elif ts.tzinfo is None:
                row[self.timestamp] = ts.replace(tzinfo=UTC)
            out.append(row)
        return out

    def batch_rows(self, batch: BaseModel, now: datetime | None = None) -> list[dict[str, Any]]:
        """``rows`` of a validated ``batch`` (a ``TransactionBatch``)."""
        items: list[BaseModel] = batch.rows  # type: ignore[attr-defined]  # built from the config
        return self.rows(items, now)

    @staticmethod
    def label_rows(batch: BaseModel) -> list[dict[str, Any]]:
        """The labels of a validated ``LabelBatch`` as plain rows."""
        labels: list[Label] = batch.labels  # type: ignore[attr-defined]  # built from the config
        return [label.model_dump() for label in labels]


def error_details(exc: ValidationError, prefix: tuple[str | int, ...] = ("body",)) -> list[dict[str, Any]]:
    """A pydantic error list that JSON can carry: where (``loc``), what (``type``) and why (``msg``)."""
    return [
        {"loc": [*prefix, *e["loc"]], "type": e["type"], "msg": e["msg"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def bad_fields(details: list[dict[str, Any]]) -> list[str]:
    """``rows.3.amount`` style names of the fields the errors are about (where-prefix dropped)."""
    names = []
    for d in details:
        loc = [str(p) for p in d["loc"]]
        if loc and loc[0] in ("body", "path", "query"):
            loc = loc[1:]
        name = ".".join(loc) or "body"
        if name not in names:
            names.append(name)
    return names


# --- labels ---------------------------------------------------------------------------------


class Label(_Body):
    """The true outcome of a scored transaction, known later (a chargeback, a confirmed fraud)."""

    request_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    transaction_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    label: Annotated[int, Field(strict=True, ge=0, le=1)]

    @model_validator(mode="after")
    def _has_a_key(self) -> Label:
        if self.request_id is None and self.transaction_id is None:
            raise ValueError("a label needs request_id or transaction_id")
        return self


# --- control API ----------------------------------------------------------------------------


class TrafficUpdate(_Body):
    """``PUT /admin/traffic``: the share of live traffic the challenger gets, and shadow mode."""

    challenger_weight: Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)] | None = None
    shadow: Annotated[bool, Field(strict=True)] | None = None

    @model_validator(mode="after")
    def _something(self) -> TrafficUpdate:
        if self.challenger_weight is None and self.shadow is None:
            raise ValueError("give challenger_weight and/or shadow")
        return self


class LoadModel(_Body):
    """``POST /admin/slots/{slot}/load``: a registered version, or an alias resolved now."""

    version: Annotated[str, Field(pattern=r"^[0-9]+$")] | None = None
    alias: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=100)] | None = None

    @model_validator(mode="after")
    def _one_ref(self) -> LoadModel:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of version and alias")
        return self


# --- responses (documentation and the client's types) ---------------------------------------


class Prediction(BaseModel):
    """One scored transaction."""

    request_id: str
    transaction_id: str | None
    score: float
    """Fraud probability from the model version that served the request."""
    decision: Literal["fraud", "legit"]
    threshold: float
    model_version: str
    route: Literal["champion", "challenger", "smoke"]
    unknown_entities: list[str]
    """Entities the online store had no features for (scored with ``serving.unknown_entity_defaults``)."""
    latency_ms: float


class SlotStatus(BaseModel):
    slot: Slot
    loaded: bool
    version: str | None = None
    source: str | None = None
    sha256: str | None = None
    loaded_at: str | None = None
    last_error: dict[str, Any] | None = None


class Status(BaseModel):
    """``GET /admin/status``."""

    app: str
    started_at: str
    challenger_weight: float
    shadow: bool
    threshold: float
    slots: dict[str, SlotStatus]
    inference_log: dict[str, Any]
