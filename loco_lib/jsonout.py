"""JSON that every reader accepts: ``json.dumps`` writes NaN and infinity as bare ``NaN`` /
``Infinity``, which is not JSON. Here they become ``null``, and a ``notes`` entry says where and why."""
from __future__ import annotations

import json
import math


def finite(value, path: str = ""):
    """``(value with every NaN / infinite float replaced by None, the paths replaced)``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, [path or "value"]
    if isinstance(value, dict):
        pairs = [(k, finite(v, f"{path}.{k}" if path else str(k))) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, [p for _, (_, ps) in pairs for p in ps]
    if isinstance(value, (list, tuple)):
        items = [finite(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return [v for v, _ in items], [p for _, ps in items for p in ps]
    return value, []


def dumps(value, **kwargs) -> str:
    """``json.dumps`` without NaN: non-finite numbers are null, listed in a top-level ``notes``."""
    clean, nulls = finite(value)
    if nulls and isinstance(clean, dict):
        notes = list(clean.get("notes") or []) + [f"{p} is null: not a number (e.g. a 0/0 ratio)" for p in nulls]
        clean = {**clean, "notes": notes}
    return json.dumps(clean, allow_nan=False, **kwargs)
