"""Measurements on the model organism (``toy``, ``toy-t5``): the paper's phenomena, read off with
the attribute scorer (:mod:`loco_lib.scorer`) instead of being looked at.

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

import numpy as np
import torch

from .errors import LocoError
from .world import COLOURS, FACTS, SHAPES, STYLES


def canonical_prompts(styles=(*STYLES, None), facts: bool = True) -> list[str]:
    """Every shape x colour x style caption (style None = no style phrase), then the fact aliases."""
    out = [f"a {c} {s}" + (f" in the style of {st}" if st else "") for s in SHAPES for c in COLOURS for st in styles]
    if facts:
        out += [f"{a}" + (f" in the style of {st}" if st else "") for a in FACTS for st in styles]
    return out


def sample_accuracy(pipe, scorer, seeds=(0,), prompts=None, **kw) -> dict:
    """Readout accuracy per attribute of the model's images of ``prompts`` (default: all canonical)."""
    from .evaluate import evaluate

    res = evaluate(pipe, prompts or canonical_prompts(), seeds=seeds, scorer=scorer, progress=False, **kw)
    return {**res.accuracy, "n": res.n, "images": res.images, "prompts": res.prompts}


def colour_pairs(n: int = 8):
    """Pairs for a colour window: the same scene with the next colour (subject = the colour word)."""
    from .prompts import PromptPair, _to_set

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
    from .locogen import locogen, readouts

    result = locogen(pipe, prompts, attribute, m, seeds, scorer=scorer, progress=False, **kw)
    return result, readouts(result, scorer, keys=readout)


def edit_readouts(pipe, scorer, layers, keys, evaluations: dict, seeds=(0,), lam: float = 0.01, steps=None) -> dict:
    """Readouts of each group of ``evaluations`` (name -> prompts) before and after a LocoEdit.

    ``keys``: the edit's prompt set (originals, targets, subjects, target subjects). Returns
    ``{"edit": Edit, "before": {group: accuracy}, "after": {group: accuracy}}``; the pipeline is left
    unedited.
    """
    from .evaluate import evaluate
    from .locoedit import compute_edit

    edit = compute_edit(pipe, layers, keys.originals, keys.targets, keys.subjects, keys.target_subjects, lam=lam)
    out = {"edit": edit, "before": {}, "after": {}}
    for phase in ("before", "after"):
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


def neuron_curve(pipe, scorer, layers, with_style, without_style, subject: str, ks, seeds=(0,), steps=None):
    """Style readout of ``with_style`` prompts as the top-k K/V neurons (Welch ranking) are replaced."""
    from .generate import defaults, generate
    from .neurons import neurons_replaced, rank_neurons

    ranking = rank_neurons(pipe, layers, with_style, without_style, subjects_with=subject)
    g = defaults(pipe)["guidance"]
    rows = []
    for k in ks:
        with neurons_replaced(pipe, ranking, k, guidance=g > 1.0) as ed:
            reps = [p for p in with_style for _ in seeds]
            gen = generate(pipe, reps, seeds=[s for _ in with_style for s in seeds], steps=steps, progress=False)
        rows.append({"k": int(k), "n_neurons": ed.n_neurons, **scorer.accuracy(gen.images, reps)})
    return rows


@torch.no_grad()
def token_swap(pipe, scorer, originals, targets, subject: str, which: str, seeds=(0,), steps=None) -> dict:
    """App. M: generate ``originals`` with the text embeddings at some token positions taken from
    ``targets`` (every layer reads the result), and read the images off.

    ``which``: ``"subject"`` (the subject's tokens), ``"after"`` (every position after the subject:
    end-of-text and padding), ``"subject+after"``, or ``"all"`` (= a plain run of the target). The
    subject of the original and of the target must have the same number of tokens, so positions
    line up (true for 'van gogh' -> 'a painting').
    """
    from .generate import defaults, progress_bars, sample_batch
    from .text import encode
    from .tokens import subject_token_index

    tok = pipe.tokenizer
    n_sub = len(tok(subject, add_special_tokens=False)["input_ids"])
    cond = encode(pipe, originals)
    alt = encode(pipe, targets)
    mask = torch.zeros(cond.embeds.shape[:2], dtype=torch.bool)
    for i, p in enumerate(originals):
        last = subject_token_index(pipe, p, subject)
        if which in ("subject", "subject+after"):
            mask[i, last - n_sub + 1: last + 1] = True
        if which in ("after", "subject+after"):
            mask[i, last + 1:] = True
        if which == "all":
            mask[i] = True
    if which not in ("subject", "after", "subject+after", "all"):
        raise LocoError(f"unknown token set {which!r}")
    cond.embeds = torch.where(mask[..., None].to(cond.embeds.device), alt.embeds, cond.embeds)
    d = defaults(pipe)
    steps = d["steps"] if steps is None else steps
    images, reps = [], []
    with progress_bars(pipe, False):
        for s in seeds:
            images += sample_batch(pipe, cond, [s] * len(originals), steps=steps, guidance=d["guidance"])
            reps += list(originals)
    return {"which": which, **scorer.accuracy(images, reps), "n": len(images)}


def fraction_moved(clean: float, moved_to: float, full: float) -> float:
    """How far ``moved_to`` goes from ``clean`` (0) towards ``full`` (1)."""
    return float("nan") if clean == full else float((clean - moved_to) / (clean - full))


def mean_over(groups: dict, key: str) -> float:
    return float(np.mean([g[key] for g in groups.values()]))


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
    first, _, last = str(best[len(best) // 2]).partition("-")
    return list(range(int(first), int(last or first) + 1))
