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
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from tasks.training.evaluation import calibration_curve
from tasks.training.families.base import FraudModel
from tasks.training.gate import Decision
from tasks.training.metrics import Metrics
from tasks.training.segment_gate import too_small

if TYPE_CHECKING:
    from config.training import Segments


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
    segments: Segments | None = None
    """The gate's segment rules: the per-segment table says which segments were judged."""


def permutation_importance(
    model: FraudModel, frame: pd.DataFrame, y: np.ndarray, *, seed: int, columns: list[str] | None = None
) -> dict[str, float]:
    """Drop in ROC AUC when each input column is shuffled (one pass, seeded), largest first."""
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


Series = list[tuple[str, np.ndarray]]
SQUARE = (4.6, 4.0)


def _axes(size: tuple[float, float]) -> Axes:
    """A bare ``Figure``'s axes: no pyplot, no global state, nothing to close."""
    return Figure(figsize=size).subplots()


def _png(ax: Axes) -> str:
    buffer = io.BytesIO()
    ax.get_figure().savefig(buffer, format="png", dpi=90, bbox_inches="tight")  # type: ignore[union-attr]
    return base64.b64encode(buffer.getvalue()).decode()


def _roc(card: Card, series: Series) -> str:
    ax = _axes(SQUARE)
    if len(np.unique(card.y)) == 2:
        for label, p in series:
            fpr, tpr, _ = roc_curve(card.y, p)
            ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (hold-out)")
    ax.legend(loc="lower right", fontsize=8)
    return _png(ax)


def _precision_recall(card: Card, series: Series) -> str:
    ax = _axes(SQUARE)
    if len(np.unique(card.y)) == 2:
        for label, p in series:
            precision, recall, _ = precision_recall_curve(card.y, p)
            ax.plot(recall, precision, label=label)
    ax.axhline(float(np.mean(card.y)), ls=":", c="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (hold-out)")
    ax.legend(loc="upper right", fontsize=8)
    return _png(ax)


def _calibration(card: Card, series: Series) -> str:
    ax = _axes(SQUARE)
    for label, p in series:
        curve = calibration_curve(card.y, p, card.ece_bins)
        ax.plot([c[0] for c in curve], [c[1] for c in curve], marker="o", label=label)
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="perfect")
    ax.set(xlabel="mean predicted probability", ylabel="observed fraud rate", title="Calibration")
    ax.legend(loc="upper left", fontsize=8)
    return _png(ax)


def _importance(card: Card) -> str:
    items = list(card.importance.items())[:15][::-1]
    ax = _axes((5.5, max(2.5, 0.3 * len(items) + 1)))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
    ax.set(xlabel="drop in ROC AUC when shuffled", title="Feature importance (permutation)")
    ax.tick_params(axis="y", labelsize=8)
    return _png(ax)


def _fairness(card: Card) -> str:
    segs, compared = card.metrics.segments, card.metrics.compared_segments
    names = list(segs)
    values = [0.0 if math.isnan(segs[s]["tpr"]) else segs[s]["tpr"] for s in names]
    ax = _axes((4.6, 3.6))
    ax.bar(names, values, color=["#4c72b0" if s in compared else "#bbbbbb" for s in names])
    for i, s in enumerate(names):
        ax.text(i, values[i] + 0.02, f"n+={int(segs[s]['positives'])}", ha="center", fontsize=8)
    ax.set(ylim=(0, 1.1), ylabel=f"TPR at p>={card.threshold}", title=f"Recall by {card.metrics.segment}")
    return _png(ax)


def plots(card: Card) -> dict[str, str]:
    """Plot name -> base64 PNG."""
    series: Series = [(card.candidate, card.p)]
    if card.champion_p is not None:
        series.append((f"champion v{card.champion_version}", card.champion_p))
    return {
        "roc": _roc(card, series),
        "pr": _precision_recall(card, series),
        "calibration": _calibration(card, series),
        "importance": _importance(card),
        "fairness": _fairness(card),
    }


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


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;"
    "font-size:.9em;text-align:left}th{background:#f3f3f3}figure{display:inline-block;margin:.5em}"
    "figcaption{text-align:center;font-size:.8em;color:#666}code{background:#f3f3f3;padding:0 .2em}"
)
VERDICT = {True: "pass", False: "FAIL", None: "skipped"}


def _metric_rows(card: Card) -> list[list[Any]]:
    champ = card.champion_metrics
    return [
        [m, getattr(card.metrics, m), getattr(champ, m) if champ else "-"]
        for m in METRIC_ROWS
        if getattr(card.metrics, m) is not None
    ]


