"""The model card: one self-contained HTML file per registered model version.

What the model is (family, hyper-parameters, input columns), what it was trained on (data
version, feature service, lineage), how it did on the hold-out against the champion (metrics,
every gate check), and five plots embedded as base64 PNGs: ROC and precision-recall curves,
calibration (reliability diagram), feature importance (permutation: drop in hold-out ROC AUC when
a column is shuffled) and TPR per segment of the fairness column.

``markdown`` gives the short version for the registry's version description.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.training.evaluation import calibration_curve

if TYPE_CHECKING:
    import pandas as pd

    from tasks.training.evaluation import Decision, Metrics
    from tasks.training.families.base import FraudModel


@dataclass
class Card:
    model_name: str
    candidate: str
    family: str
    params: dict[str, Any]
    input_columns: list[str]
    metrics: Metrics
    decision: Decision
    y: np.ndarray
    p: np.ndarray
    importance: dict[str, float]
    lineage: dict[str, Any]
    data_version: dict[str, Any]
    champion_metrics: Metrics | None = None
    champion_p: np.ndarray | None = None
    champion_version: str | None = None
    other_candidates: list[dict[str, Any]] = field(default_factory=list)
    ece_bins: int = 10
    threshold: float = 0.5


def permutation_importance(
    model: FraudModel, frame: pd.DataFrame, y: np.ndarray, *, seed: int, columns: list[str] | None = None
) -> dict[str, float]:
    """Drop in ROC AUC when each input column is shuffled (one pass, seeded), largest first."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return {}
    rng = np.random.default_rng(seed)
    base = roc_auc_score(y, model.predict_proba(frame))
    out = {}
    for col in columns or [c for c in model.spec.columns if c not in model.spec.exclude]:
        shuffled = frame.copy()
        shuffled[col] = frame[col].to_numpy()[rng.permutation(len(frame))]
        out[col] = float(base - roc_auc_score(y, model.predict_proba(shuffled)))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def plots(card: Card) -> dict[str, str]:
    """Plot name -> base64 PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    series = [(card.candidate, card.p)]
    if card.champion_p is not None:
        series.append((f"champion v{card.champion_version}", card.champion_p))
    out: dict[str, str] = {}
    two_classes = len(np.unique(card.y)) == 2

    fig, ax = plt.subplots(figsize=(4.6, 4))
    for label, p in series:
        if two_classes:
            fpr, tpr, _ = roc_curve(card.y, p)
            ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (hold-out)")
    ax.legend(loc="lower right", fontsize=8)
    out["roc"] = _png(fig)

    fig, ax = plt.subplots(figsize=(4.6, 4))
    for label, p in series:
        if two_classes:
            precision, recall, _ = precision_recall_curve(card.y, p)
            ax.plot(recall, precision, label=label)
    ax.axhline(float(np.mean(card.y)), ls=":", c="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (hold-out)")
    ax.legend(loc="upper right", fontsize=8)
    out["pr"] = _png(fig)

    fig, ax = plt.subplots(figsize=(4.6, 4))
    for label, p in series:
        curve = calibration_curve(card.y, p, card.ece_bins)
        ax.plot([c[0] for c in curve], [c[1] for c in curve], marker="o", label=label)
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="perfect")
    ax.set(xlabel="mean predicted probability", ylabel="observed fraud rate", title="Calibration")
    ax.legend(loc="upper left", fontsize=8)
    out["calibration"] = _png(fig)

    items = list(card.importance.items())[:15][::-1]
    fig, ax = plt.subplots(figsize=(5.5, max(2.5, 0.3 * len(items) + 1)))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
    ax.set(xlabel="drop in ROC AUC when shuffled", title="Feature importance (permutation)")
    ax.tick_params(axis="y", labelsize=8)
    out["importance"] = _png(fig)

    segs = card.metrics.segments
    names = list(segs)
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    values = [0.0 if math.isnan(segs[s]["tpr"]) else segs[s]["tpr"] for s in names]
    colors = ["#4c72b0" if s in card.metrics.compared_segments else "#bbbbbb" for s in names]
    ax.bar(names, values, color=colors)
    for i, s in enumerate(names):
        ax.text(i, values[i] + 0.02, f"n+={int(segs[s]['positives'])}", ha="center", fontsize=8)
    ax.set(ylim=(0, 1.1), ylabel=f"TPR at p>={card.threshold}", title=f"Recall by {card.metrics.segment}")
    out["fairness"] = _png(fig)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return html.escape(str(value))


def _table(rows: list[list[Any]], head: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


METRIC_ROWS = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "ece",
    "brier",
    "tpr_gap",
    "latency_ms_per_row",
    "rows",
    "positives",
)


def render(card: Card) -> str:
    """The whole card as one HTML document."""
    images = plots(card)
    champ = card.champion_metrics
    metric_rows = [
        [m, getattr(card.metrics, m), getattr(champ, m) if champ else "-"]
        for m in METRIC_ROWS
        if getattr(card.metrics, m) is not None
    ]
    checks = [
        [
            c.name,
            {True: "pass", False: "FAIL", None: "skipped"}[c.passed],
            c.value,
            c.op,
            c.threshold,
            c.detail,
        ]
        for c in card.decision.checks
    ]
    seg_rows = [[s, v["rows"], v["positives"], v["tpr"]] for s, v in card.metrics.segments.items()]
    data = card.data_version
    lineage = [[k, v] for k, v in card.lineage.items()]
    lineage += [["data " + k, data.get(k)] for k in ("uri", "sha256", "rows", "positives", "start", "end")]
    lineage.append(["data partitions", ", ".join(data.get("partitions", []))])
    others = [
        [o["name"], o["family"], o.get("roc_auc"), o.get("pr_auc"), "pass" if o.get("passed") else "fail"]
        for o in card.other_candidates
    ]
    img = "".join(
        f'<figure><img alt="{k}" src="data:image/png;base64,{v}"/><figcaption>{k}</figcaption></figure>'
        for k, v in images.items()
    )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;"
        "font-size:.9em;text-align:left}th{background:#f3f3f3}figure{display:inline-block;margin:.5em}"
        "figcaption{text-align:center;font-size:.8em;color:#666}code{background:#f3f3f3;padding:0 .2em}"
    )
    verdict = "passed the gate" if card.decision.passed else "did NOT pass the gate"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Model card: {html.escape(card.model_name)}</title>
<style>{style}</style></head><body>
<h1>Model card: {html.escape(card.model_name)}</h1>
<p>Candidate <b>{html.escape(card.candidate)}</b> ({html.escape(card.family)}) {verdict}.
Predicts the probability that a card transaction is fraud.</p>
<h2>Hyper-parameters</h2>{_table([[k, v] for k, v in card.params.items()], ["parameter", "value"])}
<h2>Hold-out metrics</h2>{_table(metric_rows, ["metric", "this model", "champion"])}
<h2>Gate</h2>{_table(checks, ["check", "result", "value", "op", "threshold", "detail"])}
<h2>Fairness: recall by {html.escape(card.metrics.segment)}</h2>
{_table(seg_rows, ["segment", "rows", "fraud rows", "TPR"])}
<h2>Plots</h2>{img}
<h2>Feature importance</h2>{_table([[k, v] for k, v in card.importance.items()], ["column", "AUC drop"])}
<h2>Other candidates of this run</h2>{_table(others, ["candidate", "family", "ROC AUC", "PR AUC", "gate"])}
<h2>Input</h2><p>{", ".join(f"<code>{html.escape(c)}</code>" for c in card.input_columns)}</p>
<h2>Lineage</h2>{_table(lineage, ["what", "value"])}
</body></html>
"""


def markdown(card: Card) -> str:
    """A few lines for the registry's version description (MLflow renders markdown)."""
    m = card.metrics
    lines = [
        f"**{card.candidate}** ({card.family}), gate passed: {card.decision.passed}",
        "",
        f"hold-out: ROC AUC {m.roc_auc:.4f}, PR AUC {m.pr_auc:.4f}, log loss {m.log_loss:.4f}, "
        f"ECE {m.ece:.4f}, TPR gap by {m.segment} {m.tpr_gap:.3f}",
        f"data: {card.data_version.get('rows')} rows, sha256 `{str(card.data_version.get('sha256'))[:16]}`, "
        f"feature service `{card.lineage.get('feature_service')}`",
        f"trigger: {card.lineage.get('trigger_reason')} (DAG {card.lineage.get('dag_id')}, "
        f"run {card.lineage.get('dag_run_id')})",
    ]
    return "\n".join(lines)
