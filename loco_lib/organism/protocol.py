"""Measurements on the model organism (``toy``, ``toy-t5``): the paper's phenomena, read off with
the attribute scorer (:mod:`loco_lib.organism.scorer`) instead of being looked at.

Each function runs one protocol through the same code as on SD and returns plain numbers:

* :func:`sample_accuracy` - does the model draw what it is asked (every shape x colour x style)?
* :func:`locogen_readouts` - LocoGen (Sec. 5.1.2, Algorithm 1) for an attribute, with the readouts of
  every window: how far each window moves the attribute, and what it does to the others;
* :func:`edit_readouts` - LocoEdit (Sec. 6) at given layers on held-out prompts and on control
  prompts that the edit should leave alone (App. F's all-layers edit is ``layers="all"``);
* :func:`neuron_curve` - neuron-level editing (Sec. 7): readouts as the top-k neurons are replaced;
* :func:`token_swap` - App. M: which text tokens carry the style (subject tokens, the ones after it).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .. import settings
from ..errors import LocoError, LocoWarning
from ..files import write_json
from ..layers import format_layers
from ..tokens import TOKEN_SETS
from .world import COLOURS, FACTS, SHAPES, STYLES


def canonical_prompts(styles=(*STYLES, None), facts: bool = True) -> list[str]:
    """Every shape x colour x style caption (style None = no style phrase), then the fact aliases."""
    out = [f"a {c} {s}" + (f" in the style of {st}" if st else "") for s in SHAPES for c in COLOURS for st in styles]
    if facts:
        out += [f"{a}" + (f" in the style of {st}" if st else "") for a in FACTS for st in styles]
    return out


def sample_accuracy(pipe, scorer, seeds=(0,), prompts=None, **kw) -> dict:
    """Readout accuracy per attribute of the model's images of ``prompts`` (default: all canonical)."""
    from ..evaluate import evaluate

    res = evaluate(pipe, prompts or canonical_prompts(), seeds=seeds, scorer=scorer, progress=False, **kw)
    return {**res.accuracy, "n": res.n, "images": res.images, "prompts": res.prompts}


