"""Measurements of the book's chapters on the organisms, kept with the repository and keyed by content.

Chapter "The model organism" reads its report from ``data/organism/cache/`` (:func:`~loco_lib.organism.report`).
The long measurements of the other chapters that end in a table (the artists' LocoGen windows, the
multi-concept retention and Table 1 of "Robustness and baselines", App. G's choice of m in "LocoGen",
the pooled-text readouts of "DeepFloyd IF and T5") are kept the same way by :func:`measure`: one small
JSON file per measurement under ``data/organism/cache/chapters/<model>/``, whose name carries a
content key of

* the organism's weights, the scorer's and the organism's measuring code
  (:func:`~loco_lib.organism.weights_fingerprint`);
* the code the measuring function runs (:func:`loco_lib.fingerprint.code_closure` of its module);
* its arguments (prompts, seeds, steps, window sizes; a pipeline by its model, a scorer by its
  name, an edit by the weights it writes, :func:`edit_key`).

A change to any of them measures again and replaces the file (``make book``, then commit it), so a
fresh clone builds the chapters from these files while nothing they depend on has changed. Each file
also holds the per-image rows the measurement wrote (:mod:`loco_lib.runlog`), which a run that reads
it appends to its own record, so the run folder's CSV is complete either way.
``tests/test_kept.py`` measures one of them again and compares. On a model that is not an organism
(the real models, the tiny twins) :func:`measure` simply measures.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .. import runlog
from ..errors import LocoError, LocoWarning


UNKEYED = ("cache_dir", "progress")  # where images are cached and whether bars show: not part of a result


def folder() -> Path:
    """``data/organism/cache/chapters``."""
    from .protocol import committed_cache_dir

    return committed_cache_dir() / "chapters"


def edit_key(edit) -> str:
    """A short hash of the weights an edit writes."""
    from ..edit_file import _fingerprint

    h = hashlib.sha256()
    for name in sorted(edit.weights):
        h.update(f"{name}={_fingerprint(edit.weights[name])};".encode())
    return h.hexdigest()[:24]


def describe(x):
    """The JSON an argument contributes to the key."""
    import torch

    from ..edit_file import Edit

    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, torch.dtype):
        return str(x)
    if isinstance(x, (list, tuple)):
        return [describe(v) for v in x]
    if isinstance(x, dict):
        return {str(k): describe(v) for k, v in x.items()}
    if isinstance(x, Edit):
        return {"edit": edit_key(x)}
    if hasattr(x, "unet") and hasattr(x, "scheduler"):  # a pipeline: its model (and dtype)
        from ..sweep import model_id

        return {"pipeline": model_id(x), "dtype": str(x.unet.dtype)}
    if hasattr(x, "score") and hasattr(x, "name"):  # a scorer
        return {"scorer": x.name}
    if hasattr(x, "originals") and hasattr(x, "targets"):  # a PromptSet
        return {k: describe(getattr(x, k, None)) for k in ("originals", "targets", "subjects", "target_subjects")}
    raise LocoError(f"cannot key a kept measurement by a {type(x).__name__}")


def _to_json(value):
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return {"__frame__": {"index": _axis(value.index), "columns": _axis(value.columns),
                              "data": _to_json(value.to_numpy().tolist()), "attrs": _to_json(dict(value.attrs))}}
    from ..locogen import MSelection

    if isinstance(value, MSelection):  # App. G's choice: the size and its table (the per-size results are left out)
        return {"m": value.m, "threshold": value.threshold, "table": _to_json(value.table)}
    if hasattr(value, "to_json") and not isinstance(value, (dict, list, str)):
        return _to_json(value.to_json())
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _axis(index) -> dict:
    import pandas as pd

    multi = isinstance(index, pd.MultiIndex)
    return {"values": _to_json([list(v) for v in index] if multi else index.tolist()), "names": list(index.names),
            "multi": multi}


def _index(axis: dict):
    import pandas as pd

    if axis["multi"]:
        return pd.MultiIndex.from_tuples([tuple(v) for v in axis["values"]], names=axis["names"])
    return pd.Index(axis["values"], name=axis["names"][0])


def _from_json(value):
    import pandas as pd

    if isinstance(value, dict) and set(value) == {"__frame__"}:
        f = value["__frame__"]
        frame = pd.DataFrame(f["data"], index=_index(f["index"]), columns=_index(f["columns"]))
        frame.attrs.update(f["attrs"])
        return frame
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return value


def key(model: str, fn, args, kwargs) -> str | None:
    """The content key of ``fn(*args, **kwargs)`` on ``model``; None when ``model`` is not an
    organism whose weights are here."""
    from ..fingerprint import code_closure, content_key
    from .protocol import weights_fingerprint

    try:
        weights = weights_fingerprint(model)
    except (LocoError, TypeError, OSError):
        return None
    kwargs = {k: v for k, v in kwargs.items() if k not in UNKEYED}
    call = {"function": f"{fn.__module__}.{fn.__qualname__}", "args": describe(list(args)), "kwargs": describe(kwargs)}
    return content_key(code_closure(fn.__module__), extra=weights + json.dumps(call, sort_keys=True))


def measure(name: str, model: str, fn, *args, where=None, **kwargs):
    """``fn(*args, **kwargs)`` as JSON (tables come back as DataFrames, results with ``to_json`` as
    their JSON), read from ``<where>/<model>/<name>-<key>.json`` when that file exists (``where``
    defaults to :func:`folder`), else measured and written there atomically; files of the same
    measurement with other keys are removed. ``name`` may hold any characters: others than letters,
    digits, ``_`` and ``.`` become ``_`` in the file name (``-`` separates the key)."""
    k = key(model, fn, args, kwargs)
    if k is None:
        return _from_json(_to_json(fn(*args, **kwargs)))
    name = re.sub(r"[^A-Za-z0-9_.]+", "_", name)  # a file name: "artist-window-van gogh" -> "artist-window-van_gogh"
    base = Path(where) if where is not None else folder()
    path = base / Path(str(model)).name / f"{name}-{k}.json"
    if path.exists():
        try:
            stored = json.loads(path.read_text())
            value, records = stored["value"], stored["records"]
        except (ValueError, KeyError, TypeError):
            import warnings

            warnings.warn(f"damaged kept measurement {str(path)!r}: measuring it again", LocoWarning, stacklevel=2)
        else:
            runlog.write(records)  # the run's per-image record gets the rows of the measurement it reads
            return _from_json(value)
    value, records = _recorded(lambda: _to_json(fn(*args, **kwargs)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # one per process: several may finish the same measurement
    tmp.write_text(json.dumps({"value": value, "records": records}, sort_keys=True))
    os.replace(tmp, path)
    for old in path.parent.glob(f"{name}-*.json"):
        if old != path and len(old.name) == len(path.name):
            old.unlink()
    runlog.write(records)
    return _from_json(value)


def _recorded(compute):
    """``compute()`` and the per-image rows (:mod:`loco_lib.runlog`) it wrote, caught in a file of its own."""
    import csv
    import tempfile

    saved = os.environ.get("LOCO_RECORDS")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LOCO_RECORDS"] = str(Path(tmp) / "rows.csv")
        try:
            value = compute()
        finally:
            if saved is None:
                os.environ.pop("LOCO_RECORDS", None)
            else:
                os.environ["LOCO_RECORDS"] = saved
        rows = Path(tmp) / "rows.csv"
        records = [] if not rows.exists() else [
            {k: v for k, v in r.items() if k != "chapter"} for r in csv.DictReader(rows.open(newline=""))]
    return value, records
