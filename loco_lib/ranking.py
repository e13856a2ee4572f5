"""Ranking text layers by the attention contribution of the knowledge tokens (Zarei et al., 2025).

Zarei et al. ("Localizing Knowledge in Diffusion Transformers", NeurIPS 2025,
https://github.com/ArmanZarei/DiT-Knowledge-Localization) localize a piece of knowledge in a
diffusion transformer without generating any altered image: they rank the blocks by how much the
knowledge tokens contribute to each block's cross-attention output and take the top K. Their default
score (``m_mult_v_mult_o`` in their code) of layer b for one prompt at one denoising step is

    C_b = mean over image tokens i of || W_o concat_h( sum over knowledge tokens j of A^h[i, j] v^h_j ) ||_2

with ``A`` the softmax attention of head h, ``v`` the values, ``W_o`` the output projection (with its
bias), on the conditional branch of a guided run; C_b is then averaged over prompts and steps. loco
computes the same score on any family's text layers (UNets included: their cross-attention layers,
and IF's added-K/V attention over its text keys), through one record per layer at its
``"attention"`` site (:mod:`loco_lib.hooks`); the attention itself is recomputed by the family
(:meth:`~loco_lib.families.base.DenoiserFamily.text_attention`) with the softmax materialised.

The knowledge tokens are the subject's tokens in the prompt (:func:`loco_lib.tokens.subject_tokens`:
"van gogh" in "a house in the style of van gogh"); the ranking is a second localizer beside
LocoGen's windows (:func:`agreement`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from . import parallel, settings
from .errors import LocoError
from .families.registry import denoiser_family
from .hooks import Record, attention_site, hooks
from .layers import cross_attention_layers, format_layers
from .text import encode
from .tokens import subject_tokens


def contribution(attn, hidden, text, mask, knowledge: torch.Tensor, family) -> torch.Tensor:
    """C_b of each row of one call of a text layer: ``knowledge`` is a boolean ``[rows, L]`` mask of
    the knowledge tokens; returns ``[rows]``."""
    probs, values = family.text_attention(attn, hidden, text, mask)
    heads = probs.shape[0] // hidden.shape[0]
    keep = knowledge.to(probs.device, probs.dtype).repeat_interleave(heads, dim=0)[:, None, :]
    mixed = torch.bmm(probs * keep, values.to(probs.dtype)).to(values.dtype)
    out = attn.to_out[0](attn.batch_to_head_dim(mixed))
    return out.float().norm(dim=-1).mean(dim=1)


@dataclass
class LayerRanking:
    """Scores ``[n_prompts, n_seeds, n_layers]`` (each averaged over the denoising steps) of the
    text layers of a model for prompts and their knowledge tokens."""

    layers: list
    scores: np.ndarray
    prompts: list
    subjects: list
    seeds: list
    settings: dict = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        """The per-layer score averaged over prompts and seeds (Zarei et al.'s aggregate)."""
        return self.scores.mean(axis=(0, 1))

    def order(self) -> list[int]:
        """Layer indices, highest contribution first (ties: lower index first)."""
        return [int(i) for i in np.argsort(-self.mean, kind="stable")]

    def top(self, k: int) -> list[int]:
        """The ``k`` top-ranked layers, in layer order."""
        if not 1 <= k <= len(self.layers):
            raise LocoError(f"k is between 1 and {len(self.layers)}, got {k}")
        return sorted(self.order()[:k])

    def table(self):
        import pandas as pd

        rank = {layer: r + 1 for r, layer in enumerate(self.order())}
        return pd.DataFrame({"layer": [la.index for la in self.layers], "name": [la.name for la in self.layers],
                             "block": [la.block for la in self.layers], "contribution": self.mean,
                             "rank": [rank[la.index] for la in self.layers]})

    def plot(self, ax=None, window=None, title: str | None = None):
        """Bars of the mean contribution per layer; the layers of a LocoGen ``window`` in another colour."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.0, 0.3 * len(self.layers)), 2.6))
        inside = set(window or ())
        spread = self.scores.reshape(-1, len(self.layers)).std(axis=0)
        colours = ["tab:orange" if i in inside else "tab:blue" for i in range(len(self.layers))]
        ax.bar(range(len(self.layers)), self.mean, yerr=spread, color=colours, capsize=2)
        ax.set_xlabel("text layer")
        ax.set_ylabel("contribution")
        ax.set_xticks(range(len(self.layers)))
        if title:
            ax.set_title(title)
        return ax


def rank_layers(pipe, prompts, subjects, *, seeds=0, steps=None, guidance=None, size=None, batch_size=8,
                progress=None) -> LayerRanking:
    """Zarei et al.'s attention-contribution score of every text layer of ``pipe`` for ``prompts``,
    whose knowledge tokens are those of ``subjects`` (one per prompt, or one for all).

    Each prompt is sampled once per seed (``seeds``: an int or a list, the same for every prompt)
    with classifier-free guidance; the score is read on the conditional rows at every step.
    """
    from .generate import progress_bars, progress_default, sample_batch

    prompts = settings.prompts(pipe, prompts)
    subjects = [subjects] * len(prompts) if isinstance(subjects, str) else list(subjects)
    if len(subjects) != len(prompts):
        raise LocoError(f"{len(subjects)} subjects given for {len(prompts)} prompts")
    seeds = [seeds] if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds:
        raise LocoError("give at least one seed")
    steps = settings.steps(pipe, steps)
    guidance = settings.guidance(pipe, guidance)
    size = settings.size(size)
    batch_size = settings.batch_size(batch_size, 8)
    progress = progress_default() if progress is None else progress
    layers = cross_attention_layers(pipe)
    family = denoiser_family(pipe)
    family.text_attention_available(pipe)  # refused before any sampling where a family cannot yet
    cond = encode(pipe, prompts)
    length = cond.embeds.shape[1]
    knowledge = torch.zeros(len(prompts), length, dtype=torch.bool)
    for i, (p, s) in enumerate(zip(prompts, subjects)):
        knowledge[i, subject_tokens(pipe, p, s)] = True
    jobs = [(p, s) for p in range(len(prompts)) for s in range(len(seeds))]
    scores = np.zeros((len(prompts), len(seeds), len(layers)))
    for idx in tqdm(parallel.batches(len(jobs), batch_size), desc="ranking", disable=not progress, leave=False):
        rows = [jobs[i][0] for i in idx]
        rows_knowledge = knowledge[rows]

        def reduce(attn, hidden, text, mask, samples, _k=rows_knowledge):
            return contribution(attn, hidden, text, mask, _k[samples], family)

        records = [Record(attention_site(layer), reduce=reduce) for layer in layers]
        with progress_bars(pipe, False), hooks(pipe, records=records, n_samples=len(idx), guidance=guidance > 1.0) as trace:
            sample_batch(pipe, cond.select(rows), [seeds[jobs[i][1]] for i in idx], steps=steps, guidance=guidance,
                         size=size, output_type="pt")
        for k, layer in enumerate(layers):
            per_step = trace.stacked(attention_site(layer))  # [steps, rows]
            for r, i in enumerate(idx):
                scores[jobs[i][0], jobs[i][1], k] = float(per_step[:, r].mean())
    used = {"steps": steps, "guidance": guidance, "size": size}
    return LayerRanking(layers, scores, prompts, subjects, seeds, used)


def agreement(ranking: LayerRanking, window) -> dict:
    """How the ranking agrees with a LocoGen ``window`` (layer indices) of m layers: the overlap of
    its top-m layers with the window, the window's best and worst rank, and the overlap a random
    choice of m layers would have on average (m * m / n)."""
    window = sorted(int(i) for i in window)
    n, m = len(ranking.layers), len(window)
    if not window or any(not 0 <= i < n for i in window):
        raise LocoError(f"a window is a non-empty list of layers in 0..{n - 1}, got {window}")
    rank = {layer: r + 1 for r, layer in enumerate(ranking.order())}
    top = ranking.top(m)
    return {"window": format_layers(window), "top": format_layers(top), "overlap": len(set(top) & set(window)), "m": m,
            "chance": m * m / n, "best rank": min(rank[i] for i in window), "worst rank": max(rank[i] for i in window),
            "layers": n}
