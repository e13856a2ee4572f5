"""The notebooks: paired files in sync, a parameters cell, and expectations that match.

tests/test_chapter_outputs.py compares the cells marked ``# NBVAL_CHECK_OUTPUT`` of the book's
execution with tests/notebooks/*.ipynb (``make nbval`` re-executes them with nbval); these tests
make sure those expectations are the current notebooks and not stale copies.
"""
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))


def _code(cells):
    return [c.source.strip() for c in cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


def test_there_are_notebooks():
    assert SOURCES, "no notebooks/*.py found"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_pair_in_sync(src):
    """The .ipynb that Colab opens has the same cells as the .py source, and no outputs."""
    paired = src.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} missing: run `make sync`"
    a = [c.source.strip() for c in jupytext.read(src).cells]
    nb = nbformat.read(paired, as_version=4)
    assert a == [c.source.strip() for c in nb.cells], f"{src.name} and {paired.name} differ: run `make sync`"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{paired.name} is committed with outputs"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_parameters_cell(src):
    nb = jupytext.read(src)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters' (papermill injects after it)"
    assert "MODEL" in tagged[0].source, "the model name must be a parameter"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_expectations_current(src):
    """tests/notebooks/<name>.ipynb is the executed current notebook (refresh: `make expectations`)."""
    expected = ROOT / "tests" / "notebooks" / (src.stem + ".ipynb")
    assert expected.exists(), f"no nbval expectation for {src.name}: run `make expectations`"
    exp = nbformat.read(expected, as_version=4)
    assert _code(jupytext.read(src).cells) == _code(exp.cells), f"{expected.name} is stale: run `make expectations`"
    checked = [c for c in exp.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]
    assert checked, "no cell is marked # NBVAL_CHECK_OUTPUT"
    for c in checked:
        assert c.get("outputs"), "a checked cell has no stored output to compare against"


def test_colab_setup_pins_the_release_the_book_links():
    """Every chapter's set-up cell clones the release of pyproject's version, and the book's Colab
    button (_config.yml's repository branch) opens the notebooks of that same release."""
    import re
    import tomllib

    import yaml

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["branch"] == f"v{version}"
    for src in SOURCES:
        setup = jupytext.read(src).cells[1].source
        assert re.search(rf'^LOCO_REVISION = "v{re.escape(version)}"', setup, re.M), f"{src.name}: LOCO_REVISION is not v{version}"
        assert "--branch {LOCO_REVISION}" in setup and "colab_setup.py" in setup
