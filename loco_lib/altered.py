"""Altered inputs (paper Sec. 5.1.1): some cross-attention layers read another prompt.

A set C' of cross-attention layers receives the text embedding c' of a target prompt T' while every
other layer receives c of the original prompt T. With classifier-free guidance only the
conditional half of the batch changes; the unconditional branch is untouched (the paper's
"Altered Model" eps(z_t, c, c', t) combined with the clean eps(z_t, t)).

Per-sample layer sets: sample i of a batch may alter its own set of layers (LocoGen's sweep batches
many windows at once).

Text paths outside cross-attention (off by default, ``swap_text_paths=True`` to alter them too):

* SD-XL feeds the pooled embedding of the second text encoder into the time embedding. By default
  it stays the original prompt's, so only the chosen cross-attention layers see T'.
* DeepFloyd IF projects the T5 output with ``encoder_hid_proj`` before its attention layers; the
  substitute c' goes through the same projection (inside the layer's own module, as in a plain
  run). IF also pools the raw T5 output into the time embedding (``add_embedding``); by default it
  stays the original prompt's.

Altering *every* layer and the text paths reproduces a plain run of T' exactly (tested).

The mechanism: one :class:`~loco_lib.hooks.Patch` per altered layer on its text site (the states
its attention processor reads), only in the conditional rows of the samples that alter it.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .errors import LocoError
from .families.registry import denoiser, denoiser_family
from .hooks import FromSample, Patch, hooks, text_mask_site, text_site, unet_input
from .layers import cross_attention_layers, parse_layers


def _is_per_sample(layers) -> bool:
    return (
        isinstance(layers, (list, tuple))
        and len(layers) > 0
        and all(x is None or isinstance(x, (list, tuple, set, frozenset, str)) for x in layers)
    )


def layer_mask(layers, n_samples: int, n_layers: int) -> torch.Tensor:
    """A ``[n_samples, n_layers]`` boolean mask from one layer spec or one spec per sample."""
    specs = list(layers) if _is_per_sample(layers) else [layers] * n_samples
    if len(specs) != n_samples:
        raise LocoError(f"{len(specs)} layer sets given for {n_samples} samples")
    mask = torch.zeros(n_samples, n_layers, dtype=torch.bool)
    for i, spec in enumerate(specs):
        mask[i, parse_layers(spec, n_layers)] = True
    return mask


@torch.no_grad()
def altered_patches(pipe_or_unet, alt, layers, swap_text_paths: bool = False, donors=None,
                    joint_text: str = "attention") -> list[Patch]:
    """The patches that give ``layers`` the text ``alt`` (a :class:`~loco_lib.text.TextCondition`, one row
    per sample) in the conditional branch; ``layers``: one layer spec or one per sample.

    A joint-attention denoiser (its family's ``text_from_run``) needs ``donors``: for each sample,
    the index (in the same pipeline call) of a sample running ``alt``'s prompt with the same seed,
    whose text input at each altered layer (and, with ``swap_text_paths``, whose pooled text) the
    sample takes (:func:`loco_lib.generate.sample_batch` adds these donors); ``joint_text``: what of
    the donor's text a layer takes (``"attention"``: its attention's text input; ``"stream"``: the
    text stream entering its block)."""
    family, model = denoiser_family(pipe_or_unet), denoiser(pipe_or_unet)
    check_joint_text(family, joint_text)
    all_layers = family.text_layers(model)
    mask = layer_mask(layers, len(alt), len(all_layers))
    if family.text_from_run:
        if donors is None:
            raise LocoError(f"in a {family.name} transformer a layer's text input depends on the run: alter layers "
                            "through loco_lib.generate (alt_prompts=..., layers=...), which runs the alt prompts beside")
        return donor_patches(family, model, all_layers, mask, donors, swap_text_paths, joint_text, alt.embeds.shape[1])
    states = family.text_states(model, alt.embeds) if mask.any() else None  # IF: through encoder_hid_proj
    bias = family.text_mask(model, alt.mask) if mask.any() else None  # a DiT's padding mask goes with the text
    patches = []
    for layer in all_layers:
        samples = mask[:, layer.index].nonzero().flatten().tolist()
        if samples:
            patches.append(Patch(text_site(layer), states, samples=samples))
            if bias is not None:
                patches.append(Patch(text_mask_site(layer), bias, samples=samples))
    if swap_text_paths:  # SD-XL's pooled text into the time embedding, IF's pooled T5 output
        patches += family.side_paths(model, alt)
    return patches


JOINT_TEXT = ("attention", "stream")


def check_joint_text(family, joint_text: str) -> None:
    """``joint_text`` is one of :data:`JOINT_TEXT`, and ``"stream"`` only where the text is a stream."""
    if joint_text not in JOINT_TEXT:
        raise LocoError(f"joint_text is 'attention' or 'stream', not {joint_text!r}")
    if joint_text == "stream" and not family.text_from_run:
        raise LocoError(f"a {family.name} denoiser has no text stream: joint_text='stream' is for joint-attention transformers")


def donor_patches(family, model, all_layers, mask, donors, swap_text_paths: bool, joint_text: str = "attention",
                  text_length: int = 0) -> list[Patch]:
    """Per altered layer, one :class:`~loco_lib.hooks.FromSample` patch per donor: the samples that
    alter the layer read there what their donor reads (conditional branch, same step)."""
    if len(donors) != mask.shape[0]:
        raise LocoError(f"{len(donors)} donors given for {mask.shape[0]} samples")
    patches = []
    for layer in all_layers:
        by_donor: dict[int, list[int]] = {}
        for i in mask[:, layer.index].nonzero().flatten().tolist():
            by_donor.setdefault(int(donors[i]), []).append(i)
        site, tokens = family.donor_site(layer, joint_text, text_length)
        patches += [Patch(site, FromSample(d), samples=own, tokens=tokens) for d, own in by_donor.items()]
    if swap_text_paths:
        by_donor = {}
        for i, d in enumerate(donors):
            if d is not None:
                by_donor.setdefault(int(d), []).append(i)
        patches += [Patch(site, FromSample(d), samples=own) for site in family.donor_paths(model)
                    for d, own in by_donor.items()]
    return patches


@contextmanager
def altered_inputs(pipe, alt, layers, swap_text_paths: bool = False, guidance: bool | None = None):
    """Context manager: inside it, ``pipe`` runs with ``layers`` reading ``alt`` instead of the prompt.

    ``alt`` is a :class:`~loco_lib.text.TextCondition` with one row per sample of the batch;
    ``layers`` is one layer spec (``[8, 9]``, ``"8,9"``, ``"all"``) or a list with one spec per sample.
    ``guidance``: whether the pipeline runs classifier-free guidance (UNet batch ``[uncond, cond]``);
    ``None`` infers it from the batch size, which is ambiguous only when ``alt`` has the wrong
    number of rows, so pass it when you know it (``generate`` does). Yields the layer map.
    """
    patches = altered_patches(pipe, alt, layers, swap_text_paths)
    with hooks(pipe, patches=patches, n_samples=len(alt), guidance=guidance):
        yield cross_attention_layers(pipe)


@torch.no_grad()
def swapped_tokens(pipe, originals, targets, subject: str, which: str) -> Patch:
    """Paper App. M's token swap: the text embedding of ``originals`` takes ``targets``' values at some
    token positions (:func:`loco_lib.tokens.token_mask`: the subject's tokens, those after it, both,
    or all), before the UNet reads it (every layer and, for IF, the pooled text path see the result).

    The subjects of original and target must have the same number of tokens, so positions line up
    (true for 'van gogh' -> 'a painting' on the organisms). Returns the conditional-branch patch.
    """
    from .text import encode
    from .tokens import TOKEN_SETS, token_mask

    if which not in TOKEN_SETS:  # before any encoding
        raise LocoError(f"unknown token set {which!r}: use one of {', '.join(TOKEN_SETS)}")
    alt = encode(pipe, targets)
    if len(alt) != len(originals):
        raise LocoError(f"{len(alt)} targets given for {len(originals)} prompts")
    mask = token_mask(pipe, originals, subject, which, alt.embeds.shape[1])
    return Patch(unet_input("encoder_hidden_states"), alt.embeds, tokens=mask)
