"""What a backtest replays and which retraining policies it compares, from one YAML or JSON file.

A *policy* is a name and overrides of the ``monitor`` section (drift share threshold, confirm
windows, cooldown, performance tolerances, the estimated-performance trigger, ...): the same keys
as ``config/<profile>.yaml``. The rest of the file says what history is replayed (a simulator
scenario, its onset, its length, traffic per hour, the label delay) and the reduced scale at
which retrains are trained (``settings``: overrides of any other section, e.g. ``train``)::

    history: simulator          # or project: the curated data and its labels (source.py)
    scenario: covariate_drift   # stable | covariate_drift | concept_drift | ramp
    days: 90                    # replayed after train_days of stable history
    onset_day: 30
    policies:
      - name: default           # the profile's own monitor settings
      - {name: eager, monitor: {decision: {confirm_windows: 1}}}

Settings per policy are built the way every airloop process builds them: the profile's YAML with
``AIRLOOP__SECTION__KEY`` overrides (``config.read_config``), so a policy file cannot set what the
profile's schema does not allow.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from config import ENV_PREFIX, read_config
from tasks.platform.scenarios import SCENARIOS

if TYPE_CHECKING:
    from config import Settings

HISTORIES = ("simulator", "project")
"""Where the hours come from (``source``): the simulator's scenario or the curated data."""

DEFAULTS: dict[str, Any] = {
    "history": "simulator",
    "scenario": "covariate_drift",
    "days": 90,
    "train_days": 7,
    "onset_day": 30,
    "rows_per_hour": 600,
    "label_delay_hours": [1.0, 6.0],
    "retrain_hours": 2,
    "quality_hours": 24,
    "segment_gate": False,
    "reference": True,
    "settings": {},
}


@dataclass(frozen=True)
class Policy:
    name: str
    monitor: dict[str, Any] = field(default_factory=dict)
    """Overrides of the ``monitor`` section."""


@dataclass(frozen=True)
class Spec:
    """One backtest: the history it replays and the policies it compares."""

    history: str
    """``simulator`` (the scenario's hours) or ``project`` (the curated data: ``source``)."""
    scenario: str
    days: float
    train_days: float
    onset_day: float
    rows_per_hour: int
    label_delay_hours: tuple[float, float]
    """Each label lands uniformly this many hours after its prediction."""
    retrain_hours: int
    """From a retrain decision to its champion serving (training, gate, rollout)."""
    quality_hours: int
    """The quality curve: ROC AUC and recall over this many hours of predictions, all labels known."""
    segment_gate: bool
    """Whether retrains are held to the gate's per-segment checks (``gate.segments``): off by
    default (set when the backtest's models saw the request's raw columns only and missed some
    segments' recall floors, which turned every retrain down)."""
    reference: bool
    """Whether to train and score the reference model (``yardsticks``: what a model of the new
    traffic alone reaches; one more training and feature computation)."""
    settings: dict[str, Any]
    """Overrides of every policy's settings (the reduced training scale, the drift sample)."""
    policies: tuple[Policy, ...]

    @property
    def hours(self) -> int:
        return round(self.days * 24)

    @property
    def train_hours(self) -> int:
        return round(self.train_days * 24)

    @property
    def onset_hour(self) -> int:
        """Hours after the replay's start when the scenario begins (stable before)."""
        return round(self.onset_day * 24)

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in DEFAULTS}
        out["label_delay_hours"] = list(self.label_delay_hours)
        return out | {"policies": [{"name": p.name, "monitor": p.monitor} for p in self.policies]}


def parse(data: dict[str, Any]) -> Spec:
    """A spec from a parsed file; ``ValueError`` naming what is wrong."""
    unknown = set(data) - set(DEFAULTS) - {"policies"}
    if unknown:
        raise ValueError(f"unknown backtest keys {sorted(unknown)}; known: {sorted([*DEFAULTS, 'policies'])}")
    merged = DEFAULTS | data
    if merged["history"] not in HISTORIES:
        raise ValueError(f"unknown history {merged['history']!r}; one of {', '.join(HISTORIES)}")
    if merged["scenario"] not in SCENARIOS:
        raise ValueError(f"unknown scenario {merged['scenario']!r}; one of {', '.join(SCENARIOS)}")
    raw = merged.get("policies") or [{"name": "default"}]
    policies = tuple(Policy(str(p["name"]), dict(p.get("monitor") or {})) for p in raw)
    if len({p.name for p in policies}) != len(policies):
        raise ValueError("policy names must be unique")
    lo, hi = (float(x) for x in merged["label_delay_hours"])
    if not 0 <= lo <= hi:
        raise ValueError("label_delay_hours must be [low, high] with 0 <= low <= high")
    return Spec(
        history=str(merged["history"]),
        scenario=str(merged["scenario"]),
        days=float(merged["days"]),
        train_days=float(merged["train_days"]),
        onset_day=float(merged["onset_day"]),
        rows_per_hour=int(merged["rows_per_hour"]),
        label_delay_hours=(lo, hi),
        retrain_hours=int(merged["retrain_hours"]),
        quality_hours=int(merged["quality_hours"]),
        segment_gate=bool(merged["segment_gate"]),
        reference=bool(merged["reference"]),
        settings=dict(merged["settings"] or {}),
        policies=policies,
    )


def load(path: str | Path) -> Spec:
    """A spec from a YAML or JSON file (JSON is YAML)."""
    text = Path(path).read_text()
    data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a backtest file is a mapping")
    return parse(data)


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        # an empty mapping overrides nothing (as a variable it would replace the whole section)
        for key, inner in value.items():
            _flatten(f"{prefix}__{str(key).upper()}", inner, out)
        return
    out[prefix] = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    out[prefix] = out[prefix].removesuffix("\n...").strip()


def overrides(sections: dict[str, Any]) -> dict[str, str]:
    """``{section: {key: value}}`` as the ``AIRLOOP__SECTION__KEY`` variables ``read_config`` reads."""
    out: dict[str, str] = {}
    for section, value in sections.items():
        _flatten(f"{ENV_PREFIX}{section.upper()}", value, out)
    return out


def policy_settings(spec: Spec, policy: Policy, profile: str | None = None) -> Settings:
    """The settings a policy's monitor runs with: the profile, the spec's overrides, the policy's."""
    env = {**os.environ, **overrides(spec.settings), **overrides({"monitor": policy.monitor})}
    env[f"{ENV_PREFIX}SIMULATE__BATCH_MINUTES"] = "60"  # one simulated batch is one monitored hour
    return read_config(profile, env)
