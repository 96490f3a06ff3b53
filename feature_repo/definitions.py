"""Feast objects of airloop: entities, sources, feature views and the model's feature service.

Declarations only. Windowed features are computed by ``tasks.features.tables`` (feature names, types and
windows live there, once); this module tells Feast where those tables are and how they join.
Built from the settings so the same definitions serve both profiles: only paths differ.
"""

from __future__ import annotations

import inspect
from datetime import timedelta
from types import FunctionType
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, ValueType
from feast import types as feast_types
from feast.on_demand_feature_view import OnDemandFeatureView

from tasks.features.tables import CUSTOMER_ACTIVITY, MERCHANT_RISK, TIMESTAMP, FeatureTable, table_uri

if TYPE_CHECKING:
    from config import Settings

REQUEST_TIME = "request_unix_s"
"""When the scored transaction happens (epoch seconds): the request's clock, not the store's."""


class Definitions(NamedTuple):
    entities: list[Entity]
    sources: list[Any]
    feature_views: list[FeatureView]
    on_demand_feature_views: list[Any]
    feature_services: list[FeatureService]

    def all(self) -> list[Any]:
        return [
            *self.entities,
            *self.sources,
            *self.feature_views,
            *self.on_demand_feature_views,
            *self.feature_services,
        ]


def transaction_context(inputs):
    """Request-time features: they depend on the transaction being scored, so they cannot be
    materialized; one function computes them for training sets and online lookups alike.
    Self-contained on purpose: Feast stores this source and re-executes it on its own.

    Python mode (lists in, lists out): a one-row online lookup costs microseconds here, where a
    pandas frame cost milliseconds. Missing inputs give NaN and x / 0 gives +-inf, as pandas
    arithmetic did before."""
    import math  # noqa: PLC0415 - Feast stores this function's source and runs it alone

    def num(value):
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan

    def ratio(a, b):
        if b == 0.0:
            return (
                math.nan if a == 0.0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1.0, b)
            )
        return a / b

    now = [num(v) for v in inputs["request_unix_s"]]
    last = [num(v) for v in inputs["customer_last_txn_unix_s"]]
    amount = [num(v) for v in inputs["amount"]]
    mean = [num(v) for v in inputs["customer_amount_mean_7d"]]
    return {
        "seconds_since_last_txn": [t - s for t, s in zip(now, last, strict=True)],
        "amount_to_customer_mean_7d": [ratio(a, m) for a, m in zip(amount, mean, strict=True)],
    }


_TRANSACTION_CONTEXT_SOURCE = inspect.getsource(transaction_context)


def _source(settings: Settings, table: FeatureTable) -> FileSource:
    uri = table_uri(settings, table.name)
    return FileSource(
        name=f"{table.name}_source",
        path=uri.removeprefix("file://"),
        timestamp_field=TIMESTAMP,
        s3_endpoint_override=settings.storage.s3_endpoint_url if uri.startswith("s3://") else None,
        description=f"Feature table written by tasks.features.tables ({table.name}).",
        owner=settings.owner,
    )


def _view(settings: Settings, table: FeatureTable, entity: Entity, source: FileSource) -> FeatureView:
    return FeatureView(
        name=table.name,
        entities=[entity],
        ttl=timedelta(days=settings.feast.ttl_days),
        schema=[Field(name=n, dtype=getattr(feast_types, t)) for n, t in table.features.items()],
        source=source,
        online=True,
        description=table.description,
        owner=settings.owner,
        tags={"computed_by": "tasks.features.tables"},
    )


def _entity(settings: Settings, table: FeatureTable, description: str) -> Entity:
    return Entity(
        name=table.entity,
        join_keys=[table.join_key],
        value_type=ValueType.INT64,
        description=description,
        owner=settings.owner,
    )


def _transaction_context_odfv(
    settings: Settings, customer_activity_fv: FeatureView, transaction_request: RequestSource
) -> OnDemandFeatureView:
    # Built directly rather than with the decorator, which re-homes the function in __main__:
    # the UDF stays importable by reference from this module in every process that loads it.
    return OnDemandFeatureView(
        name="transaction_context",
        sources=[customer_activity_fv, transaction_request],
        schema=[
            Field(name="seconds_since_last_txn", dtype=feast_types.Float64),
            Field(name="amount_to_customer_mean_7d", dtype=feast_types.Float64),
        ],
        mode="python",
        udf=cast(FunctionType, transaction_context),  # a def; mypy only knows it as a Callable
        udf_string=_TRANSACTION_CONTEXT_SOURCE,
        description="Time since the customer's previous transaction and the amount against their mean.",
        owner=settings.owner,
    )


def feature_definitions(settings: Settings) -> Definitions:
    customer = _entity(settings, CUSTOMER_ACTIVITY, "A card holder.")
    merchant = _entity(settings, MERCHANT_RISK, "A merchant accepting card payments.")
    customer_source = _source(settings, CUSTOMER_ACTIVITY)
    merchant_source = _source(settings, MERCHANT_RISK)
    customer_activity_fv = _view(settings, CUSTOMER_ACTIVITY, customer, customer_source)
    merchant_risk_fv = _view(settings, MERCHANT_RISK, merchant, merchant_source)
    # The transaction being scored: its amount and its time, sent with every request.
    transaction_request = RequestSource(
        name="transaction_request",
        schema=[
            Field(name="amount", dtype=feast_types.Float64),
            Field(name=REQUEST_TIME, dtype=feast_types.Float64),
        ],
    )
    transaction_context_odfv = _transaction_context_odfv(settings, customer_activity_fv, transaction_request)
    # The model's contract: training and serving fetch features by this name, and MLflow logs it.
    fraud_features = FeatureService(
        name=settings.feast.service,
        features=[customer_activity_fv, merchant_risk_fv, transaction_context_odfv],
        description="Every feature the fraud model uses.",
        owner=settings.owner,
    )
    return Definitions(
        entities=[customer, merchant],
        sources=[customer_source, merchant_source, transaction_request],
        feature_views=[customer_activity_fv, merchant_risk_fv],
        on_demand_feature_views=[transaction_context_odfv],
        feature_services=[fraud_features],
    )
