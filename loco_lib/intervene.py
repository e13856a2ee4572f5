"""One intervention mechanism for every experiment (LocoGen, neurons, tracing).

Each cross-attention layer keeps its own diffusers attention processor; :func:`intervene` wraps it
in a :class:`LayerProcessor` that asks a :class:`Controller` which text states the layer should
read, then calls the original processor unchanged. Attention itself is never re-implemented and no
Linear outputs are patched, so the same code is valid for SD's ``attn2`` and for IF's added-K/V
attention (bias, GroupNorm and ``encoder_hid_proj`` included).

A forward pre-hook on the UNet gives the controller each UNet call's inputs first (to lay out the
classifier-free-guidance batch, project substitutes, or adjust pooled text paths). Leaving the
context restores the original processor objects and removes every hook: the pipeline is exactly as
it was.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .layers import CrossAttentionLayer, cross_attention_layers


class Controller:
    """Base class: override what you need. The default changes nothing."""

    layers: list[CrossAttentionLayer]

    def setup(self, unet, layers: list[CrossAttentionLayer]) -> list:
        """Called once on entry; may return extra hook handles to remove on exit."""
        self.layers = layers
        return []

    def begin_call(self, unet, args: tuple, kwargs: dict):
        """Called before each UNet forward; may return new ``(args, kwargs)``."""
        return None

    def text_states(self, layer: CrossAttentionLayer, attn, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """The text states ``layer`` reads in this UNet call."""
        return encoder_hidden_states

    def end_call(self, unet, output):
        """Called after each UNet forward; may return a replacement output."""
        return None


class LayerProcessor:
    """Wraps a layer's existing attention processor; the controller may swap its text input."""

    def __init__(self, inner, layer: CrossAttentionLayer, controller: Controller):
        self.inner = inner
        self.layer = layer
        self.controller = controller

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        if encoder_hidden_states is not None:
            encoder_hidden_states = self.controller.text_states(self.layer, attn, encoder_hidden_states)
        return self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask, **kwargs)


def _unet_of(pipe_or_unet):
    return getattr(pipe_or_unet, "unet", pipe_or_unet)


@contextmanager
def intervene(pipe_or_unet, controller: Controller):
    """Install ``controller`` on every cross-attention layer for the duration of the context."""
    unet = _unet_of(pipe_or_unet)
    layers = cross_attention_layers(unet)
    modules = dict(unet.named_modules())
    originals = []
    handles = []
    try:
        handles.extend(controller.setup(unet, layers))

        def pre(module, args, kwargs):
            return controller.begin_call(module, args, kwargs)

        def post(module, args, output):
            return controller.end_call(module, output)

        handles.append(unet.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(unet.register_forward_hook(post))
        for layer in layers:
            attn = modules[layer.name]
            originals.append((attn, attn.processor))
            attn.set_processor(LayerProcessor(attn.processor, layer, controller))
        yield layers
    finally:
        for attn, proc in reversed(originals):
            attn.set_processor(proc)
        for h in handles:
            h.remove()


def conditional_rows(n_rows: int, n_samples: int, guidance: bool | None = None) -> slice:
    """The rows of a UNet batch that carry the conditional branch.

    diffusers' SD, SD-XL and IF pipelines lay out a classifier-free-guidance batch as
    ``[uncond, cond]``; without guidance the whole batch is conditional. ``guidance=None`` infers
    the layout from the batch size.
    """
    from .errors import LocoError

    if n_rows == 2 * n_samples and guidance is not False:
        return slice(n_samples, 2 * n_samples)
    if n_rows == n_samples and not guidance:
        return slice(0, n_samples)
    layout = {True: " with guidance", False: " without guidance", None: ""}[guidance]
    raise LocoError(f"the UNet batch has {n_rows} rows{layout}, which does not fit {n_samples} sample(s): give one row per sample")


def unet_text_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The ``encoder_hidden_states`` argument of a UNet call, positional or keyword."""
    if "encoder_hidden_states" in kwargs:
        return kwargs["encoder_hidden_states"]
    return args[2]
