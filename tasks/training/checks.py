"""One check of the gate: its value, the bound it must keep, and its verdict (a leaf: no numpy)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

Op = Literal[">=", "<="]


@dataclass
class Check:
    name: str
    value: float | None
    op: Op
    threshold: float | None
    passed: bool | None
    """None: skipped (cannot be computed, e.g. no champion yet)."""
    detail: str = ""

    @property
    def line(self) -> str:
        state = {True: "PASS", False: "FAIL", None: "skip"}[self.passed]
        if self.value is None or self.threshold is None:
            return f"{state}  {self.name}: {self.detail}"
        text = f"{state}  {self.name}: {self.value:.4f} {self.op} {self.threshold:.4f}"
        return f"{text} ({self.detail})" if self.detail else text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def passes(name: str, value: float, op: Op, threshold: float, detail: str = "") -> Check:
    """A check that passes when ``value op threshold`` holds (NaN never does)."""
    ok = value >= threshold if op == ">=" else value <= threshold
    return Check(name, value, op, threshold, bool(ok) and not math.isnan(value), detail)
