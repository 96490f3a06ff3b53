"""Online serving of the fraud model on Ray Serve.

- ``app``: the Serve application (ingress router + champion/challenger model slots), ``build``;
- ``schemas``: request models from the data contract, control-API bodies, response shapes;
- ``models``: resolve, download, SHA-256-verify and load a registered model version;
- ``batching``: adaptive micro-batching of the scoring path;
- ``inference_log``: the append-only prediction log (hourly Parquet), labels, window reads;
- ``metrics``: the Prometheus metrics of ``/metrics``;
- ``client``: an HTTP client of the scoring and control API (no Ray needed).

``python -m tasks.serving`` starts it. Only ``app`` imports Ray; the rest is plain Python.
"""
