"""Training entrypoint: candidates of two families, one gate, at most one registered version.

    python -m tasks.training --training-set-uri URI [--tracking-uri URI] [--reason TEXT]
                          [--run-context JSON] [--output PATH]

This is the train container's command (the train DAG's GPU pod runs it; the local profile runs it
as a process). Given a training set built by ``tasks.training.dataset``:

1. splits it by time: train | validation (early stopping, calibration) | hold-out (the gate);
2. trains every candidate of the configured grid (``train.families``, ``train.xgboost.grid``,
   ``train.mlp.grid``): XGBoost (hist, CUDA when present) and a PyTorch MLP (CUDA when present),
   class-weighted, early-stopped, seeded; each is a nested MLflow run with its params, per-round
   or per-epoch metrics, hold-out metrics and gate checks;
3. scores the current ``champion`` on the same hold-out and gates every candidate
   (``tasks.training.evaluation``);
4. registers the best passing candidate (``tasks.common.registry``) with its model card
   (``tasks.training.model_card``), or nothing, saying which checks failed.

The parent MLflow run holds the data version (content hash, partitions), the feature service and
its features, the git commit, the run context (DAG, run, reason, drift summary) and the decision.
The result (JSON, shape in ``README.md``) goes to ``--output`` (default ``/airflow/xcom/return.json``
when ``/airflow/xcom`` exists: the KubernetesPodOperator's XCom sidecar reads it) and, as the last
line, to stdout. Exit status: 0 when the run completed (registered or rejected), 1 on errors.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config import PROJECT_ROOT

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from config import Settings
    from tasks.training.dataset import DataVersion
    from tasks.training.evaluation import Decision, Metrics, Split
    from tasks.training.families import Fitted
    from tasks.training.families.base import InputSpec

XCOM_DIR = Path("/airflow/xcom")
XCOM_RETURN = XCOM_DIR / "return.json"
MODEL_ARTIFACT = "model"
CARD_ARTIFACT = "model_card.html"


def _say(msg: str) -> None:
    print(f"[train] {msg}", flush=True)


# --- candidates -----------------------------------------------------------------------------


@dataclass
class FitContext:
    """Everything a family's ``fit`` needs, the same for every candidate of a run."""

    settings: Settings
    spec: InputSpec
    split: Split
    pos_weight: float
    seed: int
    device: str

    def arrays(self) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
        from tasks.training.families.base import model_input

        label = self.settings.schema_.label
        s = self.split
        return (
            model_input(s.train, self.spec),
            s.train[label].to_numpy(),
            model_input(s.valid, self.spec),
            s.valid[label].to_numpy(),
        )


@dataclass
class Candidate:
    """One model to train: a family and one point of its hyper-parameter grid."""

    name: str
    family: str
    params: dict[str, Any] = field(default_factory=dict)

    def fit(self, ctx: FitContext) -> Fitted:
        from tasks.training.families import mlp, prior, xgb

        modules = {"xgboost": xgb, "mlp": mlp, "prior": prior}
        family_cfg = {"xgboost": ctx.settings.train.xgboost, "mlp": ctx.settings.train.mlp}.get(self.family)
        train, y_train, valid, y_valid = ctx.arrays()
        return modules[self.family].fit(
            train,
            y_train,
            valid,
            y_valid,
            spec=ctx.spec,
            params=self.params,
            family=family_cfg,
            pos_weight=ctx.pos_weight,
            seed=ctx.seed,
            device=ctx.device if self.family != "prior" else "cpu",
        )


def _grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def _name(family: str, params: dict[str, Any], grid: dict[str, list[Any]]) -> str:
    varying = [k for k, v in grid.items() if len(v) > 1]
    if not varying:
        return family
    return f"{family}(" + ",".join(f"{k}={params[k]}" for k in varying) + ")"


