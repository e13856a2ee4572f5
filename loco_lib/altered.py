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
    """Controller that feeds ``alt`` (a :class:`~loco_lib.text.TextCondition`) to chosen layers."""

    def __init__(self, alt, layers, swap_text_paths: bool = False, guidance: bool | None = None):
        self.alt = alt
        self.guidance = guidance
        self.layers_spec = layers
        self.swap_text_paths = swap_text_paths
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
        ehs = unet_text_input(args, kwargs)
        rows = conditional_rows(ehs.shape[0], len(self.alt), self.guidance)
        raw = ehs.clone()
        raw[rows] = self.alt.embeds.to(device=ehs.device, dtype=ehs.dtype)
        mask = torch.zeros(ehs.shape[0], self.mask.shape[1], dtype=torch.bool)
        mask[rows] = self.mask
        added = kwargs.get("added_cond_kwargs") or {}
        projected = raw
        if getattr(unet, "encoder_hid_proj", None) is not None:
            with torch.no_grad():
                projected = unet.process_encoder_hidden_states(raw, added)
        self._state = {
            "raw": raw,
            "states": projected,
            "mask": mask.to(ehs.device),
            "any": mask.any(dim=0).tolist(),
            "rows": rows,
        }
        if self.swap_text_paths and "text_embeds" in added and self.alt.pooled is not None:
            text_embeds = added["text_embeds"].clone()
            text_embeds[rows] = self.alt.pooled.to(device=text_embeds.device, dtype=text_embeds.dtype)
            kwargs = {**kwargs, "added_cond_kwargs": {**added, "text_embeds": text_embeds}}
            return args, kwargs
        return None

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
        out = output.clone()
        out[st["rows"]] = alt_out[st["rows"]]
        return out

    def end_call(self, unet):
        self._state = None


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
