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
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .errors import LocoError
from .intervene import Controller, conditional_rows, intervene, unet_text_input
from .layers import parse_layers


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


class AlteredInputs(Controller):
    """Controller that feeds ``alt`` (a :class:`~loco_lib.text.TextCondition`) to chosen layers.

    ``share_identical_rows``: evaluate bitwise-identical rows of a UNet batch once and copy the
    result (exact: identical inputs give identical outputs). In a LocoGen sweep the unconditional
    rows of one prompt and seed are identical across windows at the first step (same z_T); after
    that each window's latent has moved, so its unconditional prediction must be computed again.
    ``counter``: a dict whose ``calls``, ``rows`` and ``uncond_rows`` entries count what the UNet
    actually evaluated.
    """

    def __init__(self, alt, layers, swap_text_paths: bool = False, guidance: bool | None = None,
                 share_identical_rows: bool = False, counter: dict | None = None):
        self.alt = alt
        self.guidance = guidance
        self.layers_spec = layers
        self.swap_text_paths = swap_text_paths
        self.share_identical_rows = share_identical_rows
        self.counter = counter
        self._state = None

    def setup(self, unet, layers):
        super().setup(unet, layers)
        self.unet = unet
        self.mask = layer_mask(self.layers_spec, len(self.alt), len(layers))
        handles = []
        if self.swap_text_paths and getattr(unet, "add_embedding", None) is not None and unet.config.addition_embed_type == "text":
            handles.append(unet.add_embedding.register_forward_hook(self._swap_add_embedding))
        return handles

    # -- per UNet call -------------------------------------------------------------------------
    def begin_call(self, unet, args, kwargs):
        args, kwargs = list(args), dict(kwargs)
        ehs = unet_text_input(args, kwargs)
        n = ehs.shape[0]
        rows = conditional_rows(n, len(self.alt), self.guidance)
        is_cond = torch.zeros(n, dtype=torch.bool)
        is_cond[rows] = True
        raw = ehs.clone()
        raw[rows] = self.alt.embeds.to(device=ehs.device, dtype=ehs.dtype)
        mask = torch.zeros(n, self.mask.shape[1], dtype=torch.bool)
        mask[rows] = self.mask
        added = dict(kwargs.get("added_cond_kwargs") or {})
        if self.swap_text_paths and "text_embeds" in added and self.alt.pooled is not None:
            text_embeds = added["text_embeds"].clone()
            text_embeds[rows] = self.alt.pooled.to(device=text_embeds.device, dtype=text_embeds.dtype)
            added["text_embeds"] = text_embeds
        if "added_cond_kwargs" in kwargs:
            kwargs["added_cond_kwargs"] = added

        inverse = None
        if self.share_identical_rows:
            keep, inverse = _unique_rows(n, [_sample(args, kwargs), ehs, raw, mask, *added.values()])
            if len(keep) < n:
                args, kwargs = _take_rows(args, kwargs, keep, n)
                idx = torch.tensor(keep)
                raw, mask, is_cond = raw[idx.to(raw.device)], mask[idx], is_cond[idx]
                added = kwargs.get("added_cond_kwargs") or {}
            else:
                inverse = None
        projected = raw
        if getattr(unet, "encoder_hid_proj", None) is not None:
            with torch.no_grad():
                projected = unet.process_encoder_hidden_states(raw, added)
        device = ehs.device
        self._state = {
            "raw": raw,
            "states": projected,
            "mask": mask.to(device),
            "any": mask.any(dim=0).tolist(),
            "is_cond": is_cond.to(device),
            "inverse": inverse,
        }
        if self.counter is not None:
            self.counter["calls"] = self.counter.get("calls", 0) + 1
            self.counter["rows"] = self.counter.get("rows", 0) + int(mask.shape[0])
            self.counter["uncond_rows"] = self.counter.get("uncond_rows", 0) + int((~is_cond).sum())
        return tuple(args), kwargs

    def text_states(self, layer, attn, encoder_hidden_states):
        st = self._state
        if st is None or not st["any"][layer.index]:
            return encoder_hidden_states
        sub = st["states"]
        if sub.shape != encoder_hidden_states.shape:
            raise LocoError(f"layer {layer.index} reads text states of shape {tuple(encoder_hidden_states.shape)}, substitute has {tuple(sub.shape)}")
        m = st["mask"][:, layer.index].view(-1, *([1] * (sub.dim() - 1)))
        return torch.where(m, sub, encoder_hidden_states)

    def _swap_add_embedding(self, module, args, output):
        st = self._state
        if st is None:
            return output
        alt_out = module.forward(st["raw"])
        return torch.where(st["is_cond"].view(-1, *([1] * (output.dim() - 1))), alt_out, output)

    def end_call(self, unet, output):
        st, self._state = self._state, None
        if st is None or st["inverse"] is None:
            return None
        inv = torch.tensor(st["inverse"])
        if isinstance(output, tuple):
            return (output[0][inv.to(output[0].device)],) + tuple(output[1:])
        output.sample = output.sample[inv.to(output.sample.device)]
        return output


def _sample(args, kwargs):
    return kwargs["sample"] if "sample" in kwargs else args[0]


def _unique_rows(n: int, tensors: list) -> tuple[list[int], list[int]]:
    """Indices of the first occurrence of each distinct row, and each row's group number.

    Rows are candidates when a cheap per-row fingerprint matches and identical only when every
    tensor's rows are bitwise equal (``torch.equal``), so sharing never changes a result.
    """
    tensors = [t for t in tensors if torch.is_tensor(t) and t.dim() > 0 and t.shape[0] == n]
    prints = torch.stack([t.reshape(n, -1).double().sum(dim=1) for t in tensors], dim=1).cpu().tolist()
    keep: list[int] = []
    inverse: list[int] = []
    by_print: dict = {}
    for r in range(n):
        group = None
        for g in by_print.get(tuple(prints[r]), []):
            if all(torch.equal(t[r], t[keep[g]]) for t in tensors):
                group = g
                break
        if group is None:
            group = len(keep)
            keep.append(r)
            by_print.setdefault(tuple(prints[r]), []).append(group)
        inverse.append(group)
    return keep, inverse


def _take_rows(args: list, kwargs: dict, keep: list[int], n: int):
    """The UNet call's arguments restricted to rows ``keep`` (batch-sized tensors only)."""

    def take(x):
        if torch.is_tensor(x) and x.dim() > 0 and x.shape[0] == n:
            return x[torch.tensor(keep, device=x.device)]
        if isinstance(x, dict):
            return {k: take(v) for k, v in x.items()}
        return x

    return [take(a) for a in args], {k: take(v) for k, v in kwargs.items()}


@contextmanager
def altered_inputs(pipe, alt, layers, swap_text_paths: bool = False, guidance: bool | None = None):
    """Context manager: inside it, ``pipe`` runs with ``layers`` reading ``alt`` instead of the prompt.

    ``alt`` is a :class:`~loco_lib.text.TextCondition` with one row per sample of the batch;
    ``layers`` is one layer spec (``[8, 9]``, ``"8,9"``, ``"all"``) or a list with one spec per sample.
    ``guidance``: whether the pipeline runs classifier-free guidance (UNet batch ``[uncond, cond]``);
    ``None`` infers it from the batch size, which is ambiguous only when ``alt`` has the wrong
    number of rows, so pass it when you know it (``generate`` does).
    """
    with intervene(pipe, AlteredInputs(alt, layers, swap_text_paths, guidance)) as layer_list:
        yield layer_list
