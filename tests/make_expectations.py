"""Write the committed expectations from the book's executed notebooks (`make expectations`).

Each executed notebook is copied to tests/notebooks/ with image outputs and run-time metadata
removed (images are never compared, and they would bloat the repository).
tests/test_chapter_outputs.py compares the text outputs of the cells marked ``# NBVAL_CHECK_OUTPUT``
of the book's execution with these copies; tests/test_notebooks.py checks that their code still
equals the notebook sources.

Re-approving a result is a decision: this script first prints, chapter by chapter, the diff of the
checked results against the committed expectation, and writes only the chapters whose checked
results are unchanged, unless ``--approve`` (``make expectations APPROVE=1``) is given. A chapter
whose checked numbers moved only within their measured spread (``tests/spread.json``) is left as
committed (``--approve`` writes it).

    python tests/make_expectations.py [--approve] _build/src/notebooks/NAME.ipynb ...
"""
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chapter_outputs import checked_outputs, compare, diff  # noqa: E402

out_dir = Path(__file__).parent / "notebooks"
out_dir.mkdir(exist_ok=True)
approve = "--approve" in sys.argv[1:]
held = []
for path in [a for a in sys.argv[1:] if a != "--approve"]:
    target = out_dir / Path(path).name
    if target.exists():
        exact = diff(checked_outputs(target), checked_outputs(path), Path(path).stem)
        changes = compare(checked_outputs(target), checked_outputs(path), Path(path).stem)
        if exact and not changes and not approve:  # float noise within the measured spread: keep the committed one
            print(f"{target.name}: checked numbers differ only within their measured spread; kept as committed")
            continue
        if changes:
            print(changes + "\n")
            if not approve:
                held.append(target.name)
                continue
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)  # run times and paths: they change on every run
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"  # stable ids, so a re-run only changes what its outputs change
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if "data" in out:
                out["data"] = {k: v for k, v in out["data"].items() if not k.startswith("image/")}
                if not out["data"]:
                    continue
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                continue  # progress bars and warnings
            kept.append(out)
        cell["outputs"] = kept
    nbformat.write(nb, target)
    print(f"wrote {target}")
if held:
    print(f"not written, checked results changed: {', '.join(held)}. Read the diff above; if the change is intended, "
          "run `make expectations APPROVE=1`.")
    sys.exit(1)