def plan(settings: Settings) -> list[Candidate]:
    """Every candidate of the configured families and grids, in a fixed order."""
    out: list[Candidate] = []
    for family in settings.train.families:
        if family == "prior":
            out.append(Candidate("prior", "prior"))
            continue
        grid = getattr(settings.train, family).grid.model_dump()
        out += [Candidate(_name(family, p, grid), family, p) for p in _grid(grid)]
    return out


# --- context --------------------------------------------------------------------------------


def git_commit() -> str:
    """The code version: ``git rev-parse HEAD`` (``-dirty`` with local changes), else the
    ``GIT_COMMIT`` environment variable (set in images), else ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if head.returncode == 0 and head.stdout.strip():
            dirty = subprocess.run(
                ["git", "diff", "--quiet", "HEAD", "--"],
                cwd=PROJECT_ROOT,
                capture_output=True,
                timeout=10,
                check=False,
            )
            return head.stdout.strip() + ("-dirty" if dirty.returncode == 1 else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("GIT_COMMIT") or "unknown"


def resolve_device(preference: str) -> str:
    """``cuda`` when asked for or (``auto``) when ``torch.cuda.is_available()``, else ``cpu``."""
    if preference == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if preference == "cuda" and not available:
        raise RuntimeError("train.device is cuda but torch.cuda.is_available() is False")
    return "cuda" if available else "cpu"


@dataclass
class RunContext:
    """Who asked for this training run and why (from the DAG run's conf)."""

    dag_id: str = "manual"
    dag_run_id: str = "manual"
    reason: str = "manual"
    drift: Any = None

    @classmethod
    def parse(cls, raw: str | dict[str, Any] | None, reason: str | None = None) -> RunContext:
        data = json.loads(raw) if isinstance(raw, str) and raw.strip() else (raw or {})
        if not isinstance(data, dict):
            raise ValueError(f"--run-context must be a JSON object, got {type(data).__name__}")
        ctx = cls(
            dag_id=str(data.get("dag_id") or "manual"),
            dag_run_id=str(data.get("run_id") or data.get("dag_run_id") or "manual"),
            reason=str(reason or data.get("reason") or data.get("trigger_reason") or "manual"),
            drift=data.get("drift") or data.get("drift_summary"),
        )
        return ctx

    def as_dict(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "run_id": self.dag_run_id, "reason": self.reason, "drift": self.drift}


# --- one run --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One candidate after training and gating."""

    candidate: Candidate
    fitted: Fitted
    metrics: Metrics
    decision: Decision
    p: np.ndarray
    run_id: str

    def summary(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "name": self.candidate.name,
            "family": self.candidate.family,
            "params": self.candidate.params,
            "run_id": self.run_id,
            "device": self.fitted.device,
            "train_seconds": round(self.fitted.seconds, 3),
            "best_iteration": self.fitted.best_iteration,
            "metrics": {
                "roc_auc": m.roc_auc,
                "pr_auc": m.pr_auc,
                "log_loss": m.log_loss,
                "ece": m.ece,
                "brier": m.brier,
                "tpr_gap": m.tpr_gap,
                "latency_ms_per_row": m.latency_ms_per_row,
            },
            "passed": self.decision.passed,
            "failed_checks": self.decision.failed,
            "reasons": self.decision.reasons,
            "checks": self.decision.as_dict()["checks"],
        }


def _log_history(client: Any, run_id: str, history: dict[str, list[float]]) -> None:
    import math

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(v), now, step)
        for key, values in history.items()
        for step, v in enumerate(values)
        if not math.isnan(float(v))
    ]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])


def _signature(spec: InputSpec) -> Any:
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    inputs = [ColSpec("double", c, required=True) for c in [*spec.features, *spec.raw_numeric]]
    inputs += [ColSpec("string", c, required=False) for c in spec.raw_categorical]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([TensorSpec(np.dtype("float64"), (-1,))]))


def _input_example(frame: pd.DataFrame, spec: InputSpec) -> pd.DataFrame:
    from tasks.training.families.base import model_input

    example = model_input(frame, spec)
    complete = example.dropna()
    return (complete if len(complete) >= 3 else example.fillna(0.0)).head(5).reset_index(drop=True)


