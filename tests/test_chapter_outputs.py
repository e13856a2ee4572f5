"""Every chapter's checked results, compared on the book's own execution.

``make book`` executes each chapter once with papermill into ``_build/src/notebooks/<name>.ipynb``
and builds the book from those files. This test compares the cells marked ``# NBVAL_CHECK_OUTPUT``
of that very execution with the committed expectation ``tests/notebooks/<name>.ipynb`` (text
outputs, after nbval's sanitizers in ``tests/nbval_sanitize.cfg``), so the results the reader sees
are the results that are checked, and no chapter runs twice. Run on its own, the test first asks
`loco reproduce` for the execution (it keeps one whose inputs are unchanged). ``make nbval`` still runs nbval itself,
which re-executes the expectations.

A difference fails with a unified diff of the cells that changed; if the change is intended,
``make expectations`` shows the same diff and ``make expectations APPROVE=1`` records it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chapter_outputs import MARK, MEANING, checked_outputs, compare, diff, load_spread, tolerance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))


@pytest.fixture(scope="module")
def executions() -> Path:
    """The folder of the book's executions of every chapter (``loco reproduce --profile smoke --out
    _build --foreign-cpu``, what ``make test`` runs: the chapters under another instruction set than the
    expectations were recorded with; one call for all chapters, which keeps each execution whose inputs are unchanged)."""
    run = subprocess.run([sys.executable, "-m", "loco_lib", "reproduce", "--profile", "smoke", "--out", "_build",
                          "--no-book", "--foreign-cpu"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, f"executing the chapters failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return ROOT / "_build" / "src" / "notebooks"


@pytest.mark.parametrize("name", CHAPTERS)
def test_checked_results_match_the_expectation(executions, name):
    expected = checked_outputs(ROOT / "tests" / "notebooks" / f"{name}.ipynb")
    assert expected, f"tests/notebooks/{name}.ipynb has no cell marked {MARK}"
    actual = checked_outputs(executions / f"{name}.ipynb")
    assert [s for s, _ in actual] == [s for s, _ in expected], (
        f"{name}: the checked cells of the chapter and of its expectation differ: run `make expectations`")
    changes = compare(expected, actual, name)
    assert not changes, (f"{name}: checked results changed beyond their measured spread (tests/spread.md; "
                         f"`make expectations` shows the diff):\n{changes}")


def test_the_book_read_every_kept_measurement_and_left_the_tree_clean(executions):
    """The execution ``make test`` compares ran under another instruction set than the kept
    measurements were recorded with; every kept key it computed names a committed file (so none was
    measured again) and ``data/organism`` is as committed."""
    import json

    records = {p.name[: -len(".done.json")]: json.loads(p.read_text()) for p in executions.glob("*.done.json")}
    assert set(records) >= set(CHAPTERS)
    assert any(r.get("cpu") for r in records.values()), "the chapters did not run under a foreign instruction set"
    measured = {c: r.get("kept_measured", []) for c, r in records.items() if r.get("kept_measured")}
    changes = [line for r in records.values() for line in r.get("kept_changes", [])]
    assert not measured and not changes, f"kept measurements measured again: {measured}\n" + "\n".join(changes)
    assert sum(r.get("kept_read", 0) for r in records.values()) > 0
    status = subprocess.run(["git", "status", "--porcelain", "--", "data/organism"], cwd=ROOT, capture_output=True,
                            text=True)
    assert status.returncode == 0 and status.stdout == "", f"data/organism is not as committed:\n{status.stdout}"


def test_a_changed_result_is_caught(tmp_path):
    """The comparison is not vacuous: a table whose rounded value moves fails it, a memory address
    (sanitized) does not."""
    import nbformat

    def notebook(text):
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell(f"# {MARK}\nresult")
        cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": text}, execution_count=1)]
        nb.cells = [cell, nbformat.v4.new_code_cell("unchecked")]
        return nb

    paths = []
    for i, text in enumerate(["window 0-1: 1.00 at 0x7f00aa", "window 0-1: 1.00 at 0x7f99bb", "window 0-1: 0.88 at 0x7f00aa"]):
        paths.append(tmp_path / f"{i}.ipynb")
        nbformat.write(notebook(text), paths[-1])
    a, b, c = (checked_outputs(p) for p in paths)
    assert diff(a, b) == ""
    assert "-window 0-1: 1.00" in diff(a, c) and "+window 0-1: 0.88" in diff(a, c)


def test_numbers_are_compared_within_their_spread(tmp_path):
    """Float noise within a number's tolerance passes; a moved number, a changed word or a twin's
    missing number fails; a twin's digits are free."""
    def cells(*pairs):
        return list(pairs)

    src = f"# {MARK}\nresult"
    spread = {"cells": {"ch": {__import__("chapter_outputs").cell_id(src): {"spread": [0.0, 0.02, 0.0]}}}}
    base = cells((src, "toy 16 layers: 0.35 96.70 (1 of 2)"))
    assert compare(base, cells((src, "toy  16 layers: 0.36 96.71 (1 of 2)")), "ch", spread) == ""  # noise, a wider column
    assert "number 0" in compare(base, cells((src, "toy 15 layers: 0.35 96.70 (1 of 2)")), "ch", spread)  # a count moved
    assert "number 1" in compare(base, cells((src, "toy 16 layers: 0.45 96.70 (1 of 2)")), "ch", spread)  # beyond 3 x 0.02 + 0.01
    assert "expected" in compare(base, cells((src, "toy 16 heads: 0.35 96.70 (1 of 2)")), "ch", spread)  # text is text
    twin = f"# {MARK}\n# {MEANING}\nresult"
    assert compare(cells((twin, "window 19-20: 3.39")), cells((twin, "window 4-5: 3.37")), "ch", spread) == ""
    assert compare(cells((twin, "window 19-20: 3.39")), cells((twin, "window 19-20: nan")), "ch", spread) != ""
    assert tolerance("16", 0) == 0 and tolerance("0.35", 0) == pytest.approx(0.01) and tolerance("96.7", 0.1) == pytest.approx(0.4)


def test_every_checked_number_has_a_measured_spread():
    """tests/spread.json holds a spread for every number of every checked cell of the expectations
    (run ``python tests/spread.py`` after changing a checked cell)."""
    from chapter_outputs import cell_id, split_numbers

    spread = load_spread()
    missing = []
    for name in CHAPTERS:
        for src, text in checked_outputs(ROOT / "tests" / "notebooks" / f"{name}.ipynb"):
            n = len(split_numbers(text)[1])
            entry = spread["cells"].get(name, {}).get(cell_id(src))
            if MEANING not in src and n and (entry is None or len(entry["spread"]) != n):
                missing.append(f"{name}: `{src.splitlines()[1][:60] if len(src.splitlines()) > 1 else src[:60]}`")
    assert not missing, "no measured spread for:\n" + "\n".join(missing)


def test_the_float32_limit_covers_the_measured_worst_case():
    """tests/floats.py's ULPS is at least twice the largest batched-vs-split difference measured under
    every configuration of tests/spread.json."""
    from floats import ULPS

    measured = load_spread().get("ulps", {})
    assert len(measured) >= 3 and all(e["comparisons"] > 0 for e in measured.values())
    assert 2 * max(e["largest"] for e in measured.values()) <= ULPS
