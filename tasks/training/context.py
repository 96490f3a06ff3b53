"""Where a training run comes from: who asked and why, the code version, the device.

Light on purpose (no numpy, no mlflow): the training result carries a ``RunContext``, and the
result is read back wherever it travels (the operator, the DAG's publish task).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from config import PROJECT_ROOT

MANUAL = "manual"


@dataclass
class RunContext:
    """Who asked for this training run and why (from the DAG run's conf)."""

    dag_id: str = MANUAL
    dag_run_id: str = MANUAL
    reason: str = MANUAL
    drift: Any = None

    @classmethod
    def parse(cls, raw: str | dict[str, Any] | None, reason: str | None = None) -> RunContext:
        """From ``--run-context`` (JSON text) or a dict; ``reason`` wins over the one inside.
        Accepts both spellings the monitor's conf and the result use (``run_id``/``dag_run_id``,
        ``reason``/``trigger_reason``, ``drift``/``drift_summary``)."""
        data = json.loads(raw) if isinstance(raw, str) and raw.strip() else (raw or {})
        if not isinstance(data, dict):
            raise ValueError(f"--run-context must be a JSON object, got {type(data).__name__}")
        return cls(
            dag_id=str(data.get("dag_id") or MANUAL),
            dag_run_id=str(data.get("run_id") or data.get("dag_run_id") or MANUAL),
            reason=str(reason or data.get("reason") or data.get("trigger_reason") or MANUAL),
            drift=data.get("drift") or data.get("drift_summary"),
        )

    def as_dict(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "run_id": self.dag_run_id, "reason": self.reason, "drift": self.drift}


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
    import torch  # noqa: PLC0415 - torch (seconds) only to ask for CUDA: a cpu run never loads it

    available = bool(torch.cuda.is_available())
    if preference == "cuda" and not available:
        raise RuntimeError("train.device is cuda but torch.cuda.is_available() is False")
    return "cuda" if available else "cpu"
