"""The organism chapter's headline measurements, image by image, on several seeds.

:func:`~loco_lib.organism.protocol.report` keeps one fraction per window and per edit group: the
mean over every prompt and seed. A fraction of 1.00 over 8 images of one seed says nothing about
the next seed. :func:`headlines` measures the same protocol (LocoGen's windows for style, objects,
colour and facts, Sec. 5.1.2; LocoEdit of van gogh at the style window and of the president at the
facts window, Sec. 6) and keeps, for every image, what the scorer reads in it, so
:mod:`loco_lib.per_image` can show each seed and each prompt on its own and an interval over the
images.

Each window is the one Algorithm 1 picks from this measurement's own images (the CLIP-score mean
over every prompt and seed), so what is edited depends only on the chosen seeds, never on a number
measured elsewhere.

Nothing here is imported by the rest of the organism package: the report's cache keys do not
depend on this file.
"""
from __future__ import annotations

import numpy as np

from ..errors import LocoError
from ..layers import cross_attention_layers, format_layers, parse_layers
from .world import parse_caption

READS = ("shape", "colour", "style")


def _matches(scorer, images, prompts) -> dict:
    """For each readout, one 0/1 per image: does the image show what its prompt asks?"""
    if len(images) != len(prompts):
        raise LocoError(f"{len(images)} images but {len(prompts)} prompts")
    reads = scorer.readout(images)
    wants = [parse_caption(p) for p in prompts]
    return {a: [int(r[a] == w[a]) for r, w in zip(reads, wants)] for a in READS}


def window_images(pipe, scorer, prompts, attribute: str, m: int = 2, seeds=(0,), steps=None, readout=None,
                  cache_dir=None) -> dict:
    """LocoGen (windows of ``m`` layers) for ``attribute`` on ``prompts``, with every image's readouts.

    Returns ``{"attribute", "m", "keys", "lower_is_better", "prompts", "images": [[prompt index,
    seed], ...], "sets": [label, ...], "clip": {label: [score per image]}, "read": {label: {readout:
    [0/1 per image]}}}``: ``sets`` are ``clean``, every window and ``all``; ``keys`` the readouts the
    attribute changes (``readout`` overrides them, as in :func:`~loco_lib.locogen.readouts`)."""
    from ..locogen import LOWER_IS_BETTER, READOUT_OF, locogen
    from ..sweep import Job

    res = locogen(pipe, prompts, attribute, m, seeds, scorer=scorer, steps=steps, cache_dir=cache_dir, progress=False)
    n_layers = int(res.table["layer_list"].iloc[-1][-1]) + 1
    sets = [("clean", [])] + [(format_layers(w), list(w)) for w in res.table["layer_list"]] + [("all", list(range(n_layers)))]
    images = [(i, s) for i in range(len(res.originals)) for s in res.seeds]
    out = {"attribute": attribute, "m": m, "keys": list(readout or READOUT_OF[attribute]),
           "lower_is_better": bool(LOWER_IS_BETTER[attribute]), "prompts": list(res.originals),
           "images": [[i, int(s)] for i, s in images], "sets": [label for label, _ in sets], "clip": {}, "read": {}}
    for label, layers in sets:
        jobs = [Job(i, tuple(layers), s) for i, s in images]
        out["clip"][label] = [float(res.sweep.scores[j]) for j in jobs]
        out["read"][label] = _matches(scorer, [res.sweep.images[j] for j in jobs], [res.originals[i] for i, _ in images])
    return out


def picked(windows: dict) -> str:
    """The window Algorithm 1 picks from :func:`window_images`: the best CLIP-score mean over every image."""
    labels = [label for label in windows["sets"] if label not in ("clean", "all")]
    means = [float(np.mean(windows["clip"][label])) for label in labels]
    return labels[int(np.argmin(means) if windows["lower_is_better"] else np.argmax(means))]


def edit_images(pipe, scorer, layers, keys, groups: dict, seeds=(0,), steps=None, lam: float = 0.01) -> dict:
    """LocoEdit (``keys``: the edit's prompt set) at ``layers``, and every image of each group of
    ``groups`` (name -> prompts, or a prompt set, whose images are also read against its targets)
    generated before and after it. Returns ``{"layers", "groups": {name: {"prompts", "seeds",
    "before": {readout: [0/1]}, "after": ..., "before target": ..., "after target": ...}}}``."""
    from ..evaluate import evaluate
    from ..locoedit import compute_edit

    edit = compute_edit(pipe, layers, keys.originals, keys.targets, keys.subjects, keys.target_subjects, lam=lam)
    out = {"layers": [int(i) for i in edit.layers], "groups": {}}
    for phase in ("before", "after"):
        if phase == "after":
            edit.apply(pipe)
        try:
            for name, prompts in groups.items():
                res = evaluate(pipe, prompts, seeds=seeds, scorer=scorer, steps=steps, progress=False)
                g = out["groups"].setdefault(name, {"prompts": list(res.prompts), "seeds": [int(s) for s in res.seeds]})
                g[phase] = _matches(scorer, res.images, res.prompts)
                if res.targets is not None:
                    g[f"{phase} target"] = _matches(scorer, res.images, res.targets)
        finally:
            if phase == "after":
                edit.revert(pipe)
    return out


def headlines(model: str, pipe, scorer, seeds=(0, 1, 2, 3), steps=None, cache_dir=None, progress: bool = False) -> dict:
    """The organism chapter's protocol on ``model`` with every image kept: the windows of style, objects,
    colour and facts (:func:`window_images`, m = 2), and LocoEdit of van gogh at the style window and
    of the president at the facts window (:func:`edit_images`, with the groups the report reads).
    ``cache_dir``: where LocoGen's images go (an interrupted run resumes from them)."""
    import os

    from tqdm.auto import tqdm

    from ..prompts import default_prompts, load_controls, load_edit, load_pairs
    from .protocol import colour_pairs

    src = {a: default_prompts(a, model) for a in ("style", "objects", "facts")}
    sweeps = {"style": (load_pairs(src["style"]), "style", None), "objects": (load_pairs(src["objects"]), "objects", None),
              "colour": (colour_pairs(), "objects", ("colour",)), "facts": (load_pairs(src["facts"]), "facts", None)}
    bar = tqdm(total=len(sweeps) + 2, desc=f"{model} headlines", disable=not progress)
    out = {"model": str(model), "seeds": [int(s) for s in seeds], "steps": steps, "windows": {}, "edits": {}}
    for name, (prompts, attribute, readout) in sweeps.items():
        out["windows"][name] = window_images(pipe, scorer, prompts, attribute, 2, seeds, steps, readout,
                                             None if cache_dir is None else os.path.join(str(cache_dir), name))
        bar.update()
    n_layers = len(cross_attention_layers(pipe.unet))
    out["edits"]["style"] = edit_images(pipe, scorer, parse_layers(picked(out["windows"]["style"]), n_layers), load_edit(src["style"], "van gogh"),
                                        {"edited": load_pairs(src["style"]).originals, **load_controls(src["style"])},
                                        seeds, steps)
    bar.update()
    out["edits"]["facts"] = edit_images(pipe, scorer, parse_layers(picked(out["windows"]["facts"]), n_layers), load_edit(src["facts"], "president"),
                                        {"president": load_pairs(src["facts"]), **load_controls(src["facts"])}, seeds, steps)
    bar.update()
    bar.close()
    return out