def _pip_requirements(family: str) -> list[str]:
    from importlib.metadata import version

    pkgs = ["mlflow", "numpy", "pandas", "cloudpickle"] + (["xgboost"] if family == "xgboost" else [])
    return [f"{p}=={version(p)}" for p in pkgs]


def _schema_frame(frame: pd.DataFrame, schema: Any) -> pd.DataFrame:
    """The columns a logged model's signature names, typed as it declares them."""
    import pandas as pd

    missing = [c for c in schema.input_names() if c not in frame.columns]
    if missing:
        raise KeyError(f"the hold-out lacks the model's input columns {missing}")
    out = pd.DataFrame(index=frame.index)
    for name, kind in zip(schema.input_names(), schema.input_types(), strict=True):
        col = frame[name]
        if str(getattr(kind, "name", kind)) in ("double", "float", "long", "integer"):
            out[name] = pd.to_numeric(col, errors="coerce").astype("float64")
        else:
            out[name] = col.astype("object").where(col.notna(), None)
    return out


def _champion(settings: Settings, tracking_uri: str, holdout: pd.DataFrame) -> dict[str, Any]:
    """The champion scored on the hold-out, or why it could not be."""
    import mlflow

    from tasks.common import registry
    from tasks.training import evaluation as evaluate

    name = settings.mlflow.registered_model
    version = registry.version_for_alias(registry.client(tracking_uri), name, registry.CHAMPION)
    if version is None:
        return {"version": None, "note": "no champion yet"}
    service = version.tags.get(registry.TAG_FEATURE_SERVICE)
    if service and service != settings.feast.service:
        note = (
            f"champion v{version.version} uses feature service {service}, this run {settings.feast.service}"
        )
        return {"version": version.version, "note": note}
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
        schema = model.metadata.get_input_schema()

        def predict(frame: pd.DataFrame) -> Any:
            return model.predict(_schema_frame(frame, schema))

        metrics, p = evaluate.evaluate(predict, holdout, settings, latency=False)
    except Exception as exc:  # noqa: BLE001 - any failure means "not comparable", reported as such
        note = f"champion v{version.version} could not score the hold-out: {type(exc).__name__}: {exc}"
        return {"version": version.version, "note": note[:500]}
    return {"version": version.version, "metrics": metrics, "p": p, "note": ""}


@dataclass
class Job:
    """One training run's inputs, resolved: data, split, context and where to log."""

    settings: Settings
    data: DataVersion
    spec: InputSpec
    split: Split
    context: RunContext
    fit: FitContext
    tracking_uri: str
    lineage: dict[str, str]
    commit: str
    say: Callable[[str], None]

    @property
    def holdout_y(self) -> np.ndarray:
        return self.split.holdout[self.settings.schema_.label].to_numpy()


