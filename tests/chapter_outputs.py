"""What the chapters' checked cells printed, in a form two executions can be compared in.

A chapter marks the cells whose results are checked with ``# NBVAL_CHECK_OUTPUT`` (nbval's marker).
:func:`checked_outputs` reads one executed notebook and returns, for each marked cell, its text
outputs (stdout and the ``text/plain`` of results and displays) after the sanitizers of
``tests/nbval_sanitize.cfg`` (nbval's format: a ``regex`` and its ``replace`` per section).
``tests/test_chapter_outputs.py`` compares the book's own execution with the committed expectation
through it, and ``tests/make_expectations.py`` prints the difference before it writes a new one.

Two executions on different machines compute different float bits, so the outputs are compared as
text and numbers (:func:`compare`): the text between the numbers must be the same (runs of spaces
count as one, so a wider number may shift a table's columns), and every number must lie within its
tolerance (:func:`tolerance`), which comes from the spread measured across instruction sets and
thread counts (``tests/spread.py`` writes it to ``tests/spread.json`` and ``tests/spread.md``). A
cell marked ``# LOCO_CHECK: meaning`` prints numbers of a random-weight twin: its text is compared,
and its numbers only for being numbers (finite where the expectation's is), never for their digits.
"""
from __future__ import annotations

import configparser
import difflib
import re
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SANITIZE = HERE / "nbval_sanitize.cfg"
MARK = "NBVAL_CHECK_OUTPUT"
MEANING = "LOCO_CHECK: meaning"  # a twin's cell: its numbers mean nothing, only that they are there
SPREAD = HERE / "spread.json"
# A number: not part of a word ("sd15", "5a891fb"), a sign only where it is not a dash ("8-9").
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?!\w)")
SPREAD_FACTOR = 3  # a tolerance is this many times the measured spread, plus the printed rounding


def sanitizers(path=SANITIZE) -> list[tuple[re.Pattern, str]]:
    cfg = configparser.ConfigParser()
    cfg.read(path)
    return [(re.compile(cfg[s]["regex"]), cfg[s]["replace"]) for s in cfg.sections()]


def _text(out) -> str | None:
    kind = out.get("output_type")
    if kind == "stream":
        return None if out.get("name") == "stderr" else "".join(out.get("text", ""))
    if kind in ("execute_result", "display_data"):
        t = out.get("data", {}).get("text/plain")
        return None if t is None else "".join(t)
    if kind == "error":
        return f"{out.get('ename')}: {out.get('evalue')}"
    return None


def checked_outputs(path, subs=None) -> list[tuple[str, str]]:
    """``[(cell source, sanitized text of its outputs)]`` for every marked code cell of ``path``."""
    subs = sanitizers() if subs is None else subs
    nb = nbformat.read(str(path), as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code" or MARK not in cell.source:
            continue
        text = "".join(t for t in (_text(o) for o in cell.get("outputs", [])) if t is not None)
        for pattern, replace in subs:
            text = pattern.sub(replace, text)
        cells.append((cell.source.strip(), text))
    return cells


def diff(expected, actual, name: str = "") -> str:
    """A unified diff, cell by cell, of two :func:`checked_outputs` lists ('' when they agree to the letter)."""
    return compare(expected, actual, name, exact=True)


def cell_id(source: str) -> str:
    """A checked cell's name in ``tests/spread.json``: a hash of its source."""
    import hashlib

    return hashlib.sha1(source.strip().encode()).hexdigest()[:12]


def split_numbers(text: str) -> tuple[str, list[str]]:
    """``(skeleton, numbers)``: the text with every number replaced by ``#`` and runs of spaces made
    one, and the numbers as printed."""
    numbers = NUMBER.findall(text)
    skeleton = NUMBER.sub("#", text)
    skeleton = "\n".join(re.sub(r"[ \t]+", " ", line).strip() for line in skeleton.splitlines())
    return skeleton, numbers


def decimals(number: str) -> int:
    mantissa = number.lower().split("e")[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def tolerance(number: str, spread: float | None) -> float:
    """How far a printed number may move: ``SPREAD_FACTOR`` times its measured spread, plus one unit
    of its last printed digit for a number printed with decimals (noise of any size can carry a
    rounding over). An integer whose spread was measured as 0 (a count, a layer) must be equal."""
    spread = float(spread or 0.0)
    unit = 10.0 ** -decimals(number) if decimals(number) or spread > 0 else 0.0
    if "e" in number.lower():
        unit *= 10.0 ** int(number.lower().split("e")[1])
    return SPREAD_FACTOR * spread + unit


def load_spread(path=SPREAD) -> dict:
    import json

    return json.loads(Path(path).read_text()) if Path(path).exists() else {"cells": {}, "kept": {}}


def compare(expected, actual, name: str = "", spread: dict | None = None, exact: bool = False) -> str:
    """The differences of two :func:`checked_outputs` lists beyond their tolerances ('' when none):
    for each cell, a unified diff when its text differs, else the numbers that moved too far
    (``exact``: a unified diff of every cell that differs at all)."""
    spread = {} if exact else load_spread() if spread is None else spread
    cells = spread.get("cells", {}).get(name, {})
    lines = []
    exp, act = dict(expected), dict(actual)
    for src in dict.fromkeys([s for s, _ in expected] + [s for s, _ in actual]):
        a, b = exp.get(src), act.get(src)
        if a == b:
            continue
        head = src.splitlines()[1] if len(src.splitlines()) > 1 else src
        label = f"{name}: cell `{head[:70]}`"
        if a is None or b is None:
            lines.append(f"{label}: {'new checked cell' if a is None else 'checked cell removed'}")
            continue
        (ska, na), (skb, nb) = split_numbers(a), split_numbers(b)
        if exact or ska != skb or len(na) != len(nb):
            lines.extend(difflib.unified_diff(a.splitlines(), b.splitlines(), f"{label} (expected)", f"{label} (now)",
                                              lineterm="", n=1))
            continue
        if MEANING in src:  # a twin's numbers: only that each is a number, finite where expected finite
            continue
        spreads = cells.get(cell_id(src), {}).get("spread", [])
        for i, (x, y) in enumerate(zip(na, nb)):
            tol = tolerance(x, spreads[i] if i < len(spreads) else None)
            if abs(float(x) - float(y)) > tol + 1e-12:
                lines.append(f"{label}: number {i} (of {len(na)}) was {x}, now {y}; tolerance {tol:.3g}")
    return "\n".join(lines)


def kept_tolerance(name: str, spread: dict | None = None) -> float:
    """How far a fresh measurement may differ from the kept file ``name`` (``"chapters/toy/pooled_text"``,
    the content key left out): ``SPREAD_FACTOR`` times the largest difference measured for that
    file across instruction sets and thread counts (``tests/spread.json``)."""
    spread = load_spread() if spread is None else spread
    entry = spread.get("kept", {}).get(name)
    assert entry is not None, f"no measured spread for the kept file {name}: run tests/spread.py"
    return SPREAD_FACTOR * float(entry["spread"])


def json_close(a, b, tol: float, path: str = "") -> list[str]:
    """Where two JSON values differ: structure, strings and flags exactly, numbers by more than ``tol``."""
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return [f"{path or '/'}: keys {list(a)} vs {list(b)}"]
        return [d for k in a for d in json_close(a[k], b[k], tol, f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path or '/'}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in json_close(x, y, tol, f"{path}/{i}")]
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return [] if abs(a - b) <= tol + 1e-12 or (a != a and b != b) else [f"{path}: {a} vs {b} (tolerance {tol:.3g})"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]
