"""Record that the working tree computes what an earlier commit computed, so that a refactor keeps the
keys of every kept and cached measurement (``loco_lib/data/code_equivalence.json``, read by
:func:`loco_lib.fingerprint.canonical_digest`).

    python tests/code_equivalence.py OLD_COMMIT

1. checks out ``OLD_COMMIT`` in a git worktree beside this one;
2. runs the behaviour probes (``tests/behaviour_probe.py``: every measuring entry point on the four
   kinds of organism (the DiT organism included), hashed bit for bit) in both trees, on this machine, with the same threads;
   any probe that differs stops here and nothing is written;
3. for each file of the keyed code (the closures of the modules whose functions kept measurements
   and trained edits run, and the organism's measuring code) whose digest differs from the old tree's, adds a ledger entry: this digest stands for the
   old source (or, for a file the old tree did not have, for nothing), with the evidence;
4. checks that every keyed module's content key and every organism's weights fingerprint now equals
   the old tree's.

A file that leaves the keyed code is refused (its old source would be missing from every key).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the modules whose functions the chapters' kept measurements and trained edits run (kept.measure,
# kept.trained: their closures key the kept files), and what keys every organism measurement
# (protocol.measuring_code(): the protocol's and the scorer's closure)
KEYED = ("loco_lib.organism.protocol", "loco_lib.organism.stability", "loco_lib.organism.token_swaps",
         "loco_lib.organism.variants", "loco_lib.organism.kept", "loco_lib.trace", "loco_lib.unlearning",
         "loco_lib.window_size", "loco_lib.locogen", "loco_lib.finetune", "loco_lib.ranking",
         "loco_lib.organism.localizers")
ORGANISMS = ("toy", "toy-t5", "toy-if", "toy-if-clip", "models/toy-if-xattn", "models/toy-t5-long", "toy-dit")

STATE = f"""
import json, sys
from loco_lib import fingerprint as F
from loco_lib.organism import protocol
keyed = {KEYED!r}
files = sorted({{str(p) for m in keyed for p in F.code_closure(m)}} | {{str(p) for p in protocol.measuring_code()}})
canon = getattr(F, "canonical_digest", None)
def ident(p):
    data = (F.ROOT / p).read_bytes()
    raw = F._digest(p, data)
    c = canon(p, data) if canon else raw
    import hashlib
    return {{"raw": hashlib.sha1(raw).hexdigest(), "canonical": None if c is None else hashlib.sha1(c).hexdigest()}}
out = {{"lib": F.__file__, "files": {{p: ident(p) for p in files}},
       "keys": {{**{{m: F.content_key(F.code_closure(m)) for m in keyed}},
                "measuring code": F.content_key(protocol.measuring_code())}},
       "weights": {{o: protocol.weights_fingerprint(o) for o in {ORGANISMS!r}}}}}
json.dump(out, sys.stdout)
"""


def _python(tree: Path, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    run = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"in {tree}: {run.stderr[-2000:]}")
    return run.stdout


def state(tree: Path) -> dict:
    out = json.loads(_python(tree, STATE))
    if not Path(out["lib"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree} imported loco_lib from {out['lib']}")
    return out


def probe(tree: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "behaviour_probe.py"), str(out)], cwd=tree, env=env,
                         capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"the probe failed in {tree}: {run.stderr[-3000:]}")
    return json.loads(out.read_text())


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    from loco_lib.fingerprint import LEDGER, code_digest, digest_id, pack_source, unpack_source

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    old = subprocess.run(["git", "rev-parse", "--short", argv[0]], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if not old:
        print(f"no commit {argv[0]!r} here", file=sys.stderr)
        return 2
    tree = Path(f"/tmp/loco-equiv-{old}")
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), old], cwd=ROOT, check=True, capture_output=True)

    before, now = state(tree), state(ROOT)
    print(f"probing {old} and the working tree ...", flush=True)
    p_old, p_new = probe(tree, Path("/tmp/probe-old.json")), probe(ROOT, Path("/tmp/probe-new.json"))
    differ = sorted(k for k in p_old.keys() | p_new.keys() if p_old.get(k) != p_new.get(k))
    if differ:
        print(f"{len(differ)} of {len(p_new)} probes differ, nothing recorded: {', '.join(differ)}", file=sys.stderr)
        return 1
    print(f"{len(p_new)} probes hash the same in both trees")

    gone = sorted(set(before["files"]) - set(now["files"]))
    if gone:
        print(f"files left the keyed code: {', '.join(gone)}; keep them or measure again", file=sys.stderr)
        return 1
    ledger = json.loads(LEDGER.read_text()) if LEDGER.exists() else {
        "about": "Files of the keyed code that stand for an earlier source: written by tests/code_equivalence.py "
                 "when tests/behaviour_probe.py hashed the same in both trees; read by loco_lib.fingerprint.",
        "evidence": [], "files": []}
    old_ledger = tree / "loco_lib" / "data" / "code_equivalence.json"
    old_entries = {(e["path"], e["digest"]): e["stands_for"] for e in json.loads(old_ledger.read_text())["files"]} \
        if old_ledger.exists() else {}
    known = {(e["path"], e["digest"]) for e in ledger["files"]}
    added = []
    for path, ident in now["files"].items():
        was = before["files"].get(path)
        if was is not None and was["canonical"] == ident["canonical"]:
            continue
        if (path, ident["raw"]) in known:
            continue
        if was is None:
            stands_for = None
        elif was["canonical"] is None:
            stands_for = None
        else:
            src = (tree / path).read_bytes()
            stands_for = old_entries.get((path, was["raw"]), pack_source(src))
            if stands_for is not None:
                assert digest_id(code_digest(unpack_source(stands_for))) == was["canonical"]
        assert digest_id(code_digest((ROOT / path).read_bytes())) == ident["raw"]
        added.append({"path": path, "digest": ident["raw"], "stands_for": stands_for,
                      "evidence": len(ledger["evidence"])})
    if not added:
        print("every keyed file already computes as before: nothing to record")
        return 0
    ledger["evidence"].append({
        "from_commit": old, "date": datetime.date.today().isoformat(), "machine": _cpu(),
        "threads": os.environ.get("OMP_NUM_THREADS", "default"), "probes": len(p_new),
        "probe_hash": digest_id(json.dumps(p_new, sort_keys=True).encode()),
        "files": [a["path"] for a in added]})
    ledger["files"].extend(added)
    tmp = LEDGER.with_suffix(".tmp")
    tmp.write_text(json.dumps(ledger, indent=1) + "\n")
    tmp.replace(LEDGER)
    after = state(ROOT)
    wrong = [m for m in before["keys"] if before["keys"][m] != after["keys"][m]] + \
            [o for o in before["weights"] if before["weights"][o] != after["weights"][o]]
    if wrong:
        print(f"keys still differ after recording: {', '.join(wrong)}", file=sys.stderr)
        return 1
    print(f"recorded {len(added)} files ({', '.join(a['path'] for a in added)}); "
          f"{len(before['keys'])} module keys and {len(before['weights'])} weights fingerprints are the old tree's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