def prepare(
    settings: Settings,
    training_set_uri: str,
    *,
    tracking_uri: str | None = None,
    reason: str | None = None,
    run_context: str | dict[str, Any] | None = None,
    say: Callable[[str], None] = _say,
) -> Job:
    """Read and check the training set, split it by time, resolve device, context and lineage."""
    from tasks.common import registry, storage
    from tasks.training import dataset as training_data
    from tasks.training import evaluation as evaluate
    from tasks.training.families.base import InputSpec

    storage.configure(settings.storage.s3_endpoint_url)
    context = RunContext.parse(run_context, reason)
    label = settings.schema_.label
    frame, data = training_data.read(settings, training_set_uri)
    spec = InputSpec.from_settings(settings, data.features)
    split = evaluate.time_split(frame, settings)
    n = split.describe(label)
    say(
        f"training set {training_set_uri}: {data.rows} rows, {data.positives} fraud, "
        f"sha256 {data.sha256[:16]}, {len(data.partitions)} partitions, "
        f"feature service {data.feature_service} ({len(data.features)} features)"
    )
    say(
        f"split by time: train {n['train_rows']} ({n['train_positives']} fraud) | valid {n['valid_rows']} "
        f"({n['valid_positives']}) from {split.valid_start} | hold-out {n['holdout_rows']} "
        f"({n['holdout_positives']}) from {split.holdout_start}"
    )
    y = split.train[label].to_numpy()
    pos_weight = settings.train.pos_weight or float((y == 0).sum() / max(1, (y == 1).sum()))
    device = resolve_device(settings.train.device)
    commit = git_commit()
    lineage = {
        registry.TAG_DAG_ID: context.dag_id,
        registry.TAG_DAG_RUN_ID: context.dag_run_id,
        registry.TAG_REASON: context.reason,
        registry.TAG_DATA_SHA256: data.sha256,
        registry.TAG_DATA_PARTITIONS: data.partition_summary,
        registry.TAG_DATA_ROWS: str(data.rows),
        registry.TAG_TRAINING_SET: data.uri,
        registry.TAG_FEATURE_SERVICE: data.feature_service,
        registry.TAG_FEATURES: ",".join(data.features),
        registry.TAG_GIT_COMMIT: commit,
    }
    return Job(
        settings=settings,
        data=data,
        spec=spec,
        split=split,
        context=context,
        fit=FitContext(settings, spec, split, pos_weight, settings.train.seed, device),
        tracking_uri=tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or settings.mlflow.url,
        lineage=lineage,
        commit=commit,
        say=say,
    )


def _log_inputs(job: Job, todo: list[Candidate]) -> None:
    """Params, tags and artifacts of the parent run: what went in."""
    import mlflow

    from tasks.training import registration

    t = job.settings.train
    mlflow.set_tags(
        {**{k: registration.tag_value(v) for k, v in job.lineage.items()}, "airloop.role": "training"}
    )
    mlflow.log_params(
        {
            "training_set_uri": job.data.uri,
            "data_sha256": job.data.sha256,
            "data_rows": job.data.rows,
            "data_positives": job.data.positives,
            "data_partitions": job.data.partition_summary,
            "feature_service": job.data.feature_service,
            "n_features": len(job.data.features),
            "seed": job.fit.seed,
            "device": job.fit.device,
            "pos_weight": round(job.fit.pos_weight, 4),
            "holdout_fraction": t.holdout_fraction,
            "validation_fraction": t.validation_fraction,
            "candidates": ",".join(c.name for c in todo)[:500],
        }
    )
    sizes = job.split.describe(job.settings.schema_.label)
    mlflow.log_dict(job.data.as_dict(), "data_version.json")
    mlflow.log_dict(job.context.as_dict(), "run_context.json")
    mlflow.log_dict({"features": job.data.features, "input_columns": job.spec.columns}, "features.json")
    mlflow.log_dict(sizes, "split.json")
    mlflow.log_metrics({f"split_{k}": float(v) for k, v in sizes.items() if isinstance(v, int)})


def _train_one(job: Job, cand: Candidate, champion: dict[str, Any], client: Any) -> Outcome:
    """Fit one candidate in its own nested run, evaluate it on the hold-out and gate it."""
    import mlflow

    from tasks.training import evaluation as evaluate

    say = job.say
    with mlflow.start_run(run_name=cand.name, nested=True) as child:
        mlflow.set_tags({"family": cand.family, "candidate": cand.name, "airloop.role": "candidate"})
        mlflow.log_params({f"hp_{k}": v for k, v in cand.params.items()} | {"family": cand.family})
        say(f"{cand.name}: training ({cand.family}) ...")
        fitted = cand.fit(job.fit)
        model = fitted.model
        _log_history(client, child.info.run_id, fitted.history)
        mlflow.log_params(
            {
                "best_iteration": fitted.best_iteration,
                "device": fitted.device,
                "calibration_a": round(model.calibration[0], 6),
                "calibration_b": round(model.calibration[1], 6),
            }
        )
        metrics, p = evaluate.evaluate(model.predict_proba, job.split.holdout, job.settings)
        decision = evaluate.gate(
            cand.name, metrics, champion.get("metrics"), job.settings.gate, champion_note=champion["note"]
        )
        mlflow.log_metrics(
            metrics.scalars() | {"train_seconds": fitted.seconds, "gate_passed": float(decision.passed)}
        )
        mlflow.log_dict(decision.as_dict(), "gate.json")
        mlflow.set_tags(
            {"gate.passed": str(decision.passed), "gate.failed": ",".join(decision.failed) or "-"}
        )
        verdict = "PASSED" if decision.passed else "FAILED"
        say(
            f"{cand.name}: {fitted.seconds:.1f}s on {fitted.device}, best iteration {fitted.best_iteration}, "
            f"hold-out ROC AUC {metrics.roc_auc:.4f} PR AUC {metrics.pr_auc:.4f}; gate {verdict}"
        )
        for check in decision.checks:
            say(f"    {check.line}")
        return Outcome(cand, fitted, metrics, decision, p, child.info.run_id)


