"""The cross-attention layer map (paper Sec. 5.1, App. D).

LocoGen indexes the cross-attention layers C_1..C_M of a UNet in *execution order*: down blocks,
then the mid block, then the up blocks. ``named_modules()`` is not that order (diffusers registers
``mid_block`` after ``up_blocks``), so the map is built block by block.

One uniform record per layer, for every supported family:

* SD-1.x / SD-2.x / OpenJourney / SD-XL: the ``attn2`` module of each transformer block; the text
  enters through ``to_k`` / ``to_v``.
* DeepFloyd IF: each ``attentions.N`` module of the simple cross-attention blocks; the text (after
  ``encoder_hid_proj``) enters through the added projections ``add_k_proj`` / ``add_v_proj``.

The paper's App. D lists K and V projections as separate entries (0..2M-1); its *layer* index (the
one used in the text, e.g. "SD-1.5 style at layer 8") is the position in this map.
"""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class CrossAttentionLayer:
    index: int  # position in execution order (the paper's layer index)
    name: str  # dotted name of the attention module inside the UNet
    block: str  # "down", "mid" or "up"
    kv_dim: int  # width of the text input of the K/V projections
    key: str  # attribute name of the key projection ("to_k" or "add_k_proj")
    value: str  # attribute name of the value projection ("to_v" or "add_v_proj")
    resolution: int  # side of the feature map at the model's default sample size

    def as_dict(self) -> dict:
        return asdict(self)


def _is_text_attention(module: torch.nn.Module) -> bool:
    from diffusers.models.attention_processor import Attention

    if not isinstance(module, Attention):
        return False
    if getattr(module, "add_k_proj", None) is not None:
        return True  # IF-style added K/V attention (self + text)
    return bool(getattr(module, "is_cross_attention", False))


def cross_attention_layers(unet) -> list[CrossAttentionLayer]:
    """All text-reading attention layers of ``unet`` in execution order (down -> mid -> up)."""
    n_down = len(unet.down_blocks)
    n_up = len(unet.up_blocks)
    sample = unet.config.sample_size
    sample = sample[0] if isinstance(sample, (list, tuple)) else sample
    groups = [("down_blocks.%d" % i, b, "down", i) for i, b in enumerate(unet.down_blocks)]
    if unet.mid_block is not None:
        groups.append(("mid_block", unet.mid_block, "mid", n_down - 1))
    groups += [("up_blocks.%d" % i, b, "up", n_up - 1 - i) for i, b in enumerate(unet.up_blocks)]

    layers: list[CrossAttentionLayer] = []
    for prefix, block, kind, level in groups:
        for sub, module in block.named_modules(prefix=prefix):
            if not _is_text_attention(module):
                continue
            added = getattr(module, "add_k_proj", None) is not None
            key, value = ("add_k_proj", "add_v_proj") if added else ("to_k", "to_v")
            layers.append(
                CrossAttentionLayer(
                    index=len(layers),
                    name=sub,
                    block=kind,
                    kv_dim=getattr(module, key).in_features,
                    key=key,
                    value=value,
                    resolution=max(1, sample // 2**level),
                )
            )
    return layers


def layer_table(layers: list[CrossAttentionLayer]):
    """The layer map as a pandas DataFrame (one row per layer)."""
    import pandas as pd

    return pd.DataFrame([l.as_dict() for l in layers]).set_index("index")


def text_states(unet, embeds: torch.Tensor) -> torch.Tensor:
    """The text states every cross-attention layer's processor receives when the UNet gets ``embeds``
    as ``encoder_hidden_states``: ``embeds`` itself, for DeepFloyd IF after ``encoder_hid_proj``."""
    from .errors import LocoError

    proj = getattr(unet, "encoder_hid_proj", None)
    if proj is None:
        return embeds
    kind = unet.config.get("encoder_hid_dim_type", None)
    if kind != "text_proj":
        raise LocoError(f"UNets with encoder_hid_dim_type={kind!r} are not supported (only text_proj, as in DeepFloyd IF)")
    return proj(embeds.to(proj.weight.dtype))


def kv_inputs(unet, layers: list[CrossAttentionLayer], embeds: torch.Tensor, positions: torch.Tensor | None = None) -> dict:
    """What the K/V projections of each layer read when the UNet gets ``embeds``.

    ``{layer.index: [B, L, kv_dim]}``, or ``[B, kv_dim]`` at one token per prompt with ``positions``
    (``[B]`` indices). The model's own modules compute it: :func:`text_states`, then the layer's
    GroupNorm ``norm_cross`` (IF; over the whole sequence, so before the position is taken).
    """
    from .errors import LocoError

    states = text_states(unet, embeds)
    rows = torch.arange(states.shape[0], device=states.device)
    out = {}
    for layer in layers:
        attn = unet.get_submodule(layer.name)
        x = states
        if getattr(attn, "norm_cross", None) is not None:
            x = attn.norm_encoder_hidden_states(x)
        if x.shape[-1] != layer.kv_dim:
            raise LocoError(f"layer {layer.index} ({layer.name}) reads {layer.kv_dim}-d text states, but the text condition gives {x.shape[-1]}-d")
        out[layer.index] = x if positions is None else x[rows, positions.to(x.device)]
    return out


def parse_layers(spec, n_layers: int) -> list[int]:
    """Turn ``"8,9"``, ``"4-6"``, ``"all"``, an int or a list of ints into sorted layer indices.

    Raises :class:`LocoError` for anything out of ``range(n_layers)``.
    """
    from .errors import LocoError

    if spec is None:
        return []
    if hasattr(spec, "tolist") and not isinstance(spec, str):  # numpy arrays / scalars, torch tensors
        spec = spec.tolist()
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "all":
            return list(range(n_layers))
        if s in ("", "none"):
            return []
        idx: list[int] = []
        for part in s.split(","):
            part = part.strip()
            try:
                if "-" in part[1:]:
                    a, b = part[0] + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1]
                    a, b = int(a), int(b)
                    if b < a:
                        raise LocoError(f"layer range {part!r} runs backwards: write {b}-{a}")
                    idx.extend(range(a, b + 1))
                else:
                    idx.append(int(part))
            except LocoError:
                raise
            except ValueError:
                raise LocoError(f"cannot read layer list {spec!r}: use indices like 8,9 or 4-6 or 'all'") from None
    else:
        items = [spec] if not isinstance(spec, (list, tuple, set, frozenset, range)) else list(spec)
        idx = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, numbers.Integral):
                raise LocoError(f"layer indices must be integers, got {item!r}")
            idx.append(int(item))
    bad = [i for i in idx if not 0 <= i < n_layers]
    if bad:
        raise LocoError(f"layer index {bad[0]} is out of range: this model has {n_layers} cross-attention layers (0..{n_layers - 1})")
    return sorted(set(idx))


def format_layers(indices) -> str:
    """The label of a layer set, the inverse of :func:`parse_layers`: ``[8, 9]`` -> ``"8-9"``,
    ``[8]`` -> ``"8"``, ``[4, 5, 6]`` -> ``"4-6"``; a set with gaps lists its runs, ``[0, 1, 5]`` ->
    ``"0-1,5"``; no layer -> ``"none"``. Window tables, figures and reports all use these labels."""
    if hasattr(indices, "tolist"):
        indices = indices.tolist()
    idx = sorted({int(i) for i in ([indices] if isinstance(indices, int) else indices)})
    runs: list[list[int]] = []
    for i in idx:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs) or "none"
