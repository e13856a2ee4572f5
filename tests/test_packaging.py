"""One place for pins: environment.yml mirrors pyproject.toml exactly; the README has two commands."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_dependency_is_pinned():
    proj = _pyproject()["project"]
    deps = proj["dependencies"] + [d for group in proj["optional-dependencies"].values() for d in group]
    loose = [d for d in deps if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.+\-]*", d)]
    assert not loose, f"unpinned dependencies: {loose}"


def test_environment_yml_mirrors_pyproject():
    proj = _pyproject()["project"]
    wanted = set(proj["dependencies"]) | set(proj["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = {p for p in pip if "==" in p}
    assert pins == wanted, f"only in pyproject: {sorted(wanted - pins)}; only in environment.yml: {sorted(pins - wanted)}"
    vocab = proj["optional-dependencies"]["vocab"][0]
    assert vocab in (ROOT / "environment.yml").read_text(), "environment.yml must say how to install the CLIP vocabulary"


def test_readme_has_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make book" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_colab_setup_installs_the_pins_but_not_torch():
    from loco_lib.colab_setup import pins

    deps, no_deps = pins()
    proj = _pyproject()["project"]
    assert set(deps) == {d for d in proj["dependencies"] if not d.startswith("torch==")}
    assert not any(d.startswith("torch==") for d in deps) and no_deps == proj["optional-dependencies"]["vocab"]
    for nb in sorted((ROOT / "notebooks").glob("*.py")):
        assert "loco_lib/colab_setup.py" in nb.read_text(), f"{nb.name} does not use the shared Colab set-up"
