"""Measure a model, edited or not, on an attribute's prompts (paper Sec. 6: Fig. 8, Table 1).

The paper judges an edit by CLIP-score of the edited model's images against the original prompts
(should fall: the attribute is gone) and against the target prompts (should rise). :func:`evaluate`
generates every prompt with every seed and reports both means. With the organism's
:class:`~loco_lib.scorer.AttributeScorer` it adds the readouts: per attribute (shape, colour, style),
the fraction of images that show what the original prompt asks for (``accuracy``) and what the
target prompt asks for (``accuracy_target``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import LocoError
from .generate import generate
from .text import as_prompt_list


@dataclass
class Evaluation:
    prompts: list  # one per image
    targets: list | None
    seeds: list  # one per image
    clip_score: float
    clip_score_target: float | None
    accuracy: dict | None = None
    accuracy_target: dict | None = None
    images: list = field(default_factory=list, repr=False)
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.prompts)

    def to_json(self) -> dict:
        out = {"clip_score": self.clip_score, "clip_score_target": self.clip_score_target, "n": self.n}
        if self.accuracy is not None:
            out["accuracy"] = self.accuracy
        if self.accuracy_target is not None:
            out["accuracy_target"] = self.accuracy_target
        return out


def evaluate(pipe, prompts, targets=None, seeds=(0,), *, scorer=None, steps: int | None = None,
             guidance: float | None = None, batch_size: int = 16, progress: bool | None = None) -> Evaluation:
    """Generate each prompt with each seed and score the images.

    ``prompts``: a list of prompts or a :class:`~loco_lib.prompts.PromptSet` (then ``targets`` default
    to its targets). ``scorer``: a :class:`~loco_lib.clip_score.ClipScorer`; readouts are added when it
    has ``accuracy`` (the organism's scorer).
    """
    from .clip_score import clip_score

    if hasattr(prompts, "originals"):
        targets = list(prompts.targets) if targets is None else targets
        prompts = list(prompts.originals)
    prompts = as_prompt_list(prompts)
    if targets is not None:
        targets = as_prompt_list(targets, "target prompt")
        if len(targets) != len(prompts):
            raise LocoError(f"{len(targets)} target prompts for {len(prompts)} prompts")
    seeds = [int(s) for s in ([seeds] if isinstance(seeds, int) else seeds)]
    if not seeds:
        raise LocoError("no seeds given")
    rep = [p for p in prompts for _ in seeds]
    rep_t = [t for t in targets for _ in seeds] if targets is not None else None
    rep_s = [s for _ in prompts for s in seeds]
    gen = generate(pipe, rep, seeds=rep_s, steps=steps, guidance=guidance, batch_size=batch_size, progress=progress)
    cs = float(np.mean(clip_score(gen.images, rep, scorer).numpy()))
    cs_t = float(np.mean(clip_score(gen.images, rep_t, scorer).numpy())) if rep_t is not None else None
    acc = acc_t = None
    if scorer is not None and hasattr(scorer, "accuracy"):
        acc = scorer.accuracy(gen.images, rep)
        acc_t = scorer.accuracy(gen.images, rep_t) if rep_t is not None else None
    return Evaluation(rep, rep_t, rep_s, cs, cs_t, acc, acc_t, gen.images, gen.seconds)