def _register(job: Job, best: Outcome, outcomes: list[Outcome], champion: dict[str, Any]) -> Any:
    """Log the winner's model and card in its run, then register it (``tasks.training.registration``)."""
    import mlflow

    from tasks.common import registry
    from tasks.training import model_card, registration
    from tasks.training.families.base import model_input

    model = best.fitted.model
    holdout_y = job.holdout_y
    card = model_card.Card(
        model_name=job.settings.mlflow.registered_model,
        candidate=best.candidate.name,
        family=best.candidate.family,
        params={
            **best.candidate.params,
            "best_iteration": best.fitted.best_iteration,
            "pos_weight": job.fit.pos_weight,
        },
        input_columns=job.spec.columns,
        metrics=best.metrics,
        decision=best.decision,
        y=holdout_y,
        p=best.p,
        importance=model_card.permutation_importance(
            model, model_input(job.split.holdout, job.spec), holdout_y, seed=job.fit.seed
        ),
        lineage=job.lineage,
        data_version=job.data.as_dict(),
        champion_metrics=champion.get("metrics"),
        champion_p=champion.get("p"),
        champion_version=champion.get("version"),
        other_candidates=[
            {
                "name": o.candidate.name,
                "family": o.candidate.family,
                "roc_auc": o.metrics.roc_auc,
                "pr_auc": o.metrics.pr_auc,
                "passed": o.decision.passed,
            }
            for o in outcomes
        ],
        ece_bins=job.settings.gate.ece_bins,
        threshold=job.settings.gate.fairness.threshold,
    )
    with mlflow.start_run(run_id=best.run_id, nested=True):
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=model,
            signature=_signature(job.spec),
            input_example=_input_example(job.split.train, job.spec),
            pip_requirements=_pip_requirements(model.family),
        )
        mlflow.log_text(model_card.render(card), CARD_ARTIFACT)
        card_uri = mlflow.get_artifact_uri(CARD_ARTIFACT)
        mlflow.set_tags({k: registration.tag_value(v) for k, v in job.lineage.items()})
    return registration.register(
        job.settings,
        job.tracking_uri,
        logged_model_uri=info.model_uri,
        logged_model_id=info.model_id,
        run_id=best.run_id,
        tags={
            **job.lineage,
            registry.TAG_FAMILY: best.candidate.family,
            registry.TAG_CANDIDATE: best.candidate.name,
        },
        model_card_uri=card_uri,
        description=model_card.markdown(card),
    )


