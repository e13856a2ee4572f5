"""Judging edits side by side: unlearning metrics and the paper's robustness table (App. I, L; Table 1).

**UnlearnCanvas metrics** (Zhang et al., NeurIPS 2024 datasets track,
https://arxiv.org/abs/2402.11846), the convention the unlearning field reports in:

* **UA**, unlearning accuracy: the fraction of images of prompts naming the edited concept that
  no longer show it;
* **IRA**, in-domain retain accuracy: the fraction of images of prompts naming *other* concepts of
  the same kind (other artists) that still show their concept;
* **CRA**, cross-domain retain accuracy: the fraction of images of prompts of another kind that
  still show what they ask for.

UnlearnCanvas reads images with classifiers trained on its own dataset. loco reads them with
what each model has (:func:`judge`): the model organism's attribute scorer (its wing supplies the
judge: style for UA/IRA; shape, colour and a flat background for CRA), or, on real models, CLIP
zero-shot classification (loco's choice of label texts: ``"a painting in the style of <artist>"``
among the edited and the in-domain artists; ``"a photo of a <class>"`` among the MS-COCO classes of
the cross-domain prompts). Beside them: mean CLIP-score of the edited concept's images against
their prompts (T) and against the concept-free targets (T'), as the paper's Fig. 8.

**Table 1** (App. L): mean CLIP-score of generic prompts (80 MS-COCO classes x 4 places) for the
original model and the models edited by LocoEdit and DiffQuickFix, for a style and an object edit
(:func:`robustness_table`; :func:`generic_prompts` with a ``profile``: ``"paper"`` = all 320,
``"smoke"`` = a seeded sample of 8). A model with its own notion of unrelated prompts (the
organism: every scene not named by the edit) registers it on its card.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from . import settings
from .errors import LocoError

PROFILES = {"smoke": 8, "paper": None}  # generic prompts per profile (None: all 320)
ARTIST_LABEL = "a painting in the style of {}"  # loco's choice of zero-shot label texts
CLASS_LABEL = "a photo of a {}"


@dataclass
class Groups:
    """The prompts an edit of ``concept`` is judged on."""

    concept: str
    erased: list  # prompts naming the concept
    targets: list  # their concept-free counterparts (T')
    in_domain: list  # prompts naming other concepts of the same kind
    in_labels: list  # the concept each in-domain prompt names
    cross_domain: list  # prompts of another kind
    cross_labels: list  # what each cross-domain prompt asks for (a class name; None where the judge reads the prompt)

    def prompts(self) -> list:
        return self.erased + self.in_domain + self.cross_domain

    def group_of_each(self) -> list:
        return ["erased"] * len(self.erased) + ["in-domain"] * len(self.in_domain) + ["cross-domain"] * len(self.cross_domain)

    def summary(self):
        import pandas as pd

        return pd.DataFrame([
            {"group": "erased (UA)", "prompts": len(self.erased), "example": self.erased[0] if self.erased else ""},
            {"group": "in-domain (IRA)", "prompts": len(self.in_domain), "example": self.in_domain[0] if self.in_domain else ""},
            {"group": "cross-domain (CRA)", "prompts": len(self.cross_domain), "example": self.cross_domain[0] if self.cross_domain else ""},
        ])


def generic_prompts(profile: str = "smoke", model=None, exclude=(), seed: int = 0) -> list[str]:
    """App. L's unrelated prompts for ``profile`` (``"smoke"``: a seeded sample of 8; ``"paper"``:
    all). A model whose card has its own (the organism) gets those, minus any naming ``exclude``."""
    from .prompts import load_robustness
    from .registry import card

    if profile not in PROFILES:
        raise LocoError(f"unknown profile {profile!r}: choose {' or '.join(PROFILES)}")
    c = card(model)
    if c is not None and c.generic_prompts is not None:
        prompts = c.generic_prompts(exclude)
    else:
        prompts = [p for p in load_robustness() if not any(_names(p, x) for x in exclude)]
    n = PROFILES[profile]
    if n is None or n >= len(prompts):
        return list(prompts)
    return random.Random(seed).sample(list(prompts), n)


def _names(prompt: str, concept: str) -> bool:
    import re

    return re.search(r"(?<!\w)" + re.escape(concept.strip().lower()) + r"(?!\w)", prompt.lower()) is not None


def prompt_groups(model, concept: str | None = None, profile: str = "smoke", n_per_concept: int | None = None,
                  others=None) -> Groups:
    """The style groups of ``model``: App. K.1's prompts of ``concept`` (erased) and of the other
    artists (in-domain), and unrelated prompts (cross-domain: the model's style-free controls when
    its prompt file has them, as the organism's does, else :func:`generic_prompts` of ``profile``).
    ``n_per_concept`` keeps the first prompts of each artist; ``others`` names the in-domain artists
    (default: every other artist the model's prompts know)."""
    from .prompts import default_prompts, load_artists, load_controls
    from .registry import card

    c = card(model)
    organism = c is not None and c.artist_prompts is not None
    names = artists(model)
    lower = {n.lower(): n for n in names}
    concept = names[0] if concept is None else concept
    if concept.strip().lower() not in lower:
        raise LocoError(f"unknown artist {concept!r} for {model}: choose one of {', '.join(names)}")
    concept = lower[concept.strip().lower()]
    if others is None:
        others = [n for n in names if n != concept]
    else:
        others = [settings.as_prompt_list(o, "artist")[0] for o in ([others] if isinstance(others, str) else others)]
        bad = [o for o in others if o.strip().lower() not in lower or o.strip().lower() == concept.lower()]
        if bad:
            raise LocoError(f"{bad[0]!r} is not another artist of {model}: choose from {', '.join(n for n in names if n != concept)}")
        others = [lower[o.strip().lower()] for o in others]
    take = (lambda xs: list(xs)) if n_per_concept is None else (lambda xs: list(xs)[:n_per_concept])
    mine = load_artists(concept, model=model)
    erased, targets = take(mine.originals), take(mine.targets)
    in_domain, in_labels = [], []
    for o in others:
        ps = take(load_artists(o, model=model).originals)
        in_domain += ps
        in_labels += [o] * len(ps)
    controls = load_controls(default_prompts("style", model)) if organism else {}
    if "style-free" in controls:
        cross = controls["style-free"]
        labels = [None] * len(cross)
    else:
        cross = generic_prompts(profile, model, exclude=[concept, *others])
        labels = [_class_of(p) for p in cross]
    return Groups(concept, erased, targets, in_domain, in_labels, list(cross), labels)


def artists(model=None) -> list[str]:
    """The artists ``model``'s prompts know: App. K.1's, or the organism's three styles."""
    from .prompts import artist_names
    from .registry import card

    c = card(model)
    if c is None or c.artist_prompts is None:
        return artist_names()
    names = []
    for candidate in ("van gogh", "monet", "picasso"):
        try:
            card(model).artist_prompts(candidate, model)
        except LocoError:
            continue
        names.append(candidate)
    return names


def _class_of(prompt: str) -> str | None:
    from .prompts import robustness_grid

    grid = robustness_grid()
    found = [c for c in grid.classes if _names(prompt, c)]
    return max(found, key=len) if found else None


# -- judging images ---------------------------------------------------------------------------------


class ClipJudge:
    """Zero-shot CLIP classification of images (real models): which artist among ``artists``,
    which class among ``classes``."""

    def __init__(self, scorer, artists, classes):
        self.scorer, self.artists, self.classes = scorer, list(artists), [c for c in classes if c is not None]

    def _pick(self, images, labels, template) -> list:
        img = self.scorer.image_embeddings(images)
        txt = self.scorer.text_embeddings([template.format(label) for label in labels])
        return [labels[i] for i in (img @ txt.T).argmax(dim=-1).tolist()]

    def shows_concept(self, images, prompts, concepts) -> np.ndarray:
        """Per image: is the artist CLIP picks the one the prompt names (``concepts``)?"""
        return np.array([a == c for a, c in zip(self._pick(images, self.artists, ARTIST_LABEL), concepts)], dtype=bool)

    def shows_prompt(self, images, prompts, labels) -> np.ndarray:
        """Per image: is the class CLIP picks the prompt's (``labels``)?"""
        if not self.classes:
            return np.zeros(len(images), dtype=bool)
        return np.array([a == c for a, c in zip(self._pick(images, self.classes, CLASS_LABEL), labels)], dtype=bool)


def judge(scorer, groups: Groups):
    """The judge of ``groups``' images: the scorer's own (``scorer.unlearning_judge()``, e.g. the
    organism's attribute scorer) or :class:`ClipJudge`."""
    own = getattr(scorer, "unlearning_judge", None)
    if own is not None:
        return own()
    return ClipJudge(scorer, [groups.concept] + sorted(set(groups.in_labels)), sorted(set(filter(None, groups.cross_labels))))


@dataclass
class Baselines:
    """Edits judged side by side on the same prompts and seeds: :attr:`table` has one row per model
    (UA, IRA, CRA, CLIP vs T and T' of the erased prompts, n images per group)."""

    groups: Groups
    seeds: list
    table: object
    comparison: object = field(repr=False, default=None)
    per_image: object = field(repr=False, default=None)

    def to_json(self) -> list[dict]:
        return [{"model": str(k), **{c: (None if v != v else float(v)) for c, v in row.items()}}
                for k, row in self.table.iterrows()]

    def images(self, label: str, group: str = "erased", n: int | None = None, seed_index: int = 0) -> list:
        """Images of one group's prompts under model ``label`` (one seed)."""
        order = self.groups.group_of_each()
        start = order.index(group) if group in order else 0
        count = order.count(group)
        return self.comparison.images(label, start, count if n is None else min(n, count), seed_index)


def baselines(pipe, edits: dict, groups: Groups, *, scorer=None, seeds=(0,), steps: int | None = None,
              guidance: float | None = None, batch_size: int = 16, progress: bool | None = None) -> Baselines:
    """Generate ``groups``' prompts with every seed under each of ``edits`` (``{label: Edit or
    None}``, None = the unedited model) and judge them (see the module docstring)."""
    import pandas as pd

    from .evaluate import compare

    if not edits:
        raise LocoError("no models to compare: give {label: Edit or None}")
    if not groups.erased:
        raise LocoError(f"no prompts name {groups.concept!r}: nothing to judge the edit on")
    seeds = settings.seeds(seeds)
    prompts = groups.prompts()
    targets = groups.targets + groups.in_domain + groups.cross_domain
    comp = compare(pipe, prompts, targets, edits, seeds=seeds, groups=groups.group_of_each(), scorer=scorer,
                   steps=steps, guidance=guidance, batch_size=batch_size, progress=progress)
    j = judge(scorer, groups)
    k = len(seeds)
    rep = lambda xs: [x for x in xs for _ in range(k)]
    ne, ni = len(groups.erased) * k, len(groups.in_domain) * k
    rows, per_image = {}, {}
    for label, gen in comp.generations.items():
        ims = gen.images
        e_ims, i_ims, c_ims = ims[:ne], ims[ne : ne + ni], ims[ne + ni :]
        shown = j.shows_concept(e_ims, rep(groups.erased), [groups.concept] * ne)
        kept_in = j.shows_concept(i_ims, rep(groups.in_domain), rep(groups.in_labels)) if ni else np.array([])
        kept_x = j.shows_prompt(c_ims, rep(groups.cross_domain), rep(groups.cross_labels)) if len(c_ims) else np.array([])
        clip_t = comp.table[("CLIP vs T", label)].to_numpy()[:ne]
        clip_tt = comp.table[("CLIP vs T'", label)].to_numpy()[:ne]
        rows[label] = {"UA": float(np.mean(~shown)), "IRA": float(np.mean(kept_in)) if ni else float("nan"),
                       "CRA": float(np.mean(kept_x)) if len(c_ims) else float("nan"),
                       "CLIP vs T": float(np.mean(clip_t)), "CLIP vs T'": float(np.mean(clip_tt))}
        per_image[label] = np.concatenate([~shown, kept_in, kept_x]).astype(bool)
    table = pd.DataFrame(rows).T.rename_axis("model")
    table.attrs["n"] = {"erased": ne, "in-domain": ni, "cross-domain": len(groups.cross_domain) * k}
    return Baselines(groups, seeds, table, comp, per_image)


# -- Table 1 ------------------------------------------------------------------------------------------


def retention(pipe, edits: dict, model, concepts, *, scorer=None, seeds=(0,), n_per_concept: int | None = None,
              profile: str = "smoke", steps: int | None = None, guidance: float | None = None, batch_size: int = 16,
              progress: bool | None = None):
    """For the multi-concept question: under each of ``edits`` (``{label: Edit or None}``), the
    fraction of each artist's images that still show the artist (one column per artist of
    ``concepts``), and the cross-domain prompts' CRA. Every image is generated once per model."""
    import pandas as pd

    from .evaluate import compare

    concepts = settings.as_prompt_list(concepts, "artist")
    groups = prompt_groups(model, concepts[0], profile, n_per_concept, others=concepts[1:] or None) \
        if len(concepts) > 1 else prompt_groups(model, concepts[0], profile, n_per_concept)
    if len(concepts) == 1:
        groups.in_domain, groups.in_labels = [], []
    prompts = groups.erased + groups.in_domain + groups.cross_domain
    labels = [groups.concept] * len(groups.erased) + groups.in_labels
    seeds = settings.seeds(seeds)
    comp = compare(pipe, prompts, None, edits, seeds=seeds, scorer=scorer, steps=steps, guidance=guidance,
                   batch_size=batch_size, progress=progress)
    j = judge(scorer, groups)
    k = len(seeds)
    rep = lambda xs: [x for x in xs for _ in range(k)]
    n = len(labels) * k
    rows = {}
    for label, gen in comp.generations.items():
        shown = j.shows_concept(gen.images[:n], rep(prompts[: len(labels)]), rep(labels))
        row = {c: float(np.mean([s for s, lab in zip(shown, rep(labels)) if lab == c])) for c in dict.fromkeys(labels)}
        cross = j.shows_prompt(gen.images[n:], rep(groups.cross_domain), rep(groups.cross_labels))
        row["CRA"] = float(np.mean(cross)) if len(cross) else float("nan")
        rows[label] = row
    table = pd.DataFrame(rows).T.rename_axis("model")
    table.attrs["n"] = {"per artist": (len(groups.erased)) * k, "cross-domain": len(groups.cross_domain) * k}
    return table


def robustness_table(pipe, edits: dict, prompts, *, scorer=None, seeds=(0,), steps: int | None = None,
                     guidance: float | None = None, batch_size: int = 16, progress: bool | None = None,
                     original: str = "No Editing"):
    """Table 1 (App. L) in the paper's layout: mean CLIP-score of ``prompts`` (each against itself)
    for the original model and each edited one. ``edits``: ``{column (e.g. "style"): {row (e.g.
    "LocoEdit"): Edit}}`` or ``{column: {row: list of prompts, ...}}``: a column may carry its own
    prompts under the key ``"prompts"`` (the organism's unrelated prompts depend on the edit). The
    original model's row is computed once per prompt list. Returns ``(table, per_image)``."""
    import pandas as pd

    from .clip_score import clip_score
    from .generate import generate

    seeds = settings.seeds(seeds)
    if not edits:
        raise LocoError("no edits: give {'style': {'LocoEdit': edit, ...}, ...}")
    cache, cells, rows_order, per_image = {}, {}, [original], []

    def run(ps, edit):
        rep = [p for p in ps for _ in seeds]
        reps = [s for _ in ps for s in seeds]
        go = lambda: generate(pipe, rep, seeds=reps, steps=steps, guidance=guidance, batch_size=batch_size, progress=progress)
        if edit is None:
            gen = go()
        else:
            with edit.applied(pipe):
                gen = go()
        return rep, reps, clip_score(gen.images, rep, scorer).cpu().numpy()

    for column, models in edits.items():
        models = dict(models)
        ps = settings.prompts(pipe, models.pop("prompts", None) or prompts, "generic prompt")
        key = tuple(ps)
        if key not in cache:
            cache[key] = run(ps, None)
        rep, reps, base = cache[key]
        cells[(original, column)] = float(np.mean(base))
        per_image += [{"column": column, "model": original, "prompt": p, "seed": s, "clip": float(v)}
                      for p, s, v in zip(rep, reps, base)]
        for row, edit in models.items():
            if row not in rows_order:
                rows_order.append(row)
            _, _, sc = run(ps, edit)
            cells[(row, column)] = float(np.mean(sc))
            per_image += [{"column": column, "model": row, "prompt": p, "seed": s, "clip": float(v)}
                          for p, s, v in zip(rep, reps, sc)]
    table = pd.DataFrame(index=rows_order, columns=list(edits), dtype=float)
    for (row, column), v in cells.items():
        table.loc[row, column] = v
    return table.rename_axis("model"), pd.DataFrame(per_image)
