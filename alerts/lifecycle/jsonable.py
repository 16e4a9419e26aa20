"""Evidence as plain JSON: what the lifecycle stores in alert_events.evidence and audit_log."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

import numpy as np

from geowarn.errors import InvalidInput


def jsonable(value: Any, path: str) -> Any:
    """`value` as plain JSON types; InvalidInput naming the path of anything that is not."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Enum):
        return jsonable(value.value, path)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{path}: {value} is not a finite number (JSON has no NaN or "
                               "Infinity; leave the item out or use null)")
        return float(value)
    if isinstance(value, np.generic):
        return jsonable(value.item(), path)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), path)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput(f"{path}: datetime {value.isoformat()} needs a time zone")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInput(f"{path}: key {k!r} is not a string")
            out[k] = jsonable(v, f"{path}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise InvalidInput(f"{path}: {type(value).__name__} is not JSON (use numbers, strings, "
                       "lists, mappings, aware datetimes)")
