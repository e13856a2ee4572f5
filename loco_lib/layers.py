"""The cross-attention layer map (paper Sec. 5.1, App. D): the records every method consumes.

LocoGen indexes the text-reading attention layers C_1..C_M of a denoiser in *execution order*; the
denoiser's family (:mod:`loco_lib.families`) finds them and says what their K/V projections read.
One uniform record per layer, whatever the family: its index, module name, block, the width of its
text input and the attribute names of its key and value projections (``to_k`` / ``to_v`` for SD's
``attn2``, ``add_k_proj`` / ``add_v_proj`` for DeepFloyd IF's added K/V attention).

The paper's App. D lists K and V projections as separate entries (0..2M-1); its *layer* index (the
one used in the text, e.g. "SD-1.5 style at layer 8") is the position in this map.
"""
from __future__ import annotations

import numbers

import torch

from .families.base import CrossAttentionLayer  # noqa: F401 (the record every method consumes; its home was here)


def cross_attention_layers(model) -> list[CrossAttentionLayer]:
    """All text-reading attention layers of ``model`` (a denoiser, or a pipeline) in execution order."""
    from .families.registry import denoiser, denoiser_family

    return denoiser_family(model).text_layers(denoiser(model))


def layer_table(layers: list[CrossAttentionLayer]):
    """The layer map as a pandas DataFrame (one row per layer)."""
    import pandas as pd

    return pd.DataFrame([l.as_dict() for l in layers]).set_index("index")


def text_states(model, embeds: torch.Tensor) -> torch.Tensor:
    """The text states every cross-attention layer's processor receives when the denoiser gets
    ``embeds`` as ``encoder_hidden_states``: ``embeds`` itself, for DeepFloyd IF after ``encoder_hid_proj``."""
    from .families.registry import denoiser, denoiser_family

    return denoiser_family(model).text_states(denoiser(model), embeds)


def kv_inputs(model, layers: list[CrossAttentionLayer], embeds: torch.Tensor, positions: torch.Tensor | None = None) -> dict:
    """What the K/V projections of each layer read when the denoiser gets ``embeds``.

    ``{layer.index: [B, L, kv_dim]}``, or ``[B, kv_dim]`` at one token per prompt with ``positions``
    (``[B]`` indices). The model's own modules compute it: :func:`text_states`, then what the layer
    applies before its projections (IF's GroupNorm ``norm_cross``, over the whole sequence, so before
    the position is taken).
    """
    from .errors import LocoError
    from .families.registry import denoiser, denoiser_family

    family, model = denoiser_family(model), denoiser(model)
    states = family.text_states(model, embeds)
    rows = torch.arange(states.shape[0], device=states.device)
    out = {}
    for layer in layers:
        x = family.kv_input(model, layer, states)
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
