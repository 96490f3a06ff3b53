"""In-process ingress replicas for the tests: the parts composed as a replica composes them
(``ingress.compose``), real ``LocalSlot`` objects holding real ``LoadedModel`` objects, sharing
an in-process control store (``MemoryStore``) the way replicas share the cluster's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi.testclient import TestClient

from tasks.serving.control_state import MemoryStore
from tasks.serving.ingress import IngressParts, compose
from tasks.serving.metrics import ServingMetrics
from tasks.serving.router import Router
from tasks.serving.slots import LocalSlot
from tests.serving.test_slots import model

TOKEN = "s3cret"


@dataclass
class Admin:
    http: TestClient
    slots: dict[str, LocalSlot]
    router: Router
    metrics: ServingMetrics
    parts: IngressParts


def token_settings(settings, **serving):
    return settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"admin_token": TOKEN, **serving})}
    )


def replica(settings, tmp_path, store, replica_id: str) -> IngressParts:
    """One replica's parts (champion v1 in process), sharing ``store`` with the others."""
    folder = tmp_path / replica_id
    folder.mkdir(exist_ok=True)
    slots = {slot: LocalSlot(settings, slot) for slot in ("champion", "challenger")}
    slots["champion"].swap(model(folder, "1", 0.1))
    return compose(settings, dict(slots), store, replica_id, store.read())


def admin_app(settings, tmp_path) -> Iterator[Admin]:
    """One replica (champion v1) and a test client holding the token."""
    settings = token_settings(settings)
    parts = replica(settings, tmp_path, MemoryStore(), "r1")
    with TestClient(parts.app(), headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield Admin(http, parts.control.slots, parts.control.router, parts.control.metrics, parts)  # type: ignore[arg-type]
    parts.close()