def _check_rows(card: Card) -> list[list[Any]]:
    return [[c.name, VERDICT[c.passed], c.value, c.op, c.threshold, c.detail] for c in card.decision.checks]


def _lineage_rows(card: Card) -> list[list[Any]]:
    data = card.data_version
    rows = [[k, v] for k, v in card.lineage.items()]
    rows += [["data " + k, data.get(k)] for k in ("uri", "sha256", "rows", "positives", "start", "end")]
    return [*rows, ["data partitions", ", ".join(data.get("partitions", []))]]


def _other_rows(card: Card) -> list[list[Any]]:
    return [
        [o["name"], o["family"], o.get("roc_auc"), o.get("pr_auc"), "pass" if o.get("passed") else "fail"]
        for o in card.other_candidates
    ]


SEGMENT_HEAD = [
    "column",
    "segment",
    "rows",
    "share",
    "fraud rows",
    "ROC AUC",
    "PR AUC",
    "recall",
    "champion ROC AUC",
    "champion PR AUC",
    "verdict",
]


def _verdict(card: Card, column: str, value: str, q: dict[str, float]) -> str:
    failed = [
        c.name.split("[", 1)[0].removeprefix("segment_")
        for c in card.decision.checks
        if c.passed is False and c.name.endswith(f"[{column}={value}]")
    ]
    if failed:
        return "FAIL: " + ", ".join(failed)
    rule = card.segments.columns.get(column) if card.segments else None
    if rule is not None and too_small(q, rule):
        return "too small to judge"
    return "pass"


def _segment_rows(card: Card) -> list[list[Any]]:
    """One row per value of each segment column: this model, the champion, the verdict."""
    champ = card.champion_metrics.segment_quality if card.champion_metrics else {}
    rows = []
    for column, groups in card.metrics.segment_quality.items():
        for value, q in groups.items():
            theirs = (champ.get(column) or {}).get(value) or {}
            rows.append(
                [
                    column,
                    value,
                    int(q["rows"]),
                    f"{q['share']:.1%}",
                    int(q["positives"]),
                    q["roc_auc"],
                    q["pr_auc"],
                    q["recall"],
                    theirs.get("roc_auc", "-"),
                    theirs.get("pr_auc", "-"),
                    _verdict(card, column, value, q),
                ]
            )
    return rows


def _figures(images: dict[str, str]) -> str:
    return "".join(
        f'<figure><img alt="{k}" src="data:image/png;base64,{v}"/><figcaption>{k}</figcaption></figure>'
        for k, v in images.items()
    )


def _sections(card: Card) -> str:
    """The card's body after its title: one heading and table (or plots) per section."""
    segments = [[s, v["rows"], v["positives"], v["tpr"]] for s, v in card.metrics.segments.items()]
    inputs = ", ".join(f"<code>{html.escape(c)}</code>" for c in card.input_columns)
    params = _table([[k, v] for k, v in card.params.items()], ["parameter", "value"])
    others = _table(_other_rows(card), ["candidate", "family", "ROC AUC", "PR AUC", "gate"])
    return f"""<h2>Hyper-parameters</h2>{params}
<h2>Hold-out metrics</h2>{_table(_metric_rows(card), ["metric", "this model", "champion"])}
<h2>Gate</h2>{_table(_check_rows(card), ["check", "result", "value", "op", "threshold", "detail"])}
<h2>Quality by segment (recall at p&gt;={card.metrics.threshold})</h2>
{_table(_segment_rows(card), SEGMENT_HEAD)}
<h2>Fairness: recall by {html.escape(card.metrics.segment)}</h2>
{_table(segments, ["segment", "rows", "fraud rows", "TPR"])}
<h2>Plots</h2>{_figures(plots(card))}
<h2>Feature importance</h2>{_table([[k, v] for k, v in card.importance.items()], ["column", "AUC drop"])}
<h2>Other candidates of this run</h2>{others}
<h2>Input</h2><p>{inputs}</p>
<h2>Lineage</h2>{_table(_lineage_rows(card), ["what", "value"])}
"""


def render(card: Card) -> str:
    """The whole card as one HTML document."""
    name = html.escape(card.model_name)
    verdict = "passed the gate" if card.decision.passed else "did NOT pass the gate"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Model card: {name}</title>
<style>{STYLE}</style></head><body>
<h1>Model card: {name}</h1>
<p>Candidate <b>{html.escape(card.candidate)}</b> ({html.escape(card.family)}) {verdict}.
Predicts the probability that a card transaction is fraud.</p>
{_sections(card)}</body></html>
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
