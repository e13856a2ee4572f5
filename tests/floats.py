"""Comparing float32 results that must agree up to rounding (a batch against single runs, a split
against one batch, a batched trace against its loop): the largest difference, in float32 ulps of the
largest magnitude involved, must stay below ``ULPS``.

Such results differ only in the order of their sums (another batch shape picks another kernel
blocking), so their difference scales with float32's epsilon and with the size of the numbers, and
it grows with the instruction set and the thread count. ``ULPS`` is loco's choice from a measured
worst case: ``LOCO_ULPS_LOG=<file> pytest tests/test_altered.py ...`` appends every ratio these
tests see, and under the native AVX-512, the AVX2, the SSE4.1 (ATen default) instruction sets and 1
or 2 threads the largest was recorded in ``tests/spread.md``; a real bug (a layer set applied to the
wrong sample, a missing patch) moves images by 1e-3 or more, thousands of times more.
"""
from __future__ import annotations

import os

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
ULPS = 512


def ulps(x, y) -> float:
    """The largest |x - y| in units of float32's epsilon times the largest magnitude (at least 1)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    scale = max(1.0, float(np.abs(x).max()), float(np.abs(y).max()))
    ratio = float(np.abs(x - y).max()) / (EPS32 * scale)
    log = os.environ.get("LOCO_ULPS_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{ratio:.1f}\n")
    return ratio


def close(x, y, limit: float = ULPS) -> bool:
    """True when x and y agree to ``limit`` float32 ulps of their magnitude."""
    return ulps(x, y) <= limit