def run(
    settings: Settings,
    training_set_uri: str,
    *,
    tracking_uri: str | None = None,
    reason: str | None = None,
    run_context: str | dict[str, Any] | None = None,
    candidates: list[Candidate] | None = None,
    say: Callable[[str], None] = _say,
) -> dict[str, Any]:
    """Train, gate and (maybe) register; returns the result that ``main`` writes as JSON.

    ``candidates`` replaces the configured grid (tools and tests); they go through the same
    training, evaluation, gate and registration path.
    """
    import mlflow
    from mlflow import MlflowClient

    started = time.perf_counter()
    job = prepare(
        settings, training_set_uri, tracking_uri=tracking_uri, reason=reason, run_context=run_context, say=say
    )
    todo = candidates if candidates is not None else plan(settings)
    say(
        f"{len(todo)} candidates on {job.fit.device}, pos_weight {job.fit.pos_weight:.1f}, "
        f"seed {job.fit.seed}, git {job.commit}, MLflow {job.tracking_uri}"
    )
    mlflow.set_tracking_uri(job.tracking_uri)
    mlflow.set_registry_uri(job.tracking_uri)
    experiment = mlflow.set_experiment(settings.mlflow.experiment)
    client = MlflowClient(tracking_uri=job.tracking_uri, registry_uri=job.tracking_uri)

    with mlflow.start_run(run_name=f"train-{job.context.reason}"[:250]) as parent:
        _log_inputs(job, todo)
        champion = _champion(settings, job.tracking_uri, job.split.holdout)
        if champion.get("metrics") is not None:
            cm = champion["metrics"]
            mlflow.log_metrics(cm.scalars("champion_holdout_"))
            mlflow.set_tag("champion_version", champion["version"])
            say(f"champion v{champion['version']}: hold-out ROC AUC {cm.roc_auc:.4f}, PR AUC {cm.pr_auc:.4f}")
        else:
            say(f"champion: {champion['note']}")

        outcomes = [_train_one(job, cand, champion, client) for cand in todo]
        passing = [o for o in outcomes if o.decision.passed]
        best = max(passing, key=lambda o: getattr(o.metrics, settings.gate.select_by), default=None)
        registration = _register(job, best, outcomes, champion) if best else None
        status = "registered" if registration else "rejected"
        mlflow.set_tags({"gate.decision": status, "best_candidate": best.candidate.name if best else "-"})
        if registration:
            mlflow.set_tags(
                {
                    "registered_model": registration.name,
                    "registered_version": registration.version,
                    "model_sha256": registration.model_sha256,
                    "model_card": registration.model_card_uri,
                }
            )
            mlflow.log_metrics({f"best_{k}": v for k, v in best.metrics.scalars().items()})
        mlflow.log_dict(
            {"status": status, "decisions": [o.decision.as_dict() for o in outcomes]}, "gate.json"
        )

    result = _result(
        job,
        experiment.experiment_id,
        parent.info.run_id,
        outcomes=outcomes,
        champion=champion,
        best=best,
        registration=registration,
    )
    result["seconds"] = round(time.perf_counter() - started, 2)
    for line in summary_table(result):
        say(line)
    return result


def _result(
    job: Job,
    experiment_id: str,
    run_id: str,
    *,
    outcomes: list[Outcome],
    champion: dict[str, Any],
    best: Outcome | None,
    registration: Any,
) -> dict[str, Any]:
    base = job.tracking_uri.rstrip("/")
    reasons = [f"{o.candidate.name}: {r}" for o in outcomes for r in o.decision.reasons]
    card_url = None
    if registration:
        card_url = f"{base}/get-artifact?path={CARD_ARTIFACT}&run_uuid={registration.run_id}"
    metrics = champion.get("metrics")
    return _plain(
        {
            "status": "registered" if registration else "rejected",
            "mlflow_run_id": run_id,
            "experiment_id": experiment_id,
            "tracking_uri": job.tracking_uri,
            "run_url": f"{base}/#/experiments/{experiment_id}/runs/{run_id}",
            "registered_model": job.settings.mlflow.registered_model,
            "version": registration.version if registration else None,
            "aliases": registration.aliases if registration else [],
            "model_uri": registration.model_uri if registration else None,
            "model_sha256": registration.model_sha256 if registration else None,
            "model_card_uri": registration.model_card_uri if registration else None,
            "model_card_url": card_url,
            "best_candidate": best.candidate.name if best else None,
            "best_run_id": best.run_id if best else None,
            "reasons": [] if registration else (reasons or ["no candidates to train"]),
            "candidates": [o.summary() for o in outcomes],
            "champion": {
                "version": champion.get("version"),
                "note": champion.get("note", ""),
                "metrics": metrics.as_dict() if metrics else None,
            },
            "data_version": {k: v for k, v in job.data.as_dict().items() if k != "batches"},
            "split": job.split.describe(job.settings.schema_.label),
            "context": job.context.as_dict(),
            "git_commit": job.commit,
            "device": job.fit.device,
        }
    )


