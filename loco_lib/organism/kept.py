"""Measurements of the book's chapters on the organisms, kept with the repository and keyed by content.

Chapter "The model organism" reads its report from ``data/organism/cache/`` (:func:`~loco_lib.organism.report`).
The long measurements of the other chapters that end in a table or a plot of scores (the causal
traces, the number of states needed and the DiffQuickFix/LocoEdit tables of "Causal tracing"; the
editors' side-by-side table, the artists' LocoGen windows, the multi-concept retention and Table 1
of "Robustness and baselines"; App. G's choice of m in "LocoGen"; the pooled-text readouts of
"DeepFloyd IF and T5") are kept the same way by :func:`measure`, and the trained edits of "Robustness and
baselines" (ESD-x, Concept Ablation) by :func:`trained`, as safetensors files beside them: one small JSON file per
measurement under ``data/organism/cache/chapters/<model>/``, whose name carries a content key of

* the organism's weights, the scorer's and the organism's measuring code
  (:func:`~loco_lib.organism.weights_fingerprint`);
* the code the measuring function runs (:func:`loco_lib.fingerprint.code_closure` of its module);
* its arguments (prompts, seeds, steps, window sizes; a pipeline by its model, a scorer by its
  name, an edit by its recipe, :func:`edit_key`, a trace by the key it was kept under,
  :func:`trace_key`).

A key is made of committed bytes and chosen arguments only, never of a computed float: other CPUs,
instruction sets and thread counts compute other bits, and a key made from them would name another
file there (``tests/test_kept.py`` computes the keys under a foreign instruction set and compares).

A causal trace (:class:`~loco_lib.trace.TraceResult`) is kept with every score and without its
images, a comparison as its tables (:func:`comparison_tables`, :func:`baselines_table`); a chapter
that shows some of the images generates those again.
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
from ..files import write_json


UNKEYED = ("cache_dir", "progress", "checkpoint", "save_every", "stop_after")  # where work in progress is kept, bars, the tests' interruption
RUN_KEYS = ("losses", "resumed_from", "kept_seconds", "kept_key")  # what a trained edit's run computed or how it ran: not its recipe


def folder() -> Path:
    """``data/organism/cache/chapters``."""
    from .protocol import committed_cache_dir

    return committed_cache_dir() / "chapters"


def edit_key(edit) -> str:
    """A short hash of an edit's recipe: its method, the pipeline component and layers it changes, the
    fingerprints of the weights it replaces (the organism's committed weights, rounded to float16 as
    :mod:`loco_lib.edit_file` does) and its settings (prompt rows, concepts, lambda, scales, dtype;
    ``Edit.meta`` without timings, and a trained edit's without its losses). Never the weights it writes: those are computed floats, whose
    bits differ between CPUs and thread counts, so a key made from them names another file on
    another machine (issue 21)."""
    from ..edit_file import TIMING_KEYS

    recipe = {"method": edit.method, "component": edit.component, "layers": [int(i) for i in edit.layers],
              "layer_names": {str(k): str(v) for k, v in edit.layer_names.items()},
              "replaces": {str(k): str(v) for k, v in edit.fingerprints.items()},
              "settings": {k: v for k, v in edit.meta.items() if k not in TIMING_KEYS + RUN_KEYS}}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:24]


def trace_key(result) -> str:
    """A short hash of what a causal trace was asked: the content key it was kept under when it came
    from :func:`measure` (the weights, the code, every argument), else its recipe (where, encoder,
    prompts, subjects, seeds, states, restored sets, bands, tokens, settings); never its scores."""
    kept_key = getattr(result, "kept_key", None)
    if kept_key:
        return str(kept_key)
    record = {k: v for k, v in _trace_record(result).items() if k not in ("counter", "seconds", "scores")}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:24]


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
    if type(x).__name__ == "TraceResult":  # a trace (e.g. what states_needed ranks): what it was asked, not its scores
        return {"trace": trace_key(x)}
    if type(x).__name__ == "Groups":  # unlearning's prompt groups: every prompt and label
        from dataclasses import asdict

        return {"groups": describe(asdict(x))}
    if hasattr(x, "scheduler") and isinstance(getattr(x, "unet", None) or getattr(x, "transformer", None), torch.nn.Module):
        from ..families.registry import denoiser  # a pipeline: its model (and its denoiser's dtype)
        from ..sweep import model_id

        return {"pipeline": model_id(x), "dtype": str(denoiser(x).dtype)}
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
    from ..trace import Needed, TraceResult

    if isinstance(value, TraceResult):
        return {"__trace__": _trace_record(value)}
    if isinstance(value, Needed):
        return {"__needed__": {"curve": _to_json(value.curve), "needed": [[f, k] for f, k in value.needed.items()],
                               "n_states": value.n_states}}
    if hasattr(value, "to_json") and not isinstance(value, (dict, list, str)):
        return _to_json(value.to_json())
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


TRACE_FORMAT = 1  # the layout of a kept trace below; a file of another layout is measured again


def _trace_record(result) -> dict:
    """A :class:`~loco_lib.trace.TraceResult` as JSON: its settings, states, restored sets and every
    run's score; not its images, nor what the run that made it computed."""
    from dataclasses import asdict

    def plain(x):
        return [plain(v) for v in x] if isinstance(x, (list, tuple)) else x

    return {"format": TRACE_FORMAT, "where": result.where, "encoder": result.encoder, "prompts": list(result.prompts),
            "subjects": list(result.subjects), "seeds": [int(s) for s in result.seeds],
            "states": [asdict(st) for st in result.states], "sets": plain(result.sets), "bands": plain(result.bands),
            "tokens": plain(result.tokens), "settings": _to_json(result.settings),
            "counter": _to_json(dict(result.counter)), "seconds": result.seconds,
            "scores": [[r.prompt_index, r.seed, plain(r.restore), r.band, float(v)]
                       for r, v in sorted(result.scores.items(), key=lambda kv: repr(kv[0]))]}


def _trace_from_record(d: dict):
    """The :class:`~loco_lib.trace.TraceResult` of :func:`_trace_record` (no images; nothing computed now)."""
    from ..trace import Run, State, TraceResult

    if d.get("format") != TRACE_FORMAT:
        raise ValueError(f"kept trace of layout {d.get('format')!r}, this code reads layout {TRACE_FORMAT}")
    tup = lambda x: None if x is None else tuple(x)
    tokens = d["tokens"] if isinstance(d["tokens"], str) else list(d["tokens"])
    return TraceResult(d["where"], d["encoder"], d["prompts"], d["subjects"], d["seeds"],
                       [State(**st) for st in d["states"]], [tuple(st) for st in d["sets"]],
                       [tuple(b) for b in d["bands"]], tokens,
                       {Run(p, s, tup(restore), band): v for p, s, restore, band, v in d["scores"]},
                       settings=d["settings"], counter=d["counter"], seconds=d["seconds"])


def comparison_tables(pipe, prompts, targets=None, models: dict | None = None, seeds=(0,), *, groups=None, scorer=None,
                      steps: int | None = None, guidance: float | None = None, batch_size: int = 8,
                      progress: bool | None = None) -> dict:
    """:func:`loco_lib.evaluate.compare` reduced to the tables a chapter shows: ``"mean"``, the
    scores' means per group (:meth:`~loco_lib.evaluate.Comparison.mean`), and with the organism's
    attribute scorer ``"readouts"``, each group's readouts per model in one table indexed by
    (prompts, edit) (None with another scorer). The images are left out, so the result can be kept
    by :func:`measure`."""
    import pandas as pd

    from ..evaluate import compare

    c = compare(pipe, prompts, targets, models, seeds, groups=groups, scorer=scorer, steps=steps, guidance=guidance,
                batch_size=batch_size, progress=progress)
    readouts = None
    if hasattr(c.scorer, "accuracy"):
        readouts = pd.concat({g: c.readouts(g).rename_axis("edit") for g in dict.fromkeys(c.groups)}, names=["prompts"])
    return {"mean": c.mean("group"), "readouts": readouts}


def baselines_table(pipe, edits: dict, groups, **kwargs):
    """:func:`loco_lib.unlearning.baselines` reduced to its table (one row per model: UA, IRA, CRA,
    CLIP vs T and T', the images per group in ``attrs["n"]``), so it can be kept by :func:`measure`.
    ``kwargs``: scorer, seeds, steps, guidance, progress."""
    from ..unlearning import baselines

    return baselines(pipe, edits, groups, **kwargs).table


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
    if isinstance(value, dict) and set(value) == {"__trace__"}:
        return _trace_from_record(value["__trace__"])
    if isinstance(value, dict) and set(value) == {"__needed__"}:
        from ..trace import Needed

        n = value["__needed__"]
        return Needed(_from_json(n["curve"]), {f: k for f, k in n["needed"]}, n["n_states"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return value


def key_parts(model: str, fn, args, kwargs) -> dict | None:
    """What the content key of ``fn(*args, **kwargs)`` on ``model`` is made of, each part a short
    hash: ``weights`` (the organism's and the scorer's weight files with the organism's measuring
    code), ``code`` (the code ``fn``'s module runs) and ``call`` (the function and its arguments);
    None when ``model`` is not an organism whose weights are here. Every part hashes committed bytes
    or chosen arguments, so the key is the same on every machine."""
    from ..fingerprint import code_closure, content_key
    from .protocol import weights_fingerprint

    try:
        weights = weights_fingerprint(model)
    except (LocoError, TypeError, OSError):
        return None
    kwargs = {k: v for k, v in kwargs.items() if k not in UNKEYED}
    call = json.dumps({"function": f"{fn.__module__}.{fn.__qualname__}", "args": describe(list(args)),
                       "kwargs": describe(kwargs)}, sort_keys=True)
    return {"weights": weights, "code": content_key(code_closure(fn.__module__)), "call": call,
            "key": content_key(code_closure(fn.__module__), extra=weights + call)}


def key(model: str, fn, args, kwargs) -> str | None:
    """The content key of ``fn(*args, **kwargs)`` on ``model`` (:func:`key_parts`); None when ``model``
    is not an organism whose weights are here."""
    parts = key_parts(model, fn, args, kwargs)
    return None if parts is None else parts["key"]


def _why(old_parts: dict | None, parts: dict, fn) -> str:
    """Why a kept measurement is measured again, in words, from its old and new key parts."""
    if old_parts is None:
        return "its kept file holds no key parts (written by an older loco)"
    said = []
    if old_parts.get("weights") != parts["weights"]:
        said.append("the organism's or the scorer's weights, or the organism's measuring code, changed")
    if old_parts.get("code") != parts["code"]:
        said.append(f"the code {fn.__module__} runs changed")
    if old_parts.get("call") != parts["call"]:
        said.append("its arguments changed")
    return "; ".join(said) or "its key is made another way now"


def _log(entry: dict) -> None:
    """One JSON line in ``$LOCO_KEPT_LOG`` (set by :func:`loco_lib.reproduce.run` for each chapter)."""
    path = os.environ.get("LOCO_KEPT_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


def _shown(path: Path) -> str:
    from ..fingerprint import ROOT

    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def measure(name: str, model: str, fn, *args, kept_dir=None, **kwargs):
    """``fn(*args, **kwargs)`` as JSON (tables come back as DataFrames, results with ``to_json`` as
    their JSON), read from ``<kept_dir>/<model>/<name>-<key>.json`` when that file exists (``kept_dir``
    defaults to :func:`folder`), else measured and written there atomically; a file of the same
    measurement with another key is replaced, and a one-line warning says which and why (the part of
    the key that changed). ``name`` may hold any characters: others than letters, digits, ``_`` and
    ``.`` become ``_`` in the file name (``-`` separates the key). A trace that comes back carries
    the key as ``kept_key``, which keys a measurement it is passed to (:func:`trace_key`)."""
    parts = key_parts(model, fn, args, kwargs)
    if parts is None:
        return _from_json(_to_json(fn(*args, **kwargs)))
    k = parts["key"]
    name = re.sub(r"[^A-Za-z0-9_.]+", "_", name)  # a file name: "artist-window-van gogh" -> "artist-window-van_gogh"
    base = Path(kept_dir) if kept_dir is not None else folder()
    path = base / Path(str(model)).name / f"{name}-{k}.json"
    damaged = path.exists()
    if damaged:
        try:
            stored = json.loads(path.read_text())
            value, records = _from_json(stored["value"]), stored["records"]
        except (ValueError, KeyError, TypeError):
            import warnings

            warnings.warn(f"damaged kept measurement {str(path)!r}: measuring it again", LocoWarning, stacklevel=2)
        else:
            runlog.write(records)  # the run's per-image record gets the rows of the measurement it reads
            _log({"file": _shown(path), "measured": False})
            return _with_key(value, k)
    olds = [old for old in path.parent.glob(f"{name}-*.json") if old != path and len(old.name) == len(path.name)]
    value, records = _recorded(lambda: _to_json(fn(*args, **kwargs)))
    path.parent.mkdir(parents=True, exist_ok=True)
    stored_parts = {p: v if p != "call" else hashlib.sha256(v.encode()).hexdigest()[:24] for p, v in parts.items()}
    write_json(path, {"value": value, "records": records, "key": stored_parts})  # keys in their order: a dict reads back as it went
    why = "its kept file was damaged" if damaged else "no kept file of it yet"
    for old in olds:
        try:
            old_parts = json.loads(old.read_text()).get("key")
        except (OSError, ValueError, AttributeError):
            old_parts = None
        why = _why(old_parts, stored_parts, fn)
        old.unlink()
    line = (f"kept measurement {_shown(path)} measured" + (f" again, replacing {', '.join(o.name for o in olds)}" if olds else "")
            + f": {why}; commit it")
    import warnings

    warnings.warn(line, LocoWarning, stacklevel=2)
    _log({"file": _shown(path), "measured": True, "replaces": [_shown(o) for o in olds], "why": why})
    runlog.write(records)
    return _with_key(value, k)


def _with_key(value, k: str):
    """The value read back from its JSON; a trace carries the key it was kept under."""
    value = _from_json(value)
    if type(value).__name__ == "TraceResult":
        value.kept_key = k
    return value


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


def trained(name: str, model: str, fn, pipe, *args, checkpoint_dir=None, kept_dir=None, **kwargs):
    """A trained edit, ``fn(pipe, *args, checkpoint=..., **kwargs)`` (:func:`loco_lib.finetune.esd`,
    :func:`loco_lib.finetune.concept_ablation`), kept like :func:`measure`'s results: read from
    ``<kept_dir>/<model>/<name>-<key>.safetensors`` (:meth:`~loco_lib.edit_file.Edit.load`) when that
    file exists, else trained and written there, under the same key (the weights, the code ``fn``
    runs, its arguments; never a computed float) and with the same one-line warning when a file is
    replaced. While it trains, its progress is kept in ``<checkpoint_dir>/<model>-<name>-<call>.pt``
    (``checkpoint_dir``: None keeps none), so an interrupted run resumes where it stopped; the
    checkpoint is removed once the kept file is written. On a model that is not an organism the edit
    is trained (with the same checkpoint) and nothing is kept. The edit that comes back is the one
    its file holds either way; its ``edit_seconds`` is the training time of the run that wrote it."""
    parts = key_parts(model, fn, (pipe, *args), kwargs)
    call = hashlib.sha256(json.dumps({"function": f"{fn.__module__}.{fn.__qualname__}", "args": describe([pipe, *args]),
                                      "kwargs": describe({k: v for k, v in kwargs.items() if k not in UNKEYED})},
                                     sort_keys=True).encode()).hexdigest()[:16]
    file = re.sub(r"[^A-Za-z0-9_.]+", "_", name)
    checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{Path(str(model)).name}-{file}-{call}.pt"

    def train():
        edit = fn(pipe, *args, checkpoint=checkpoint, **kwargs)
        edit.meta["kept_seconds"] = edit.edit_seconds
        return edit

    if parts is None:
        return train()
    k = parts["key"]
    base = Path(kept_dir) if kept_dir is not None else folder()
    path = base / Path(str(model)).name / f"{file}-{k}.safetensors"
    damaged = path.exists()
    if damaged:
        try:
            edit = _kept_edit(path)
        except LocoError:
            import warnings

            warnings.warn(f"damaged kept edit {str(path)!r}: training it again", LocoWarning, stacklevel=2)
        else:
            _log({"file": _shown(path), "measured": False})
            return edit
    olds = [old for old in path.parent.glob(f"{file}-*.safetensors") if old != path and len(old.name) == len(path.name)]
    edit = train()
    stored_parts = {p: v if p != "call" else hashlib.sha256(v.encode()).hexdigest()[:24] for p, v in parts.items()}
    edit.meta["kept_key"] = stored_parts
    path.parent.mkdir(parents=True, exist_ok=True)
    edit.save(path)
    why = "its kept file was damaged" if damaged else "no kept file of it yet"
    for old in olds:
        try:
            old_parts = _kept_edit(old).meta.get("kept_key")
        except LocoError:
            old_parts = None
        why = _why(old_parts, stored_parts, fn)
        old.unlink()
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    line = (f"kept edit {_shown(path)} trained" + (f" again, replacing {', '.join(o.name for o in olds)}" if olds else "")
            + f": {why}; commit it")
    import warnings

    warnings.warn(line, LocoWarning, stacklevel=2)
    _log({"file": _shown(path), "measured": True, "replaces": [_shown(o) for o in olds], "why": why})
    return _kept_edit(path)


def _kept_edit(path: Path):
    """The edit of a kept file, its training time as ``edit_seconds``."""
    from ..edit_file import Edit

    edit = Edit.load(path)
    if "kept_seconds" in edit.meta:
        edit.meta["edit_seconds"] = edit.meta["kept_seconds"]
    return edit
