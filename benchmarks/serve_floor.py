"""The no-op Ray Serve application ``benchmarks/serving.py`` measures as its floor.

Same shape as airloop's application (a FastAPI ingress making one call to a model deployment),
doing no work. Its own module, imported only when that benchmark runs: FastAPI resolves the
handler's annotations from the module's globals.
"""

import json
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve

api = FastAPI()
BODY = b'{"score":0.0}'


@serve.deployment(name="floor_model", ray_actor_options={"num_cpus": 0})
class FloorModel:
    async def predict(self, columns: dict[str, Any]) -> dict[str, Any]:
        return {"version": "0", "scores": np.zeros(len(columns["amount"])), "seconds": 0.0}


@serve.deployment(name="floor_ingress", ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class FloorIngress:
    def __init__(self, model: Any) -> None:
        self.model = model

    @api.post("/score")
    async def score(self, request: Request) -> Response:
        row = json.loads(await request.body())
        await self.model.predict.remote({"amount": [row["amount"]]})
        return Response(BODY, media_type="application/json")


app = FloorIngress.bind(FloorModel.bind())
