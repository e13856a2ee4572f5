"""App. M's token swap image by image: which text tokens carry the style, seed by seed.

The paper explains LocoEdit's failure on DeepFloyd IF by T5's bidirectional attention: the style
would also sit in the tokens *after* the subject, where an edit of the subject's last token cannot
reach it (Sec. 6.2, App. M). The organism's report tests it with a token swap
(:func:`loco_lib.organism.protocol.token_swap`): a style prompt generated with the text states at
some positions taken from its style-free target (the subject's tokens, those after it, both, or
all; :data:`loco_lib.tokens.TOKEN_SETS`), read off by the organism's scorer, one fraction per set.

:func:`swap_images` runs the same swap and keeps what the scorer reads in every image, so that
:func:`loco_lib.per_image.swap_seeds` can give each fraction's interval and each seed's own.
"""
from __future__ import annotations

import torch

from .. import settings
from ..tokens import TOKEN_SETS


@torch.no_grad()
def swap_images(model: str, scorer, seeds=(0, 1, 2, 3), steps=None, subject: str = "van gogh") -> dict:
    """Every style prompt of the organism ``model`` (a shipped organism's name, or one of
    :data:`~loco_lib.organism.variants.BESIDE` by its folder's name, so that a kept result is keyed
    by the name and never by a path) on every seed, generated once per token set of
    :data:`~loco_lib.tokens.TOKEN_SETS` with those positions' text states taken from the prompt's
    style-free target. Returns ``{"model", "subject", "prompts", "images": [[prompt index, seed],
    ...], "sets": {which: {readout: [0/1 per image]}}}``: does the image show what its (original)
    prompt asks?"""
    from ..altered import swapped_tokens
    from ..generate import progress_bars, sample_batch
    from ..models import load
    from ..prompts import default_prompts, load_pairs
    from ..text import encode
    from . import variants
    from .stability import _matches

    if model in variants.BESIDE:
        pipe, where = variants.load(model), str(variants.folder(model))
    else:
        pipe, where = load(model, progress=False), model
    pairs = load_pairs(default_prompts("style", where))
    originals, targets = list(pairs.originals), list(pairs.targets)
    seeds, steps, guidance = settings.seeds(seeds), settings.steps(pipe, steps), settings.guidance(pipe, None)
    cond = encode(pipe, originals)
    out = {"model": str(model), "subject": subject, "prompts": originals,
           "images": [[i, int(s)] for s in seeds for i in range(len(originals))], "sets": {}}
    with progress_bars(pipe, False):
        for which in TOKEN_SETS:
            patch = swapped_tokens(pipe, originals, targets, subject, which)
            images = []
            for s in seeds:
                images += sample_batch(pipe, cond, [s] * len(originals), steps=steps, guidance=guidance, patches=[patch])
            out["sets"][which] = _matches(scorer, images, [originals[i] for i, _ in out["images"]])
    return out