def colour_pairs(n: int = 8):
    """Pairs for a colour window: the same scene with the next colour (subject = the colour word)."""
    from ..prompts import PromptPair, _to_set

    names = list(COLOURS)
    scenes = [(names[i % 4], SHAPES[(i // 2) % 4], (*STYLES, None)[i % 4]) for i in range(n)]
    pairs = []
    for c, s, st in scenes:
        new = names[(names.index(c) + 1) % 4]
        tail = f" in the style of {st}" if st else ""
        pairs.append(PromptPair(f"a {c} {s}{tail}", f"a {new} {s}{tail}", c, new, c, "constructed: colour pair"))
    return _to_set("objects", pairs, None)


def locogen_readouts(pipe, scorer, prompts, attribute: str, m: int, seeds=(0,), readout=None, **kw):
    """LocoGen for ``attribute`` over windows of ``m`` layers, plus each window's readouts.

    Returns ``(result, table)``: the :class:`~loco_lib.locogen.LocoGenResult` (window chosen by
    CLIP-score, as Algorithm 1) and the :func:`~loco_lib.locogen.readouts` table (``readout``
    overrides which readouts count as the attribute's, e.g. ``("colour",)`` for colour pairs).
    """
    from ..locogen import locogen, readouts

    result = locogen(pipe, prompts, attribute, m, seeds, scorer=scorer, progress=False, **kw)
    return result, readouts(result, scorer, keys=readout)


def edit_readouts(pipe, scorer, layers, keys, evaluations: dict, seeds=(0,), lam: float = 0.01, steps=None,
                  before: dict | None = None) -> dict:
    """Readouts of each group of ``evaluations`` (name -> prompts) before and after a LocoEdit
    (``layers``), or, with ``layers`` :data:`UCE`, UCE's edit of a joint-attention model's text
    embedder (the keys' subject erased towards their target subject, the world's other artists kept).

    ``keys``: the edit's prompt set (originals, targets, subjects, target subjects). Returns
    ``{"edit": Edit, "before": {group: accuracy}, "after": {group: accuracy}}``; the pipeline is left
    unedited. A group may be a prompt set: its readouts are then also taken against its targets
    (``"target"``). ``before``: readouts of the unedited model from an earlier call (not recomputed).
    """
    from ..evaluate import evaluate
    from ..locoedit import compute_edit

    if isinstance(layers, str) and layers == UCE:  # the comparison edit of a joint-attention model: its text embedder
        from ..uce import compute_edit as uce_edit

        concept = keys.subjects[0]
        edit = uce_edit(pipe, concept, keys.target_subjects[0] or "",
                        [a for a in STYLES if a != concept] if concept in STYLES else None)
    else:
        edit = compute_edit(pipe, layers, keys.originals, keys.targets, keys.subjects, keys.target_subjects, lam=lam)
    out = {"edit": edit, "before": dict(before) if before else {}, "after": {}}
    for phase in (("after",) if before else ("before", "after")):
        if phase == "after":
            edit.apply(pipe)
        try:
            for name, prompts in evaluations.items():
                res = evaluate(pipe, prompts, seeds=seeds, scorer=scorer, steps=steps, progress=False)
                out[phase][name] = {**res.accuracy, **({"target": res.accuracy_target} if res.accuracy_target else {})}
        finally:
            if phase == "after":
                edit.revert(pipe)
    return out


def edit_series(pipe, scorer, keys, groups: dict, placements: dict, seeds=(0,), steps=None) -> dict:
    """The same edit (``keys``) placed at several layer sets (name -> layers): for each, the edited
    layers and the readouts of ``groups`` before (computed once) and after."""
    before, res = None, {}
    for name, layers in placements.items():
        r = edit_readouts(pipe, scorer, layers, keys, groups, seeds=seeds, steps=steps, before=before)
        before = r["before"]
        res[name] = {"layers": r["edit"].layers, "before": r["before"], "after": r["after"]}
    return res


def neuron_curve(pipe, scorer, layers, with_style, without_style, subject: str, ks, seeds=(0,), steps=None):
    """Style readout of ``with_style`` prompts as the top-k K/V neurons (Welch ranking) are replaced."""
    from ..evaluate import evaluate
    from ..neurons import neurons_replaced, rank_neurons

    ranking = rank_neurons(pipe, layers, with_style, without_style, subjects_with=subject)
    rows = []
    for k in ks:
        with neurons_replaced(pipe, ranking, k, guidance=settings.guidance(pipe, None) > 1.0) as ed:
            res = evaluate(pipe, with_style, seeds=seeds, scorer=scorer, steps=steps, progress=False)
        rows.append({"k": int(k), "n_neurons": ed.n_neurons, **res.accuracy})
    return rows


@torch.no_grad()
def token_swap(pipe, scorer, originals, targets, subject: str, which: str, seeds=(0,), steps=None) -> dict:
    """App. M: generate ``originals`` with the text embeddings at some token positions taken from
    ``targets`` (:func:`loco_lib.altered.swapped_tokens`), and read the images off."""
    from ..altered import swapped_tokens
    from ..generate import progress_bars, sample_batch
    from ..text import encode

    patch = swapped_tokens(pipe, originals, targets, subject, which)
    seeds, steps, guidance = settings.seeds(seeds), settings.steps(pipe, steps), settings.guidance(pipe, None)
    cond = encode(pipe, originals)
    images, reps = [], []
    with progress_bars(pipe, False):
        for s in seeds:
            images += sample_batch(pipe, cond, [s] * len(originals), steps=steps, guidance=guidance, patches=[patch])
            reps += list(originals)
    return {"which": which, **scorer.accuracy(images, reps), "n": len(images)}


def second_window(locogen_part: dict, threshold: float = 0.7):
    """Another window that also moves the attribute (readout moved >= ``threshold``) and shares no
    layer with the best one: the one with the best CLIP-score, or None."""
    best = set(locogen_part["best"])
    lower = locogen_part["clean"] > locogen_part["altered_all"]
    rows = [r for r in locogen_part["table"] if r["layers"] not in ("clean", "all") and r["moved"] is not None
            and r["moved"] >= threshold]
    rows = [r for r in rows if not best & set(_layers_of(r["layers"]))]
    if not rows:
        return None
    pick = min(rows, key=lambda r: r["clip"]) if lower else max(rows, key=lambda r: r["clip"])
    return _layers_of(pick["layers"])


def _layers_of(label) -> list[int]:
    """``"3-4"`` -> [3, 4]; ``"5"`` -> [5] (a window's label in a readouts table, written by
    :func:`~loco_lib.layers.format_layers`)."""
    first, _, last = str(label).partition("-")
    return list(range(int(first), int(last or first) + 1))


def inert_window(*tables) -> list[int]:
    """A control window: the middle of the longest run of windows whose readouts all equal the clean
    ones in every given :func:`~loco_lib.locogen.readouts` table (e.g. the style and the objects
    sweeps, so the control is inert for more than the edited attribute)."""
    attrs = ("shape", "colour", "style")
    labels = list(tables[0]["layers"].iloc[1:-1])
    inert = []
    for label in labels:
        ok = True
        for t in tables:
            clean, r = t.iloc[0], t[t["layers"] == label].iloc[0]
            ok &= bool(all(abs(r[a] - clean[a]) < 1e-9 for a in attrs))
        inert.append(ok)
    best, run = [], []
    for flag, label in zip(inert, labels):
        run = run + [label] if flag else []
        if len(run) > len(best):
            best = list(run)
    if not best:
        raise LocoError("no window leaves every readout at its clean level")
    return _layers_of(best[len(best) // 2])


# -- the report, typed --------------------------------------------------------------------------------

@dataclass
class Readouts:
    """Fractions of images whose shape / colour / style the scorer reads as the prompt asks; ``target``:
    the same against the target prompts (prompt sets only)."""

    shape: float
    colour: float
    style: float
    target: "Readouts | None" = None

    @classmethod
    def from_json(cls, d: dict) -> "Readouts":
        return cls(d["shape"], d["colour"], d["style"], cls.from_json(d["target"]) if d.get("target") else None)


@dataclass
class SampleAccuracy:
    shape: float
    colour: float
    style: float
    n: int


@dataclass
class Window:
    """LocoGen for one attribute: the window Algorithm 1 picks (``best``), how far its CLIP-score and
    its readouts move (clean 0 -> every layer altered 1), and every window's row (``table``: layers
    label, start, readouts, ``moved``, ``clip``)."""

    best: list
    clip_fraction: float
    moved: float
    clean: float
    altered_all: float
    table: list

    def row(self, label: str) -> dict:
        """The table's row of a window label (``"0-1"``), ``"clean"`` or ``"all"``."""
        for r in self.table:
            if r["layers"] == label:
                return r
        raise LocoError(f"no window {label!r} in this LocoGen table")


@dataclass
class Windows:
    style: Window
    objects: Window
    colour: Window
    facts: Window

    def items(self):
        return [(a, getattr(self, a)) for a in ("style", "objects", "colour", "facts")]


@dataclass
class AppG:
    m: int
    table: list


@dataclass
class Placement:
    """One edit placement: the edited layers and the readouts of each prompt group before and after."""

    layers: list
    before: dict  # group -> Readouts
    after: dict


@dataclass
class StyleEdits:
    window: Placement
    inert: Placement
    all: Placement
    second_window: Placement | None = None
    text_embedder: Placement | None = None  # a joint-attention organism's comparison edit: UCE on its text embedder

    def items(self):
        names = [("window", self.window), ("inert", self.inert)]
        if self.second_window is not None:
            names.append(("second window", self.second_window))
        return names + [("all", self.all)] + ([(TEXT_EMBEDDER, self.text_embedder)] if self.text_embedder else [])


@dataclass
class FactEdits:
    window: Placement
    all: Placement
    text_embedder: Placement | None = None

    def items(self):
        return [("window", self.window), ("all", self.all)] + ([(TEXT_EMBEDDER, self.text_embedder)]
                                                               if self.text_embedder else [])


@dataclass
class NeuronPoint:
    k: int
    n_neurons: int
    shape: float
    colour: float
    style: float


@dataclass
class TokenSwap:
    which: str
    shape: float
    colour: float
    style: float
    n: int


@dataclass
class Report:
    """Every measurement of the organism chapter for one model (:func:`report`)."""

    model: str
    seeds: list
    steps: int | None
    sample: SampleAccuracy
    locogen: Windows
    app_g: AppG
    edit: StyleEdits
    fact_edit: FactEdits
    neurons: list  # NeuronPoint per k
    token_swap: list  # TokenSwap per token set
    training: dict | None = None
    computed: list = field(default_factory=list)  # parts measured by this call (the rest came from the cache)
    sweeps: str | None = None  # LocoGen's image caches
    recorded: dict | None = None  # provenance of a recorded report (loco commit, date)

    def swap(self, which: str) -> TokenSwap:
        return next(t for t in self.token_swap if t.which == which)

    def to_json(self) -> dict:
        return _plain(asdict(self))

    @classmethod
    def from_json(cls, d: dict) -> "Report":
        place = lambda p: Placement(p["layers"], {g: Readouts.from_json(r) for g, r in p["before"].items()},
                                    {g: Readouts.from_json(r) for g, r in p["after"].items()})
        e, f = d["edit"], d["fact_edit"]
        return cls(
            model=d["model"], seeds=list(d["seeds"]), steps=d.get("steps"),
            sample=SampleAccuracy(**{k: d["sample"][k] for k in ("shape", "colour", "style", "n")}),
            locogen=Windows(**{a: Window(**d["locogen"][a]) for a in ("style", "objects", "colour", "facts")}),
            app_g=AppG(d["app_g"]["m"], d["app_g"]["table"]),
            edit=StyleEdits(place(e["window"]), place(e["inert"]), place(e["all"]),
                            place(e["second window"]) if "second window" in e else None,
                            place(e[TEXT_EMBEDDER]) if TEXT_EMBEDDER in e else None),
            fact_edit=FactEdits(place(f["window"]), place(f["all"]), place(f[TEXT_EMBEDDER]) if TEXT_EMBEDDER in f else None),
            neurons=[NeuronPoint(**r) for r in d["neurons"]],
            token_swap=[TokenSwap(**r) for r in d["token_swap"]],
            training=d.get("training"), computed=list(d.get("computed", [])), sweeps=d.get("sweeps"),
            recorded=d.get("recorded"),
        )


def _plain(x):
    """asdict output with the JSON layout of the cached parts (``second window`` key, no None targets)."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if k == "target" and v is None:
                continue
            if k in ("second_window", "text_embedder"):
                if v is None:
                    continue
                k = "second window" if k == "second_window" else TEXT_EMBEDDER
            out[k] = _plain(v)
        return out
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


# -- the whole protocol, cached ---------------------------------------------------------------------

NEURON_KS = (0, 2, 4, 8, 16, 32)
UCE = "uce"  # an edit placement: UCE on a joint-attention organism's text embedder (the comparison edit)
TEXT_EMBEDDER = "text embedder (UCE)"  # its name in a report


MEASURING_CODE = ("loco_lib.organism.protocol", "loco_lib.organism.scorer")


def measuring_code() -> list:
    """The source files an organism measurement runs (:func:`loco_lib.fingerprint.code_closure` of
    this module and the scorer's): a change to any of them invalidates cached measurements; a change
    to a figure, a chapter or an unrelated module does not."""
    from ..fingerprint import code_closure

    return code_closure(*MEASURING_CODE)


def weights_fingerprint(model: str) -> str:
    """A short hash of what an organism's measurements depend on: its weight files, the scorer's and
    the code that measures (:func:`measuring_code`); the cache key of :func:`report`."""
    import hashlib

    from ..fingerprint import content_key
    from .model import models_dir, organism_folder

    own = sorted(organism_folder(model).glob("*/*.safetensors"))
    if not own:
        raise LocoError(f"no weights of {model!r} here ({organism_folder(model)}): nothing to fingerprint")
    weights = own + sorted((models_dir() / "toy-scorer").glob("*.safetensors"))
    h = hashlib.sha1()
    for f in weights:
        h.update(f.read_bytes())
    return content_key(measuring_code(), extra=h.hexdigest())


def default_cache_dir():
    """Where :func:`report` keeps finished measurements: ``$LOCO_CACHE_DIR`` or ``_build/organism-cache``
    at the repository root (shared by every notebook run, wherever it runs from)."""
    import os
    from pathlib import Path

    env = os.environ.get("LOCO_CACHE_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "_build" / "organism-cache"


def committed_cache_dir():
    """``data/organism/cache/``: the finished parts of the organism chapter's reports, committed with the
    repository (a few kB of JSON per part, no images), so that a fresh clone builds the chapter from
    them while the code that measures and the weights are unchanged: every file name carries the
    content key (:func:`weights_fingerprint`), and a change to either measures again and replaces
    the file. ``tests/test_organism.py`` re-measures one part and compares."""
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "data" / "organism" / "cache"


class _Memo:
    """Results of named measurements as JSON files in ``folder`` (None: nothing is kept), keyed by
    the model's weights, the seeds and the steps, so an interrupted report resumes where it stopped.
    The folder is created (or refused with a LocoError) before anything is measured; a damaged file
    is reported in a one-line warning and measured again."""

    def __init__(self, folder, model: str, seeds, steps, dtype=None):
        import json
        from pathlib import Path

        self._json = json
        self.folder = Path(folder) / Path(str(model)).name if folder is not None else None  # "toy", or a folder's name
        if self.folder is not None:
            _make_cache_folder(Path(folder), self.folder)
        self.settings = f"s{'_'.join(map(str, seeds))}-t{steps}"
        if dtype is not None and str(dtype) != "torch.float32":
            self.settings += "-" + str(dtype).replace("torch.", "")
        self.key = f"{weights_fingerprint(model)}-{self.settings}"
        self.computed: list[str] = []

    def _read(self, path):
        """The stored value, or None (with a one-line warning) when the file is damaged."""
        import warnings

        try:
            return self._json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            warnings.warn(f"damaged cache file {str(path)!r} ({type(exc).__name__}): measuring it again", LocoWarning,
                          stacklevel=3)
            return None

    def __call__(self, name: str, fn):
        path = self.folder / f"{name}-{self.key}.json" if self.folder is not None else None
        if path is not None and path.exists():
            value = self._read(path)
            if value is not None:
                return value
        value = fn()
        self.computed.append(name)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, value)
            for old in path.parent.glob(f"{name}-*-{self.settings}.json"):  # other content keys: obsolete
                if old != path and old.name.count("-") == path.name.count("-"):
                    old.unlink()
        return value


def _make_cache_folder(root, folder) -> None:
    """Create ``folder`` under the cache ``root``; a LocoError (one line) when that is impossible."""
    for path in (root, folder):
        if path.exists() and not path.is_dir():
            raise LocoError(f"cannot use cache folder {str(root)!r}: {str(path)!r} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocoError(f"cannot use cache folder {str(root)!r}: {exc.strerror or exc}") from None


def _records(table) -> list[dict]:
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in table.to_dict("records")]


def report(model: str = "toy", seeds=(0,), steps: int | None = None, cache_dir=None, pipe=None, scorer=None,
           progress: bool | None = None, dtype=None, sweeps_dir=None) -> "Report":
    """Every measurement of the organism chapter for ``model``, as a typed :class:`Report`.

    ``sample``: readout accuracy of all canonical prompts. ``locogen``: for style, objects, colour and
    facts the window table (CLIP-score mean and readouts per window), the window Algorithm 1 picks,
    and how far it moves the attribute's readouts. ``app_g``: the m selected for style (threshold
    0.8). ``edit``: LocoEdit of van gogh at the style window, at an inert window and at all layers
    (readouts of held-out and control prompts before and after). ``fact_edit``: the president edit
    at the facts window and at all layers. A joint-attention organism adds to both UCE's edit of its
    text embedder (:data:`UCE`), the comparison edit. ``neurons``: style readout vs k. ``token_swap``: App. M.
    With ``cache_dir`` each part is stored when done and read back on the next call. ``dtype``: the
    weights' dtype (:func:`loco_lib.settings.dtype`; float32 on CPU by default), part of the cache key.
    ``sweeps_dir``: where LocoGen's images go (default: beside the parts in ``cache_dir``).
    """
    from pathlib import Path

    import pandas as pd
    from tqdm.auto import tqdm

    from ..clip_score import get_scorer
    from ..locogen import select_m
    from ..models import load, progress_default
    from ..prompts import default_prompts, load_controls, load_edit, load_pairs
    from .model import organism_kinds, sample_scheduler

    progress = progress_default() if progress is None else progress
    seeds = settings.seeds(seeds)
    # refused before anything is measured; None stays None (the organism's default)
    steps = settings.steps(None, steps, scheduler=pipe.scheduler if pipe is not None else sample_scheduler())
    dtype = settings.dtype(dtype if pipe is None else pipe.unet.dtype)
    memo = _Memo(cache_dir, model, seeds, steps, dtype)
    if sweeps_dir is not None:
        sweeps = Path(sweeps_dir) / Path(str(model)).name / f"sweeps-{memo.key}"
    else:
        sweeps = (memo.folder / f"sweeps-{memo.key}") if memo.folder is not None else None
    state = {}

    def need_pipe():
        if "pipe" not in state:
            state["pipe"] = pipe if pipe is not None else load(model, dtype=dtype, progress=False)
            state["scorer"] = scorer if scorer is not None else get_scorer(None, model)
        return state["pipe"], state["scorer"]

    src = {a: default_prompts(a, model) for a in ("style", "objects", "facts")}
    joint = (organism_kinds(model) or ("", ""))[1] == "mmdit"  # joint attention: UCE's edit of the text embedder too
    out = {"model": model, "seeds": seeds, "steps": steps}
    stages = ["sample", "locogen", "app_g", "edit", "fact_edit", "neurons", "token_swap"]
    bar = tqdm(stages, desc=f"{model} report", disable=not progress)

    def sample():
        p, s = need_pipe()
        acc = sample_accuracy(p, s, seeds=seeds, steps=steps)
        return {k: acc[k] for k in ("shape", "colour", "style", "n")}

    def one_locogen(name, prompts, attribute, readout=None):
        p, s = need_pipe()
        res, table = locogen_readouts(p, s, prompts, attribute, 2, seeds=seeds, readout=readout, steps=steps,
                                      cache_dir=sweeps / name if sweeps is not None else None)
        clip = res.table.set_index("layers")["mean"]
        table["clip"] = [clip.get(label, np.nan) for label in table["layers"]]
        best = table[table["layers"] == format_layers(res.best["layers"])].iloc[0]
        return {"best": res.best["layers"], "clip_fraction": res.best["fraction"], "moved": float(best["moved"]),
                "clean": res.clean, "altered_all": res.altered_all, "table": _records(table)}

    def locogen_all():
        return {
            "style": one_locogen("style", load_pairs(src["style"]), "style"),
            "objects": one_locogen("objects", load_pairs(src["objects"]), "objects"),
            "colour": one_locogen("colour", colour_pairs(), "objects", readout=("colour",)),
            "facts": one_locogen("facts", load_pairs(src["facts"]), "facts"),
        }

    for stage in bar:
        bar.set_postfix_str(stage)
        if stage == "sample":
            out["sample"] = memo("sample", sample)
        elif stage == "locogen":
            out["locogen"] = memo("locogen", locogen_all)
        elif stage == "app_g":
            def app_g():
                p, s = need_pipe()
                sel = select_m(p, load_pairs(src["style"]), "style", threshold=0.8, ms=[1, 2, 3], seeds=seeds, scorer=s,
                               steps=steps, progress=False, cache_dir=sweeps / "style" if sweeps is not None else None)
                return {"m": sel.m, "table": _records(sel.table)}
            out["app_g"] = memo("app_g", app_g)
        elif stage == "edit":
            window = out["locogen"]["style"]["best"]
            tables = [pd.DataFrame(out["locogen"][a]["table"]) for a in ("style", "objects")]
            inert = inert_window(*tables)
            places = {"window": window, "inert": inert, "all": "all"}
            second = second_window(out["locogen"]["style"])
            if second is not None:
                places["second window"] = second
            if joint:
                places[TEXT_EMBEDDER] = UCE

            def edit():
                p, s = need_pipe()
                keys = load_edit(src["style"], "van gogh")
                groups = {"edited": load_pairs(src["style"]).originals, **load_controls(src["style"])}
                return edit_series(p, s, keys, groups, places, seeds, steps)
            out["edit"] = memo("edit", edit)
        elif stage == "fact_edit":
            def fact_edit():
                p, s = need_pipe()
                keys = load_edit(src["facts"], "president")
                groups = {"president": load_pairs(src["facts"]), **load_controls(src["facts"])}
                places = {"window": out["locogen"]["facts"]["best"], "all": "all", **({TEXT_EMBEDDER: UCE} if joint else {})}
                return edit_series(p, s, keys, groups, places, seeds, steps)
            out["fact_edit"] = memo("fact_edit", fact_edit)
        elif stage == "neurons":
            def neurons():
                p, s = need_pipe()
                pairs = load_pairs(src["style"])
                free = [t.replace(" in the style of van gogh", "") for t in pairs.originals]
                return neuron_curve(p, s, out["locogen"]["style"]["best"], pairs.originals, free, "van gogh",
                                    ks=NEURON_KS, seeds=seeds, steps=steps)
            out["neurons"] = memo("neurons", neurons)
        elif stage == "token_swap":
            def swap():
                p, s = need_pipe()
                pairs = load_pairs(src["style"])
                return [token_swap(p, s, pairs.originals, pairs.targets, "van gogh", w, seeds=seeds, steps=steps)
                        for w in TOKEN_SETS]
            out["token_swap"] = memo("token_swap", swap)
    out["training"] = training_info(model)
    out["computed"] = memo.computed
    out["sweeps"] = str(sweeps) if sweeps is not None else None  # LocoGen's image caches, one folder per set
    return Report.from_json(out)


def training_info(model: str) -> dict:
    """What :mod:`loco_lib.organism.training` recorded for an organism: kind, seed, steps, batch, final loss, wall time."""
    import json

    from .model import organism_folder

    path = organism_folder(model) / "training.json"
    if not path.is_file():
        raise LocoError(f"{model!r} has no training.json: not a finished organism training")
    info = json.loads(path.read_text())
    return {k: info.get(k, "sd" if k == "unet" else None)
            for k in ("kind", "unet", "seed", "steps", "batch", "final_loss", "wall_seconds", "threads")}


def artist_windows(model: str, m: int = 2, seeds=(0,), steps: int | None = None, pipe=None, scorer=None,
                   cache_dir=None, dtype=None) -> dict:
    """LocoGen (window size ``m``) for each of the world's styles on its own prompts (the scenes of
    the style pairs in that style), with the window of every prompt alone (the paper reports
    DeepFloyd's windows as prompt-dependent, Sec. 5.2). Returns ``{"model", "m", "seeds", "steps", "artists": {style:
    {"window", "clip_fraction", "moved", "prompts": [{"prompt", "window", "fraction"}]}}}``."""
    from ..clip_score import get_scorer
    from ..models import load
    from ..prompts import load_artists

    seeds = settings.seeds(seeds)
    pipe = pipe if pipe is not None else load(model, dtype=dtype, progress=False)
    scorer = scorer if scorer is not None else get_scorer(None, model)
    out = {"model": model, "m": m, "seeds": seeds, "steps": steps, "artists": {}}
    for style in STYLES:
        res, table = locogen_readouts(pipe, scorer, load_artists(style, model=model), "style", m, seeds=seeds, steps=steps,
                                      cache_dir=None if cache_dir is None else os.path.join(str(cache_dir), style))
        best = table[table["layers"] == format_layers(res.best["layers"])].iloc[0]
        per = res.prompt_windows()
        out["artists"][style] = {
            "window": res.best["layers"], "clip_fraction": float(res.best["fraction"]), "moved": float(best["moved"]),
            "table": [{"start": int(r["start"]), "layers": r["layers"], "moved": float(r["moved"]), "style": float(r["style"])}
                      for _, r in table.iterrows() if r["layers"] not in ("clean", "all")],
            "prompts": [{"prompt": r.prompt, "window": r.window, "fraction": float(r.fraction)} for r in per.itertuples()]}
    return out
