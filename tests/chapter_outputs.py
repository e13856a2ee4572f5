"""What the chapters' checked cells printed, in a form two executions can be compared in.

A chapter marks the cells whose results are checked with ``# NBVAL_CHECK_OUTPUT`` (nbval's marker).
:func:`checked_outputs` reads one executed notebook and returns, for each marked cell, its text
outputs (stdout and the ``text/plain`` of results and displays) after the sanitizers of
``tests/nbval_sanitize.cfg`` (nbval's format: a ``regex`` and its ``replace`` per section).
``tests/test_chapter_outputs.py`` compares the book's own execution with the committed expectation
through it, and ``tests/make_expectations.py`` prints the difference before it writes a new one.
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
    """A unified diff, cell by cell, of two :func:`checked_outputs` lists ('' when they agree)."""
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
        lines.extend(difflib.unified_diff(a.splitlines(), b.splitlines(), f"{label} (expected)", f"{label} (now)",
                                          lineterm="", n=1))
    return "\n".join(lines)
