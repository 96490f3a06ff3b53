"""The no-op Ray Serve applications ``benchmarks/serving.py`` measures as its floors.

Each has the shape of one of airloop's placements and does no work:

- ``ingress_app``: a FastAPI ingress that parses the body and answers (the shape of
  ``serving.placement: ingress``, the models inside the ingress replica);
- ``hop_app``: the same ingress making one call to a model deployment per request (the shape of
  ``serving.placement: deployments``).

Their latency is what any Serve application of that shape pays on the machine; airloop's minus
it is what features, models, routing and logging cost. Their own module, imported only when that
benchmark runs: FastAPI resolves the handlers' annotations from the module's globals.

Beside them, ``memlog_app``: airloop's own ingress with the inference log of the last round (rows
buffered in memory, written every ``flush_seconds``, lost with the process) in place of the
write-ahead log, so the benchmark measures what answering only once a prediction is on disk costs.
"""

import asyncio
import json
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve

BODY = b'{"score":0.0}'
ingress_api = FastAPI()
hop_api = FastAPI()


@serve.deployment(name="floor_model", ray_actor_options={"num_cpus": 0})
class FloorModel:
    async def predict(self, columns: dict[str, Any]) -> dict[str, Any]:
        return {"version": "0", "scores": np.zeros(len(columns["amount"])), "seconds": 0.0}


@serve.deployment(name="floor_ingress", ray_actor_options={"num_cpus": 0})
@serve.ingress(ingress_api)
class FloorIngress:
    @ingress_api.post("/score")
    async def score(self, request: Request) -> Response:
        json.loads(await request.body())
        return Response(BODY, media_type="application/json")


@serve.deployment(name="floor_hop_ingress", ray_actor_options={"num_cpus": 0})
@serve.ingress(hop_api)
class FloorHopIngress:
    def __init__(self, model: Any) -> None:
        self.model = model

    @hop_api.post("/score")
    async def score(self, request: Request) -> Response:
        row = json.loads(await request.body())
        await self.model.predict.remote({"amount": [row["amount"]]})
        return Response(BODY, media_type="application/json")


ingress_app = FloorIngress.bind()
hop_app = FloorHopIngress.bind(FloorModel.bind())


class MemoryLog:
    """The previous inference log behind the new one's interface: ``predictions`` buffers the rows
    in ``InferenceLogWriter`` and is done at once (nothing waits for a disk)."""

    def __init__(self, settings: Any, writer_id: str) -> None:
        from tasks.serving.inference_log import InferenceLogWriter

        self.writer = InferenceLogWriter(settings, writer_id=writer_id)

    def predictions(self, columns: dict[str, Any], rows: int) -> "asyncio.Future[None]":
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writer.append(columns)
        future.set_result(None)
        return future


def memlog_app(settings: Any) -> Any:
    """airloop's ingress (``serving.placement: ingress``) logging through ``MemoryLog``."""
    from tasks.serving.app import Ingress, with_token

    class MemoryLogIngress(Ingress):
        def __init__(self, settings: Any) -> None:
            super().__init__(settings)
            self.parts.pipeline.recorder.writer = MemoryLog(settings, "memlog")  # type: ignore[assignment]

    deployment = serve.deployment(
        name="ingress", ray_actor_options={"num_cpus": settings.serving.replica_cpus}
    )
    return deployment(serve.ingress()(MemoryLogIngress)).bind(with_token(settings))
