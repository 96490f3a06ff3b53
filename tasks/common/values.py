"""Values that cross a boundary (XCom, JSON files, MLflow tags) in a form every reader accepts."""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, numpy scalars Python numbers, times ISO text,
    dict keys text; containers are converted all the way down."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