def _plain(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, numpy scalars become Python numbers."""
    import math

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summary_table(result: dict[str, Any]) -> list[str]:
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    head = (
        f"{'candidate':<34} {'device':<6} {'train s':>8} {'ROC AUC':>8} {'PR AUC':>7} {'logloss':>8} "
        f"{'ECE':>7} {'TPR gap':>8} {'ms/row':>7}  gate"
    )
    lines = ["", head, "-" * len(head)]
    for c in result["candidates"]:
        m = c["metrics"]
        gate = "pass" if c["passed"] else "FAIL " + ",".join(c["failed_checks"])
        lines.append(
            f"{c['name'][:34]:<34} {c['device']:<6} {c['train_seconds']:>8.2f} {num(m['roc_auc'], '.4f'):>8} "
            f"{num(m['pr_auc'], '.4f'):>7} {num(m['log_loss'], '.4f'):>8} {num(m['ece'], '.4f'):>7} "
            f"{num(m['tpr_gap'], '.3f'):>8} {num(m['latency_ms_per_row'], '.4f'):>7}  {gate}"
        )
    champ = result["champion"]
    if champ["metrics"]:
        m = champ["metrics"]
        lines.append(
            f"{'champion v' + str(champ['version']):<34} {'':<6} {'':>8} {num(m['roc_auc'], '.4f'):>8} "
            f"{num(m['pr_auc'], '.4f'):>7} {num(m['log_loss'], '.4f'):>8} {num(m['ece'], '.4f'):>7} "
            f"{num(m['tpr_gap'], '.3f'):>8} {'':>7}  (current champion)"
        )
    lines.append("")
    if result["status"] == "registered":
        lines.append(
            f"REGISTERED {result['registered_model']} version {result['version']} "
            f"({', '.join(result['aliases'])}) from {result['best_candidate']}; "
            f"sha256 {result['model_sha256'][:16]}"
        )
        lines.append(f"model card {result['model_card_uri']}")
    else:
        lines.append("NOTHING REGISTERED: no candidate passed the gate")
        lines += [f"  {r}" for r in result["reasons"]]
    lines.append(f"MLflow run {result['run_url']}  ({result['seconds']:.1f}s)")
    return lines


# --- CLI ------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.training",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--training-set-uri", required=True, help="a training set from tasks.training.dataset"
    )
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking server (default: $MLFLOW_TRACKING_URI, else mlflow.tracking_uri of the config)",
    )
    parser.add_argument("--reason", default=None, help="why this run happens (schedule, drift, manual)")
    parser.add_argument(
        "--run-context", default=None, help='JSON: {"dag_id", "run_id", "reason", "drift"} of the Airflow run'
    )
    parser.add_argument(
        "--output",
        default=None,
        help=f"where to write the JSON result (default: {XCOM_RETURN} when {XCOM_DIR} exists)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    from config import load_config
    from tasks.training.dataset import TrainingDataError
    from tasks.training.evaluation import SplitError

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Before xgboost and torch load OpenMP: idle threads sleep instead of spinning, which keeps
    # training from slowing down many times over when other processes share the cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    settings = load_config()
    output = Path(args.output) if args.output else (XCOM_RETURN if XCOM_DIR.is_dir() else None)
    try:
        result = run(
            settings,
            args.training_set_uri,
            tracking_uri=args.tracking_uri,
            reason=args.reason,
            run_context=args.run_context,
        )
    except (TrainingDataError, SplitError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
