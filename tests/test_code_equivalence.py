"""The ledger of equivalent code (loco_lib/data/code_equivalence.json): a refactored file stands for
the source it was shown to compute like, so the keys of kept and cached measurements stay."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import loco_lib.fingerprint as fp

sys.path.insert(0, str(Path(__file__).parent))
from behaviour_probe import digest  # noqa: E402

OLD = 'def f(x):\n    return 2 * x\n'
NEW = 'def f(x):\n    y = x + x\n    return y\n'  # the same numbers, other code


def _ledger(tmp_path, monkeypatch, files):
    ledger = tmp_path / "ledger.json"
    ledger.write_text(json.dumps({"evidence": [{"probes": 1}], "files": files}))
    monkeypatch.setattr(fp, "LEDGER", ledger)
    monkeypatch.setattr(fp, "ROOT", tmp_path)


def test_a_listed_file_keys_as_the_source_it_stands_for(tmp_path, monkeypatch):
    _ledger(tmp_path, monkeypatch, [])
    f, added = tmp_path / "m.py", tmp_path / "new.py"
    f.write_text(OLD)
    before = fp.content_key([f], extra="w")
    f.write_text(NEW)
    added.write_text("X = 1\n")
    assert fp.content_key([f, added], extra="w") != before
    _ledger(tmp_path, monkeypatch, [
        {"path": "m.py", "digest": fp.digest_id(fp.code_digest(NEW)), "stands_for": fp.pack_source(OLD.encode()), "evidence": 0},
        {"path": "new.py", "digest": fp.digest_id(fp.code_digest("X = 1\n")), "stands_for": None, "evidence": 0}])
    assert fp.content_key([f, added], extra="w") == before
    f.write_text(NEW + "Z = 3\n")  # an edit after the refactor: the ledger no longer speaks for it
    assert fp.content_key([f, added], extra="w") != before
    added.write_text("X = 2\n")
    f.write_text(NEW)
    assert fp.content_key([f, added], extra="w") != before


def test_changed_since_reads_a_listed_file_as_unchanged(tmp_path, monkeypatch):
    def git(*a):
        subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "m.py").write_text(OLD)
    git("add", "m.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "old")
    (tmp_path / "m.py").write_text(NEW)
    (tmp_path / "new.py").write_text("X = 1\n")
    git("add", "new.py")
    _ledger(tmp_path, monkeypatch, [])
    assert fp.changed_since("HEAD", ["m.py", "new.py"]) == ["m.py", "new.py"]
    _ledger(tmp_path, monkeypatch, [
        {"path": "m.py", "digest": fp.digest_id(fp.code_digest(NEW)), "stands_for": fp.pack_source(OLD.encode()), "evidence": 0},
        {"path": "new.py", "digest": fp.digest_id(fp.code_digest("X = 1\n")), "stands_for": None, "evidence": 0}])
    assert fp.changed_since("HEAD", ["m.py", "new.py"]) == []


def test_the_committed_ledger_is_well_formed():
    data = json.loads(fp.LEDGER.read_text())
    assert data["evidence"], "a ledger entry without its evidence"
    for e in data["evidence"]:
        assert e["probes"] >= 70 and e["from_commit"] and e["files"]
    for entry in data["files"]:
        ev = data["evidence"][entry["evidence"]]
        assert entry["path"] in ev["files"] and entry["path"].startswith("loco_lib/")
        if entry["stands_for"] is not None:
            compile(fp.unpack_source(entry["stands_for"]), entry["path"], "exec")  # a Python source


def test_the_probe_digest_sees_one_ulp_and_every_type():
    import numpy as np
    import torch

    x = torch.tensor([1.0, 2.0])
    y = torch.nextafter(x, torch.tensor([3.0, 3.0]))
    assert digest(x) != digest(y)
    assert digest(x) != digest(x.double())
    assert digest({"a": 1.0}) != digest({"a": float(np.nextafter(1.0, 2.0))})
    assert digest([np.zeros(2)]) != digest([np.zeros(3)])
    assert digest(x) == digest(x.clone())


def _kept_functions(path: Path) -> list[tuple[str, object]]:
    """The functions a chapter hands to ``kept.measure`` / ``kept.trained`` (their third argument),
    resolved with the chapter's own imports."""
    import ast

    tree = ast.parse(path.read_text())
    namespace: dict = {}
    for node in tree.body:  # the chapter's imports only: nothing else of it runs here
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or len(node.args) < 3:
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if name in ("measure", "trained") and namespace.get(name) is not None:
            source = ast.unparse(node.args[2])
            found.append((source, eval(source, namespace)))
    return found


def test_every_kept_measurement_runs_keyed_code():
    """The code of every function a chapter keeps the result of lies in the closure of the keyed
    modules (tests/code_equivalence.py's KEYED): a refactor of it is then recorded in the ledger and
    keeps the kept files' keys; outside it, the refactor would re-key them unnoticed."""
    import inspect

    from code_equivalence import KEYED
    from loco_lib.organism import protocol

    root = Path(__file__).resolve().parents[1]
    keyed = {str(p) for m in KEYED for p in fp.code_closure(m)} | {str(p) for p in protocol.measuring_code()}
    seen, outside = 0, []
    for chapter in sorted((root / "notebooks").glob("[0-9][0-9]_*.py")):
        for source, fn in _kept_functions(chapter):
            seen += 1
            file = str(Path(inspect.getsourcefile(inspect.unwrap(fn))).resolve().relative_to(root))
            if file not in keyed:
                outside.append(f"{chapter.name}: {source} ({file})")
    assert seen >= 20, f"only {seen} kept calls found: the chapters' calls are not being read"
    assert not outside, outside
