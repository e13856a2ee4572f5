"""Write the committed nbval expectations from freshly executed notebooks (`make expectations`).

Each executed notebook is copied to tests/notebooks/ with image outputs and run-time metadata
removed (nbval never compares images, and they would bloat the repository). nbval then
re-executes these copies in `make test` and compares the text outputs of the cells marked ``# NBVAL_CHECK_OUTPUT``;
tests/test_notebooks.py checks that their code still equals the notebook sources.
"""
import sys
from pathlib import Path

import nbformat

out_dir = Path(__file__).parent / "notebooks"
out_dir.mkdir(exist_ok=True)
for path in sys.argv[1:]:
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
    target = out_dir / Path(path).name
    nbformat.write(nb, target)
    print(f"wrote {target}")
