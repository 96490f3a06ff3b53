"""The training result: what a run decided, as a typed object and as the JSON the pod returns.

``TrainingResult.as_dict()`` is the XCom contract: the entrypoint writes it to ``--output``
(``/airflow/xcom/return.json`` in a pod), the training operator returns it, the DAG's publish
task reads it back with ``TrainingResult.from_dict``. Its keys are documented in ``README.md``;
keep them stable. Light on purpose (no numpy, no mlflow): plugins import it at DAG parse time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from tasks.common.values import json_safe
from tasks.training.context import RunContext
from tasks.training.gate import Check
from tasks.training.metrics import Metrics

Status = Literal["registered", "rejected"]
STATUSES: tuple[Status, ...] = ("registered", "rejected")

SUMMARY_METRICS = ("roc_auc", "pr_auc", "log_loss", "ece", "brier", "tpr_gap", "latency_ms_per_row")
"""The hold-out metrics each candidate's summary keeps (the champion keeps all of them)."""

LINK_RUN = "run"
LINK_MODEL_CARD = "model_card"


@dataclass
class CandidateSummary:
    """One candidate after training and gating, as the result reports it."""

    name: str
    family: str
    params: dict[str, Any]
    run_id: str
    device: str
    train_seconds: float
    best_iteration: int
    metrics: dict[str, float | None]
    passed: bool
    failed_checks: list[str]
    reasons: list[str]
    checks: list[Check]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateSummary:
        values = {f.name: data[f.name] for f in fields(cls)}
        values["checks"] = [Check(**c) for c in data["checks"]]
        return cls(**values)


@dataclass
class ChampionSummary:
    """The champion on the same hold-out, or a note saying why it was not compared."""

    version: str | None
    note: str = ""
    metrics: Metrics | None = None

    def as_dict(self) -> dict[str, Any]:
        metrics = self.metrics.as_dict() if self.metrics else None
        return {"version": self.version, "note": self.note, "metrics": metrics}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChampionSummary:
        version, metrics = data.get("version"), data.get("metrics")
        return cls(
            version=None if version is None else str(version),
            note=str(data.get("note") or ""),
            metrics=Metrics.from_dict(metrics) if metrics else None,
        )


@dataclass
class TrainingResult:
    """A training run's decision, its candidates, the champion it was compared with, its inputs."""

    status: Status
    mlflow_run_id: str
    experiment_id: str
    tracking_uri: str
    run_url: str
    registered_model: str
    version: str | None
    aliases: list[str]
    model_uri: str | None
    model_sha256: str | None
    model_card_uri: str | None
    model_card_url: str | None
    best_candidate: str | None
    best_run_id: str | None
    reasons: list[str]
    """Every failed check of every candidate (``<candidate>: FAIL ...``) when nothing was registered."""
    candidates: list[CandidateSummary]
    champion: ChampionSummary
    data_version: dict[str, Any]
    """``tasks.training.dataset.DataVersion.as_dict()`` without the batch list."""
    split: dict[str, Any]
    context: RunContext
    git_commit: str
    device: str
    seconds: float = 0.0

    @property
    def registered(self) -> bool:
        return self.status == "registered"

    @property
    def data_sha256(self) -> str:
        return str(self.data_version["sha256"])

    @property
    def feature_service(self) -> str:
        return str(self.data_version["feature_service"])

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["candidates"] = [c.as_dict() for c in self.candidates]
        out["champion"] = self.champion.as_dict()
        out["context"] = self.context.as_dict()
        safe: dict[str, Any] = json_safe(out)
        return safe

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingResult:
        """The result back from ``as_dict()`` (the entrypoint's JSON, an XCom value); keys it does
        not know are ignored. ``KeyError``/``TypeError``/``ValueError`` when it is not one."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("status") not in STATUSES:
            raise ValueError(f"not a training result: status {values.get('status')!r}")
        values["candidates"] = [CandidateSummary.from_dict(c) for c in data["candidates"]]
        values["champion"] = ChampionSummary.from_dict(data["champion"])
        values["context"] = RunContext.parse(data["context"])
        return cls(**values)

    def public_links(self, ui_url: str) -> dict[str, str]:
        """The MLflow run and the model card at the address browsers reach (``ui_url``): the
        entrypoint built its URLs on the tracking URI it used, cluster-internal in production."""
        base = self.tracking_uri.rstrip("/")

        def public(url: str | None) -> str:
            if url and base and url.startswith(base):
                return ui_url.rstrip("/") + url[len(base) :]
            return url or ""

        return {LINK_RUN: public(self.run_url), LINK_MODEL_CARD: public(self.model_card_url)}
