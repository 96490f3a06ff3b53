"""The Feast store of a profile: its repo config, one handle per process, the definitions it has
registered (applied only when they changed) and the columns of the versioned feature service.

Built from ``config/`` (no hand-kept feature_store.yaml): local profile = file offline store over
Parquet, SQLite online store, file registry; production = the same Parquet on S3, Redis online
store, SQL registry on Postgres. Materialization, training sets and online reads use the handle
from here (``materialization``, ``offline``, ``online``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from feast import FeatureService, FeatureStore
from feast.diff.property_diff import TransitionType
from feast.repo_config import RepoConfig
from feast.repo_contents import RepoContents
from google.protobuf.message import Message

from config import PROJECT_ROOT
from feature_repo.definitions import feature_definitions
from tasks.common import storage

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)

_stores: dict[str, FeatureStore] = {}
_services: dict[str, tuple[float, FeatureService, list[str]]] = {}
_forget_hooks: list[Callable[[], None]] = []


def repo_config(settings: Settings) -> RepoConfig:
    fs = settings.feast
    registry: dict[str, Any] = {
        "registry_type": "sql" if fs.sql_registry else "file",
        "path": fs.registry,
        "cache_ttl_seconds": fs.registry_cache_ttl_seconds,
    }
    if fs.sql_registry:
        registry["sqlalchemy_config_kwargs"] = {"pool_pre_ping": True}
    online: dict[str, Any] = {"type": fs.online_store.type}
    if fs.online_store.type == "sqlite":
        online["path"] = fs.online_store.path
    else:
        online["connection_string"] = fs.online_store.connection_string
    return RepoConfig(
        project=fs.project,
        provider="local",
        registry=registry,
        online_store=online,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=str(PROJECT_ROOT / "feature_repo"),
    )


def get_store(settings: Settings) -> FeatureStore:
    """The feature store for these settings (one per process and settings)."""
    key = settings.model_dump_json()
    if key not in _stores:
        storage.configure(settings.storage.s3_endpoint_url)
        for path in (settings.feast.registry, settings.feast.online_store.path):
            if path and "://" not in path:
                storage.makedirs("file://" + path.rsplit("/", 1)[0])
        _stores[key] = FeatureStore(config=repo_config(settings))
    return _stores[key]


def on_forget(clear: Callable[[], None]) -> None:
    """Have ``forget_stores`` also clear a cache built from a store (the online readers)."""
    _forget_hooks.append(clear)


def forget_stores() -> None:
    """Drop cached stores (their registry caches), e.g. after the files under them were wiped."""
    _stores.clear()
    _services.clear()
    for clear in _forget_hooks:
        clear()


def feature_service(settings: Settings) -> tuple[FeatureService, list[str]]:
    """The feature service and its feature columns, re-read at most once per registry TTL.

    Resolving a service from the registry costs milliseconds (protos and type checks), more than
    the online read itself, so the serving path must not do it on every request.
    """
    key = settings.model_dump_json()
    cached = _services.get(key)
    if cached and time.monotonic() - cached[0] < settings.feast.registry_cache_ttl_seconds:
        return cached[1], cached[2]
    service = get_store(settings).get_feature_service(settings.feast.service)
    names = service_features(service)
    _services[key] = (time.monotonic(), service, names)
    return service, names


def service_features(service: FeatureService) -> list[str]:
    """A feature service's feature columns, in order."""
    return [f.name for projection in service.feature_view_projections for f in projection.features]


def feature_names(settings: Settings) -> list[str]:
    """The feature service's feature columns, in order (the model's input contract)."""
    return list(feature_service(settings)[1])


def apply(settings: Settings) -> list[str]:
    """Register the definitions when (and only when) they differ from the registry.

    Feast keeps the materialization watermark across applies (a test holds it to that, see
    feast#2905); applying only on a change keeps the registry's history readable too.
    Returns the changed objects as ``"<type> <name>: <transition>"`` lines, empty when unchanged.
    """
    store = get_store(settings)
    defs = feature_definitions(settings)
    contents = RepoContents(
        projects=[],
        data_sources=defs.sources,
        feature_views=defs.feature_views,
        on_demand_feature_views=defs.on_demand_feature_views,
        stream_feature_views=[],
        label_views=[],
        entities=defs.entities,
        feature_services=defs.feature_services,
        permissions=[],
    )
    registry_diff, _, _ = store.plan(contents)
    changes: list[str] = []
    stale: list[Any] = []
    for d in registry_diff.feast_object_diffs:
        if d.transition_type == TransitionType.UNCHANGED or not _material_change(d):
            continue
        changes.append(f"{d.feast_object_type.name.lower()} {d.name}: {d.transition_type.name.lower()}")
        if d.transition_type == TransitionType.DELETE and d.current_feast_object is not None:
            stale.append(d.current_feast_object)
    if changes:
        log.info("feast apply: %s", "; ".join(changes))
        store.apply(defs.all(), objects_to_delete=stale, partial=not stale)
    else:
        log.info("feast apply: definitions unchanged, registry left as it is")
    return changes


def _material_change(diff: Any) -> bool:
    """Whether a plan diff changes what the registry means, not just its bookkeeping.

    Feast's plan reports objects it manages itself (the project, the ``__dummy`` entity) as
    deletions, and a feature view's embedded source as updated whenever only its creation
    timestamps differ; neither is a reason to re-apply.
    """
    if diff.transition_type == TransitionType.DELETE:
        return bool(diff.feast_object_type.name != "PROJECT" and not diff.name.startswith("__"))
    if diff.transition_type != TransitionType.UPDATE:
        return True
    return _without_meta(diff.current_feast_object) != _without_meta(diff.new_feast_object)


def _strip_meta(message: Message) -> None:
    for field, value in message.ListFields():
        if field.name == "meta":
            message.ClearField(field.name)
        elif isinstance(value, Message):
            _strip_meta(value)
        elif field.type == field.TYPE_MESSAGE:
            for item in value:
                if isinstance(item, Message):
                    _strip_meta(item)


def _without_meta(obj: Any) -> bytes:
    """The object's proto without its ``meta`` (creation and update times), as comparable bytes."""
    proto = obj.to_proto()
    _strip_meta(proto)
    return bytes(proto.SerializeToString(deterministic=True))
