"""Content keys for cached and recorded measurements: which code a measurement runs, and a hash of it.

A cached result is valid as long as what produced it is unchanged: the weights, the settings and
the code. :func:`code_closure` finds the code statically: the modules a module imports (every
``import`` / ``from ... import`` inside ``loco_lib``, at module level or inside functions), the
modules those import, and so on, plus the ``__init__.py`` of every package on the way (their source,
which registers models and defaults; their own imports are followed only where a module in the
closure imports them). A change to a figure or a chapter therefore keeps the organism's cached
measurements, and a change to anything they run discards them. :func:`content_key` hashes files;
:func:`changed_since` names the closure's files that changed since a git commit (how stale a
recorded result is).

A refactor changes code without changing what it computes. ``loco_lib/data/code_equivalence.json``
(the ledger, written by ``tests/code_equivalence.py`` only after the behaviour probes of
``tests/behaviour_probe.py`` hash bit for bit the same on both sides) lets such a file stand for its
earlier source: :func:`canonical_digest` gives a listed file the digest of the source it stands for
(or nothing, for a file the refactor added), so the keys of every cached and kept measurement, and
:func:`changed_since`, read the refactored tree as the tree the measurements were made with. An
edit after the refactor changes the file's digest, the ledger no longer lists it, and the keys move.
"""
from __future__ import annotations

import ast
import base64
import functools
import hashlib
import json
import subprocess
import zlib
from pathlib import Path

LIB = Path(__file__).resolve().parent
ROOT = LIB.parent
LEDGER = LIB / "data" / "code_equivalence.json"


def _modules(root: Path = LIB) -> dict[str, Path]:
    mods = {}
    for path in root.rglob("*.py"):
        parts = path.with_suffix("").relative_to(root.parent).parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def import_graph(root: Path = LIB) -> dict[str, set[str]]:
    """``{module: modules of the same package it imports}`` for every .py file under ``root``, read
    from the source (lazy imports inside functions count)."""
    mods = _modules(root)
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{a.name}" for a in node.names]
                found = [n if n in mods else target for n in names]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            graph[mod].update(t for t in found if t in mods and t != mod)
    return graph


def code_closure(*modules: str) -> list[Path]:
    """The source files ``modules`` (dotted names inside loco_lib) run: their imports, transitively,
    and the ``__init__.py`` of each package on the way. Sorted, relative to the repository root."""
    mods = _modules()
    graph = import_graph()
    seen, todo = set(), list(modules)
    while todo:
        m = todo.pop()
        if m in seen or m not in mods:
            continue
        seen.add(m)
        todo.extend(graph[m] - {p for p in graph if mods[p].name == "__init__.py" and m.startswith(p + ".")})
    files = {mods[m] for m in seen}
    for m in seen:  # the packages' __init__ source, not what they import
        parts = m.split(".")
        for i in range(1, len(parts)):
            files.add(mods[".".join(parts[:i])])
    return sorted(f.relative_to(ROOT) for f in files)


def code_digest(source: str | bytes) -> bytes:
    """What a Python source does, without its comments, docstrings and layout: the dump of its syntax
    tree with every docstring removed. Two sources with the same digest run the same code."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def _digest(path: str, data: bytes) -> bytes:
    return code_digest(data) if path.endswith(".py") else data


def pack_source(source: bytes) -> str:
    """A source as the ledger keeps it (zlib, base64)."""
    return base64.b64encode(zlib.compress(source, 9)).decode()


def unpack_source(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


def digest_id(digest: bytes) -> str:
    """The name of a code digest in the ledger."""
    return hashlib.sha1(digest).hexdigest()


@functools.lru_cache(maxsize=4)
def _ledger(path: Path = LEDGER, stamp: float = 0.0) -> dict:
    """``{file: {digest id: source it stands for (bytes) or None}}`` from the ledger at ``path``."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    out: dict = {}
    for e in data.get("files", []):
        out.setdefault(e["path"], {})[e["digest"]] = None if e["stands_for"] is None else unpack_source(e["stands_for"])
    return out


def ledger() -> dict:
    """The ledger of equivalent code (:data:`LEDGER`), read once per version of the file."""
    return _ledger(LEDGER, LEDGER.stat().st_mtime if LEDGER.exists() else 0.0)


_ABSENT = object()


def canonical_digest(path: str, data: bytes):
    """What ``path`` (relative to the repository root) with contents ``data`` contributes to a key:
    its digest (:func:`code_digest` for Python), or, when the ledger lists that digest, the digest of
    the source it stands for; None for a file the ledger lists as added by a refactor (it stands for
    nothing and contributes nothing)."""
    d = _digest(path, data)
    if path.endswith(".py"):
        source = ledger().get(path, {}).get(digest_id(d), _ABSENT)
        if source is not _ABSENT:
            return None if source is None else code_digest(source)
    return d


def content_key(files, extra: str = "", n: int = 12) -> str:
    """A short sha1 over ``files`` (paths, in the order given; Python files by :func:`code_digest`,
    so an edited comment or docstring keeps the key) and ``extra``."""
    h = hashlib.sha1()
    for f in files:
        f = Path(f)
        rel = str(f.relative_to(ROOT) if f.is_absolute() else f)
        d = canonical_digest(rel, (f if f.is_absolute() else ROOT / f).read_bytes())
        if d is None:  # added by a refactor the ledger records: it stands for nothing
            continue
        h.update(rel.encode())
        h.update(d)
    h.update(extra.encode())
    return h.hexdigest()[:n]


def _git(*args) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None


def changed_since(commit: str, files) -> list[str] | None:
    """Which of ``files`` (relative to the repository root) run differently in the working tree than
    at ``commit``: changed bytes, and for Python files a changed :func:`code_digest` (comments and
    docstrings do not count). None when git or the commit is not available (a shallow clone, no
    repository)."""
    files = [str(f) for f in files]
    run = _git("diff", "--name-only", commit, "--", *files)
    if run is None or run.returncode != 0:
        return None
    changed = []
    for path in sorted(line for line in run.stdout.decode().splitlines() if line):
        old = _git("show", f"{commit}:{path}")
        now = ROOT / path
        there = old is not None and old.returncode == 0
        if not now.exists() or not path.endswith(".py"):
            changed.append(path)
            continue
        canon = canonical_digest(path, now.read_bytes())
        if canon is None:  # a file a recorded refactor added: unchanged if it was absent then
            if there:
                changed.append(path)
        elif not there or canonical_digest(path, old.stdout) != canon:
            changed.append(path)
    return changed
