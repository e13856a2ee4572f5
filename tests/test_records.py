"""Recorded measurements (data/organism/) and cache keys: provenance, what counts as a code change,
and whether a record is what the current code would measure again."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from loco_lib import organism
from loco_lib.fingerprint import ROOT, changed_since, code_closure, code_digest, content_key
from loco_lib.organism.records import record_status, status_table

RECORDS = sorted(p for p in (ROOT / "data" / "organism").rglob("*.json") if "cache" not in p.parts)


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def test_code_digest_ignores_comments_and_docstrings_only():
    a = 'def f(x):\n    """Double."""\n    return 2 * x  # twice\n'
    b = 'def f(x):\n    """Twice x, a longer docstring."""\n\n    return 2 * x\n'
    c = 'def f(x):\n    """Double."""\n    return 3 * x\n'
    assert code_digest(a) == code_digest(b)
    assert code_digest(a) != code_digest(c)
    assert code_digest('"""Module."""\nX = 1\n') == code_digest("X = 1\n")


def test_content_key_follows_code_not_prose(tmp_path, monkeypatch):
    import loco_lib.fingerprint as fp

    monkeypatch.setattr(fp, "ROOT", tmp_path)
    f = tmp_path / "m.py"
    f.write_text('"""Doc."""\nX = 1\n')
    k1 = content_key([f])
    f.write_text('"""Another doc."""\n# a comment\nX = 1\n')
    assert content_key([f]) == k1
    f.write_text("X = 2\n")
    assert content_key([f]) != k1
    assert content_key([f], extra="weights-a") != content_key([f], extra="weights-b")


def test_measuring_code_is_the_closure_of_the_protocol_and_scorer():
    files = {str(p) for p in organism.measuring_code()}
    for needed in ("loco_lib/organism/protocol.py", "loco_lib/organism/scorer.py", "loco_lib/generate.py",
                   "loco_lib/locogen.py", "loco_lib/locoedit.py", "loco_lib/hooks.py", "loco_lib/organism/model.py"):
        assert needed in files
    for presentation in ("loco_lib/organism/figures.py", "loco_lib/organism/records.py", "loco_lib/cli.py",
                         "loco_lib/paper.py", "loco_lib/study.py"):
        assert presentation not in files
    assert [str(p) for p in code_closure("loco_lib.errors")] == ["loco_lib/__init__.py", "loco_lib/errors.py"]


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: str(p.relative_to(ROOT / "data" / "organism")))
def test_every_record_names_a_commit_of_this_history(path):
    rec = json.loads(path.read_text())["recorded"]
    commit = rec["loco_commit"]
    assert commit, f"{path.name} has no loco commit"
    subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=ROOT, check=True)
    st = record_status(path)
    assert st["commit"] == commit and st["state"] in ("current", "stale")
    # the status is git's answer, code by code: a file it calls changed really runs different code
    for f in (c for c in st["changed"] if c.endswith(".py")):  # weights: any byte change counts
        old = subprocess.run(["git", "show", f"{commit}:{f}"], cwd=ROOT, capture_output=True).stdout
        assert not old or code_digest(old) != code_digest((ROOT / f).read_bytes())
    assert (st["state"] == "stale") == bool(st["changed"])


def test_status_of_a_record_measured_now(tmp_path):
    """A record whose commit is HEAD is current exactly when the working tree's measuring code and
    weights run as HEAD's; without git history a stored content key decides, and without either the
    state is unknown."""
    head = _git("rev-parse", "--short", "HEAD")
    files = [str(p) for p in organism.measuring_code()] + [
        str(p.relative_to(ROOT)) for p in sorted((ROOT / "models" / "toy").glob("*/*.safetensors"))]
    expected = changed_since(head, files)
    rec = tmp_path / "r.json"
    rec.write_text(json.dumps({"model": "toy", "recorded": {"loco_commit": head}}))
    st = record_status(rec)
    assert st["changed"] == expected and st["state"] == ("stale" if expected else "current")

    key = organism.weights_fingerprint("toy")
    for stored, state in ((key, "current"), ("0123456789ab", "stale"), (None, "unknown")):
        rec.write_text(json.dumps({"model": "toy", "recorded": {"loco_commit": "deadbeef", "key": stored}}))
        assert record_status(rec) == {"commit": "deadbeef", "state": state, "changed": None}


def test_save_record_stores_commit_and_key(tmp_path):
    out = tmp_path / "rec.json"
    organism.save_record({"model": "toy", "value": 1}, out)
    rec = json.loads(out.read_text())["recorded"]
    assert rec["loco_commit"] == _git("rev-parse", "--short", "HEAD")
    assert rec["key"] == organism.weights_fingerprint("toy")


def test_status_table_lists_every_record():
    table = status_table(RECORDS)
    assert list(table.index) == [p.name for p in RECORDS]
    assert set(table["state"]) <= {"current", "stale"}
