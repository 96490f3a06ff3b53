"""``control_state.StateStore`` in the Ray cluster's own key-value store (the GCS): shared by
every replica of the application on any node, alive as long as the cluster (with KubeRay's GCS
fault tolerance, beyond a head restart), and no extra process to run.

Keys, in namespace ``airloop-serving``: ``<app>/rev/<revision>`` (each a whole ``Desired``,
written only if absent: the compare-and-set), ``<app>/replica/<id>`` (each replica's report).
Only the newest ``KEEP_REVISIONS`` revisions are kept.
"""

from __future__ import annotations

import time

from ray.experimental import internal_kv as kv

from tasks.serving.control_state import FORGET_SECONDS, Desired, ReplicaReport

NAMESPACE = "airloop-serving"
KEEP_REVISIONS = 20


class RayKVStore:
    """The desired state and replica reports of application ``app`` in the GCS key-value store."""

    def __init__(self, app: str) -> None:
        self.app = app
        self._revisions = f"{app}/rev/"
        self._replicas = f"{app}/replica/"

    def _rev_key(self, revision: int) -> str:
        return f"{self._revisions}{revision:012d}"

    def read(self) -> Desired | None:
        keys = kv._internal_kv_list(self._revisions, namespace=NAMESPACE)
        for key in sorted(keys, reverse=True):
            data = kv._internal_kv_get(key, namespace=NAMESPACE)
            if data is not None:
                return Desired.from_json(data)
        return None

    def put(self, state: Desired) -> bool:
        existed = kv._internal_kv_put(
            self._rev_key(state.revision), state.to_json(), overwrite=False, namespace=NAMESPACE
        )
        if existed:
            return False
        old = state.revision - KEEP_REVISIONS
        if old > 0:
            kv._internal_kv_del(self._rev_key(old), namespace=NAMESPACE)
        return True

    def report(self, report: ReplicaReport) -> None:
        kv._internal_kv_put(f"{self._replicas}{report.replica}", report.to_json(), namespace=NAMESPACE)

    def reports(self) -> dict[str, ReplicaReport]:
        out = {}
        now = time.time()
        for key in kv._internal_kv_list(self._replicas, namespace=NAMESPACE):
            data = kv._internal_kv_get(key, namespace=NAMESPACE)
            if data is None:
                continue
            report = ReplicaReport.from_json(data)
            if now - report.at > FORGET_SECONDS:
                kv._internal_kv_del(key, namespace=NAMESPACE)
                continue
            out[report.replica] = report
        return out

    def forget(self, replica: str) -> None:
        kv._internal_kv_del(f"{self._replicas}{replica}", namespace=NAMESPACE)
