"""Figures the fault-injection tests measure, kept for the closing report: each call appends one
JSON line to the file ``AIRLOOP_TEST_FIGURES`` names (nothing when it is unset), so a whole run of
the suite leaves the fault table behind without ``-s``."""

from __future__ import annotations

import json
import os
from typing import Any


def keep(kind: str, figures: dict[str, Any]) -> None:
    path = os.environ.get("AIRLOOP_TEST_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"kind": kind, **figures}, default=str) + "\n")
