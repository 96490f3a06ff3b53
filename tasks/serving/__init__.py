"""Online serving of the fraud model on Ray Serve, in small parts.

The request path, outside in:
- ``app``: the Serve deployments (the ingress, the slot deployments of ``deployments``
  placement) and ``build`` / ``app_builder``, which wire the graph;
- ``api``: the FastAPI app of an ingress replica (scoring routes, ``/health``, ``/metrics``);
- ``admin``: the control API as an ``APIRouter``; ``control``: what it does to the ingress;
- ``pipeline``: the scoring path of a batch (``batching.MicroBatcher`` in front);
- ``lookup``: the batch's online features; ``router``: routes, fallback, merge (pure);
- ``slots``: the champion and challenger model slots, in process or behind a Ray handle;
- ``models``: resolve, download, SHA-256-verify and load a registered model version;
- ``shadow``: the bounded shadow mirror; ``recorder``: answers, metrics and log rows;
- ``metrics``: the Prometheus metrics; ``inference_log``: the append-only prediction log;
- ``schemas``: request models from the data contract, control-API bodies, response shapes;
  ``shapes``: the batch as plain data; ``responses``: JSON and 422 responses;
- ``client``: an HTTP client of the scoring and control API (no Ray needed);
- ``process``: ``python -m tasks.serving`` (start Serve and the application, or print its config).

Only ``app`` imports Ray (``process`` when it starts Serve); ``client``, ``inference_log`` and
``schemas`` are what other stages import.
"""
