"""Set up Google Colab for the notebooks: run as a script right after cloning the repository.

    python /content/loco/loco_lib/colab_setup.py

Installs the pinned packages of pyproject.toml except torch (Colab's own CUDA build stays), the
library itself (editable, so data/prompts and models/ are found) and the CLIP vocabulary package
without its dependencies. Kept free of loco_lib imports: it runs before the dependencies exist.
"""
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pins(pyproject: Path = ROOT / "pyproject.toml") -> tuple[list[str], list[str]]:
    """(packages to install normally, packages to install without dependencies)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    deps = [d for d in project["dependencies"] if not d.startswith("torch==")]
    return deps, list(project["optional-dependencies"]["vocab"])


def main() -> None:
    deps, no_deps = pins()
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + deps, check=True)
    subprocess.run(pip + ["--no-deps", "-e", str(ROOT)] + no_deps, check=True)


if __name__ == "__main__":
    main()
