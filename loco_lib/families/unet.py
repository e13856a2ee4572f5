"""The UNet denoiser (``UNet2DConditionModel``: SD-1.x/2.x, OpenJourney, SD-XL, DeepFloyd IF and the
organisms), paper Sec. 5.1 and App. D.

One execution-order walk (down blocks, then the mid block, then the up blocks; ``named_modules()``
registers ``mid_block`` after ``up_blocks``, so the walk goes block by block) serves both the
cross-attention layer map and the causal-tracing catalogue.

* SD-style blocks: the ``attn2`` module of each transformer block reads the text through ``to_k`` /
  ``to_v``.
* DeepFloyd IF: each ``attentions.N`` module of the simple cross-attention blocks reads the text
  (after ``encoder_hid_proj``) through the added projections ``add_k_proj`` / ``add_v_proj``, after
  its GroupNorm ``norm_cross``.
* Text paths outside cross-attention: SD-XL's pooled second-encoder embedding into the time
  embedding (``addition_embed_type="text_time"``), IF's pooled T5 output (``add_embedding``).
"""
from __future__ import annotations

import torch

from ..errors import LocoError
from ..hooks import Patch, Site, unet_input
from .base import CrossAttentionLayer, DenoiserFamily, State


def blocks(unet) -> list:
    """``(prefix, block, kind, level, label)`` of each block in execution order; ``level`` counts
    the resolution halvings (for the layer map's resolution), ``label`` names it for the trace."""
    n_down, n_up = len(unet.down_blocks), len(unet.up_blocks)
    out = [(f"down_blocks.{i}", b, "down", i, f"down {i}") for i, b in enumerate(unet.down_blocks)]
    if unet.mid_block is not None:
        out.append(("mid_block", unet.mid_block, "mid", n_down - 1, "mid"))
    out += [(f"up_blocks.{i}", b, "up", n_up - 1 - i, f"up {i}") for i, b in enumerate(unet.up_blocks)]
    return out


def is_text_attention(module: torch.nn.Module) -> bool:
    from diffusers.models.attention_processor import Attention

    if not isinstance(module, Attention):
        return False
    if getattr(module, "add_k_proj", None) is not None:
        return True  # IF-style added K/V attention (self + text)
    return bool(getattr(module, "is_cross_attention", False))


class UNet(DenoiserFamily):
    name = "unet"
    classes_ = ("UNet2DConditionModel",)

    def text_attention(self, attn, hidden, text, mask):
        """As :meth:`DenoiserFamily.text_attention`; an IF-style added-K/V layer attends over its text
        keys (``add_k_proj`` of the group-normed text) and the image's own keys at once, so its
        ``probs`` are the softmax over both, cut to the text keys (which come first)."""
        if getattr(attn, "add_k_proj", None) is None:
            return super().text_attention(attn, hidden, text, mask)
        rows = hidden.shape[0]
        hidden = hidden.view(rows, hidden.shape[1], -1).transpose(1, 2)
        if attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
        query = attn.head_to_batch_dim(attn.to_q(hidden))
        key = attn.head_to_batch_dim(attn.add_k_proj(text))
        value = attn.head_to_batch_dim(attn.add_v_proj(text))
        if not attn.only_cross_attention:
            key = torch.cat([key, attn.head_to_batch_dim(attn.to_k(hidden))], dim=1)
        bias = None if mask is None else attn.prepare_attention_mask(mask, key.shape[1], rows)
        return attn.get_attention_scores(query, key, bias)[..., : text.shape[1]], value

    def text_layers(self, unet) -> list:
        sample = unet.config.sample_size
        sample = sample[0] if isinstance(sample, (list, tuple)) else sample
        layers = []
        for prefix, block, kind, level, _ in blocks(unet):
            for sub, module in block.named_modules(prefix=prefix):
                if not is_text_attention(module):
                    continue
                added = getattr(module, "add_k_proj", None) is not None
                key, value = ("add_k_proj", "add_v_proj") if added else ("to_k", "to_v")
                layers.append(CrossAttentionLayer(index=len(layers), name=sub, block=kind,
                                                  kv_dim=getattr(module, key).in_features, key=key, value=value,
                                                  resolution=max(1, sample // 2**level)))
        return layers

    def text_states(self, unet, embeds):
        proj = getattr(unet, "encoder_hid_proj", None)
        if proj is None:
            return embeds
        kind = unet.config.get("encoder_hid_dim_type", None)
        if kind != "text_proj":
            raise LocoError(f"UNets with encoder_hid_dim_type={kind!r} are not supported (only text_proj, as in DeepFloyd IF)")
        return proj(embeds.to(proj.weight.dtype))

    def kv_input(self, unet, layer, states):
        attn = unet.get_submodule(layer.name)
        if getattr(attn, "norm_cross", None) is not None:  # IF: GroupNorm over the whole sequence
            return attn.norm_encoder_hidden_states(states)
        return states

    def side_paths(self, unet, alt) -> list:
        kind = unet.config.get("addition_embed_type", None)
        if kind == "text_time" and alt.pooled is not None:  # SD-XL: pooled text into the time embedding
            return [Patch(unet_input("added_cond_kwargs.text_embeds"), alt.pooled)]
        if kind == "text" and getattr(unet, "add_embedding", None) is not None:  # IF: the raw T5 output, pooled
            return [Patch(Site("unet", "add_embedding", "input"), alt.embeds)]
        return []

    def states(self, unet, kinds) -> list:
        from diffusers.models.attention_processor import Attention

        out = []

        def add(name, kind, block):
            if kind in kinds:
                out.append(State(len(out), name, kind, "unet", block))

        for prefix, block, _, _, label in blocks(unet):
            resnets = list(getattr(block, "resnets", None) or [])
            attns = list(getattr(block, "attentions", None) or [])
            order: list[tuple[str, int]] = []
            if prefix == "mid_block" and resnets:  # the mid block starts with a ResNet block
                order.append(("resnets", 0))
                for i in range(max(len(attns), len(resnets) - 1)):
                    if i < len(attns):
                        order.append(("attentions", i))
                    if i + 1 < len(resnets):
                        order.append(("resnets", i + 1))
            else:
                for i in range(max(len(resnets), len(attns))):
                    if i < len(resnets):
                        order.append(("resnets", i))
                    if i < len(attns):
                        order.append(("attentions", i))
            for group, i in order:
                name = f"{prefix}.{group}.{i}"
                if group == "resnets":
                    add(name, "resnet", label)
                    continue
                module = block.get_submodule(f"{group}.{i}")
                if isinstance(module, Attention):
                    add(name, "attention", label)
                    continue
                for j, tb in enumerate(getattr(module, "transformer_blocks", None) or []):
                    tname = f"{name}.transformer_blocks.{j}"
                    add(tname, "transformer", label)
                    if isinstance(getattr(tb, "attn1", None), Attention):
                        add(f"{tname}.attn1", "self-attention", label)
                    if getattr(getattr(tb, "attn2", None), "is_cross_attention", False):
                        add(f"{tname}.attn2", "cross-attention", label)
                    if isinstance(getattr(tb, "ff", None), torch.nn.Module):
                        add(f"{tname}.ff", "feed-forward", label)
        return out
