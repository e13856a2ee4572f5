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
from chapter_outputs import MARK, checked_outputs, diff  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))


@pytest.fixture(scope="module")
def executions() -> Path:
    """The folder of the book's executions of every chapter (``loco reproduce --profile smoke --out
    _build``, one call for all chapters, which keeps each execution whose inputs are unchanged)."""
    run = subprocess.run([sys.executable, "-m", "loco_lib", "reproduce", "--profile", "smoke", "--out", "_build",
                          "--no-book"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, f"executing the chapters failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return ROOT / "_build" / "src" / "notebooks"


@pytest.mark.parametrize("name", CHAPTERS)
def test_checked_results_match_the_expectation(executions, name):
    expected = checked_outputs(ROOT / "tests" / "notebooks" / f"{name}.ipynb")
    assert expected, f"tests/notebooks/{name}.ipynb has no cell marked {MARK}"
    actual = checked_outputs(executions / f"{name}.ipynb")
    assert [s for s, _ in actual] == [s for s, _ in expected], (
        f"{name}: the checked cells of the chapter and of its expectation differ: run `make expectations`")
    changes = diff(expected, actual, name)
    assert not changes, f"{name}: checked results changed (`make expectations` shows this diff):\n{changes}"


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
