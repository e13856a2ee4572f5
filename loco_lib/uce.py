"""UCE: closed-form editing of *every* cross-attention K/V projection, a baseline beyond the paper.

Unified Concept Editing (Gandikota et al., WACV 2024, https://arxiv.org/abs/2308.14761; code:
https://github.com/rohitgandikota/unified-concept-editing, ``train-scripts/train_erase.py``) edits
the key and value projections of all cross-attention layers at once, with an erase set and a
preserve set. For one projection with current weight ``W_hat`` (torch ``Linear`` layout, [out, in])
it minimises::

    e * ||C_e W^T - C_g W_hat^T||^2 + p * ||C_p W^T - C_p W_hat^T||^2 + lam * ||W - W_hat||^2

* ``C_e``: rows of the concepts to erase: the text states at the concept's last token and every
  position after it (end-of-text, padding), as the authors' script takes them;
* ``C_g``: the guide's rows at the same offsets (from the guide's last token on), so the erased
  concept's keys and values become the guide's ("replace", the script's default technique);
* ``C_p``: rows of the concepts to preserve: every position of each preserve text, mapped to
  what the current weight gives them;
* ``e``, ``p``, ``lam``: the script's ``erase_scale`` 1, ``preserve_scale`` 0.1 and the ``lamb``
  0.5 its ``__main__`` passes to ``edit_model`` (loco's defaults, :data:`ERASE_SCALE` etc.).

The minimiser is ``W^T = (lam I + e C_e^T C_e + p C_p^T C_p)^-1 (lam W_hat^T + e C_e^T C_g W_hat^T
+ p C_p^T C_p W_hat^T)`` (:func:`closed_form`), solved in float64 with ``torch.linalg.solve``; a
layer's key and value read the same rows, so both share one solve. As in LocoEdit
(:mod:`loco_lib.locoedit`) rows are what the projection actually reads (for DeepFloyd IF after
``encoder_hid_proj`` and the layer's GroupNorm) and a bias is left unchanged.

loco's choices where the script has none: an empty guide (the script's default ``' '``) takes its
rows from position 0 on (CLIP: start-of-text; T5, which has none: the end-of-text token); the
erase texts default to the concept's name alone, the script's default (its ``--add_prompts``
variants can be passed as more erase texts).
"""
from __future__ import annotations

import time

import torch

from .edit_file import Edit, _fingerprint, _model_name
from .errors import LocoError
from .families.registry import denoiser
from .layers import cross_attention_layers, kv_inputs, parse_layers

LAMBDA = 0.5  # `lamb` passed by the authors' train_erase.py __main__
ERASE_SCALE = 1.0  # its --erase_scale default
PRESERVE_SCALE = 0.1  # its --preserve_scale default


def _check_positive(x, what: str, allow_zero: bool = False) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise LocoError(f"{what} must be a number, got {x!r}") from None
    ok = (x >= 0 if allow_zero else x > 0) and x == x and x != float("inf")
    if not ok:
        raise LocoError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} number, got {x}")
    return x


def closed_form(W_hat: torch.Tensor, erase: torch.Tensor, guide: torch.Tensor, preserve: torch.Tensor | None = None,
                lam: float = LAMBDA, erase_scale: float = ERASE_SCALE, preserve_scale: float = PRESERVE_SCALE) -> torch.Tensor:
    """The UCE update of one projection (``Linear`` layout ``[out, in]``, or ``[k, out, in]`` for
    ``k`` projections that read the same rows, e.g. a layer's key and value).

    ``erase`` / ``guide``: ``[N, in]`` rows (row i of ``erase`` is to get the output of row i of
    ``guide``); ``preserve``: ``[M, in]`` rows that keep their outputs (or None). Returns the
    minimiser of the objective in the module docstring, same shape, dtype and device as ``W_hat``.
    """
    single = W_hat.ndim == 2
    A = W_hat.unsqueeze(0) if single else W_hat
    if A.ndim != 3:
        raise LocoError(f"the weight must be [out, in] or [k, out, in], got shape {tuple(W_hat.shape)}")
    d = A.shape[-1]
    if erase.ndim != 2 or erase.shape[1] != d or guide.shape != erase.shape:
        raise LocoError(f"erase and guide rows must both have shape [N, {d}], got {tuple(erase.shape)} and {tuple(guide.shape)}")
    if preserve is not None and (preserve.ndim != 2 or preserve.shape[1] != d):
        raise LocoError(f"preserve rows must have shape [M, {d}], got {tuple(preserve.shape)}")
    lam = _check_positive(lam, "lambda")
    e = _check_positive(erase_scale, "erase_scale", allow_zero=True)
    p = _check_positive(preserve_scale, "preserve_scale", allow_zero=True)
    dev = torch.device("cpu") if W_hat.device.type == "mps" else W_hat.device
    A64 = A.detach().to(dev, torch.float64)
    Ce, Cg = erase.detach().to(dev, torch.float64), guide.detach().to(dev, torch.float64)
    M = lam * torch.eye(d, dtype=torch.float64, device=dev) + e * Ce.T @ Ce
    R = lam * torch.eye(d, dtype=torch.float64, device=dev) + e * Ce.T @ Cg  # right side = R @ W_hat^T
    if preserve is not None and len(preserve):
        Cp = preserve.detach().to(dev, torch.float64)
        M = M + p * Cp.T @ Cp
        R = R + p * Cp.T @ Cp
    k, out = A64.shape[0], A64.shape[1]
    rhs = R @ A64.transpose(1, 2).permute(1, 0, 2).reshape(d, k * out)  # [d, k*out]
    sol = torch.linalg.solve(M, rhs).reshape(d, k, out).permute(1, 2, 0)  # [k, out, d]
    sol = sol.to(device=W_hat.device, dtype=W_hat.dtype)
    return sol[0] if single else sol


def objective(W, W_hat, erase, guide, preserve=None, lam: float = LAMBDA, erase_scale: float = ERASE_SCALE,
              preserve_scale: float = PRESERVE_SCALE) -> torch.Tensor:
    """The UCE objective at ``W`` (``Linear`` layout), a scalar tensor differentiable in ``W``."""
    out = erase_scale * ((erase @ W.T - guide @ W_hat.T) ** 2).sum() + lam * ((W - W_hat) ** 2).sum()
    if preserve is not None and len(preserve):
        out = out + preserve_scale * ((preserve @ W.T - preserve @ W_hat.T) ** 2).sum()
    return out


def _start(pipe, text: str) -> int:
    from .tokens import last_token_index

    return 0 if not text.strip() else last_token_index(pipe, text)


@torch.no_grad()
def rows(pipe, layers, erase, guides, preserve=()) -> tuple[dict, dict, dict]:
    """``({layer: erase rows}, {layer: guide rows}, {layer: preserve rows})``: what each chosen
    layer's K/V projections read (see the module docstring for which positions)."""
    from .text import encode

    unet = denoiser(pipe)
    all_layers = cross_attention_layers(unet)
    chosen = [all_layers[i] for i in layers]
    texts = list(erase) + list(guides) + list(preserve)
    empty = torch.tensor([not t.strip() for t in texts])
    cond = encode(pipe, [t if t.strip() else "." for t in texts])  # "" is the unconditional branch's text
    embeds = torch.where(empty.to(cond.embeds.device)[:, None, None], cond.negative, cond.embeds)
    states = kv_inputs(unet, chosen, embeds)  # {layer: [B, L, d]}
    n_e = len(erase)
    pairs = []  # (erase text index, guide text index, erase start, guide start, count)
    for i, (c, g) in enumerate(zip(erase, guides)):
        a, b = _start(pipe, c), _start(pipe, g)
        L = next(iter(states.values())).shape[1]
        pairs.append((i, n_e + i, a, b, L - max(a, b)))
    out_e, out_g, out_p = {}, {}, {}
    for layer in chosen:
        x = states[layer.index]
        out_e[layer.index] = torch.cat([x[i, a : a + n] for i, _, a, _, n in pairs])
        out_g[layer.index] = torch.cat([x[j, b : b + n] for _, j, _, b, n in pairs])
        out_p[layer.index] = x[2 * n_e :].reshape(-1, x.shape[-1]) if len(preserve) else None
    return out_e, out_g, out_p


def compute_edit(pipe, concepts, guide="", preserve=None, *, erase=None, layers="all", lam: float = LAMBDA,
                 erase_scale: float = ERASE_SCALE, preserve_scale: float = PRESERVE_SCALE) -> Edit:
    """The UCE edit of ``pipe``: erase ``concepts`` (a name or a list of names) towards ``guide``
    (one text, or one per concept; ``""`` = the empty prompt), keeping ``preserve`` texts.

    ``erase``: the erase texts (default: the concept names themselves); each is paired with the
    guide of its concept, so give ``erase`` as ``{concept: [texts]}`` to use several per concept.
    ``layers``: the cross-attention layers to edit (UCE: ``"all"``). The pipeline is not changed:
    apply the returned :class:`~loco_lib.edit_file.Edit`.
    """
    from . import __version__, settings

    family = settings.pipeline_family(pipe)
    concepts = settings.as_prompt_list(concepts, "concept")
    guides = [guide] * len(concepts) if guide is None or isinstance(guide, str) else list(guide)
    if len(guides) == 1 and len(concepts) > 1:
        guides = guides * len(concepts)
    if len(guides) != len(concepts):
        raise LocoError(f"{len(guides)} guides given for {len(concepts)} concepts: give one, or one per concept")
    if any(not isinstance(g, str) for g in guides):
        raise LocoError("a guide must be a text ('' for the empty prompt)")
    if erase is None:
        erase = {c: [c] for c in concepts}
    elif not isinstance(erase, dict):
        raise LocoError("erase must map each concept to its erase texts, e.g. {'van gogh': ['van gogh', 'art by van gogh']}")
    missing = [c for c in concepts if not erase.get(c)]
    if missing:
        raise LocoError(f"no erase texts for concept {missing[0]!r}")
    texts, text_guides = [], []
    for c, g in zip(concepts, guides):
        for t in settings.as_prompt_list(erase[c], f"erase text of {c!r}"):
            texts.append(t)
            text_guides.append(g)
    preserve = [] if preserve is None else settings.as_prompt_list(preserve, "preserve text")
    erased = {c.strip().lower() for c in concepts}
    clash = [p for p in preserve if p.strip().lower() in erased]
    if clash:
        raise LocoError(f"{clash[0]!r} is both erased and preserved")
    unet = denoiser(pipe)
    all_layers = cross_attention_layers(unet)
    lam = _check_positive(lam, "lambda")
    from .families.registry import denoiser_family

    embedder = denoiser_family(pipe).text_embedder
    if embedder is not None:
        if layers not in ("all", None):
            raise LocoError("in a joint-attention transformer UCE edits the text embedder, which every block reads "
                            "through: it takes no layers (leave layers='all')")
        return _embedder_edit(pipe, unet, embedder, family, concepts, guides, texts, text_guides, preserve, lam,
                              erase_scale, preserve_scale)
    idx = parse_layers(layers, len(all_layers))
    if not idx:
        raise LocoError("no layers given to edit (UCE edits all: layers='all')")
    start = time.perf_counter()
    X_e, X_g, X_p = rows(pipe, idx, texts, text_guides, preserve)
    encode_seconds = time.perf_counter() - start
    weights, fingerprints, solve_seconds = {}, {}, 0.0
    for i in idx:
        layer = all_layers[i]
        attn = unet.get_submodule(layer.name)
        pair = torch.stack([getattr(attn, layer.key).weight, getattr(attn, layer.value).weight]) \
            if getattr(attn, layer.key).weight.shape == getattr(attn, layer.value).weight.shape else None
        t0 = time.perf_counter()
        if pair is not None:
            new = closed_form(pair, X_e[i], X_g[i], X_p[i], lam, erase_scale, preserve_scale)
            news = {layer.key: new[0], layer.value: new[1]}
        else:
            news = {proj: closed_form(getattr(attn, proj).weight, X_e[i], X_g[i], X_p[i], lam, erase_scale, preserve_scale)
                    for proj in (layer.key, layer.value)}
        solve_seconds += time.perf_counter() - t0
        for proj, new in news.items():
            name = f"{layer.name}.{proj}.weight"
            weights[name] = new.detach().to("cpu")
            fingerprints[name] = _fingerprint(getattr(attn, proj).weight)
    meta = {
        "method": "uce", "model": _model_name(pipe), "family": family, "layers": idx, "concepts": concepts,
        "guides": guides, "erase": texts, "preserve": preserve, "lambda": lam, "erase_scale": float(erase_scale),
        "preserve_scale": float(preserve_scale), "n_rows": int(sum(x.shape[0] for x in X_e.values()) // len(idx)),
        "dtype": str(next(iter(weights.values())).dtype).replace("torch.", ""),
        "edit_seconds": solve_seconds, "encode_seconds": encode_seconds, "loco_lib_version": __version__,
    }
    return Edit(weights=weights, fingerprints=fingerprints, layers=idx,
                layer_names={i: all_layers[i].name for i in idx}, meta=meta)


# -- joint-attention transformers: the text embedder ------------------------------------------------

def _part_starts(pipe, text: str) -> list[int]:
    """Where ``text``'s rows start in each encoder part of the sequence the denoiser reads: its last
    token in the part (:func:`loco_lib.tokens.edit_positions`), or the part's first position for the
    empty text."""
    from .families.registry import pipeline_family
    from .tokens import edit_positions

    starts = pipeline_family(pipe).text_parts(pipe)
    if not text.strip():
        return list(starts)
    found = edit_positions(pipe, text)
    if len(found) != len(starts):  # a part the text does not reach (SD3 without T5: zeros there)
        return [next((f for f in found if a <= f < b), a) for a, b in zip(starts, starts[1:] + [10 ** 9])]
    return found


@torch.no_grad()
def embedder_rows(pipe, erase, guides, preserve=()) -> tuple:
    """``(erase rows, guide rows, preserve rows)`` of the text embedder of a joint-attention
    transformer: the encoded prompt c itself (what ``context_embedder`` reads), in each encoder part
    from the text's last token to the part's end (the authors' offsets, per part: SD3's CLIP part
    and T5 part), every position of each preserve text."""
    from .families.registry import pipeline_family
    from .text import encode

    texts = list(erase) + list(guides) + list(preserve)
    empty = torch.tensor([not t.strip() for t in texts])
    cond = encode(pipe, [t if t.strip() else "." for t in texts])
    x = torch.where(empty.to(cond.embeds.device)[:, None, None], cond.negative, cond.embeds)
    ends = pipeline_family(pipe).text_parts(pipe)[1:] + [x.shape[1]]
    n_e = len(erase)
    out_e, out_g = [], []
    for i, (c, g) in enumerate(zip(erase, guides)):
        for a, b, end in zip(_part_starts(pipe, c), _part_starts(pipe, g), ends):
            n = end - max(a, b)
            out_e.append(x[i, a:a + n])
            out_g.append(x[n_e + i, b:b + n])
    return torch.cat(out_e), torch.cat(out_g), (x[2 * n_e:].reshape(-1, x.shape[-1]) if len(preserve) else None)


def _embedder_edit(pipe, unet, name, family, concepts, guides, texts, text_guides, preserve, lam, erase_scale,
                   preserve_scale) -> Edit:
    """UCE's closed form on the text embedder (``context_embedder``: the one linear map from c into
    every joint block's text stream), as the UCE port to FLUX edits only the text embedders; its
    bias is left as it is."""
    from . import __version__

    start = time.perf_counter()
    X_e, X_g, X_p = embedder_rows(pipe, texts, text_guides, preserve)
    encode_seconds = time.perf_counter() - start
    module = unet.get_submodule(name)
    t0 = time.perf_counter()
    new = closed_form(module.weight, X_e, X_g, X_p, lam, erase_scale, preserve_scale)
    solve_seconds = time.perf_counter() - t0
    weights = {f"{name}.weight": new.detach().to("cpu")}
    meta = {
        "method": "uce", "model": _model_name(pipe), "family": family, "layers": [], "module": name,
        "concepts": concepts, "guides": guides, "erase": texts, "preserve": preserve, "lambda": lam,
        "erase_scale": float(erase_scale), "preserve_scale": float(preserve_scale), "n_rows": int(X_e.shape[0]),
        "dtype": str(new.dtype).replace("torch.", ""), "edit_seconds": solve_seconds, "encode_seconds": encode_seconds,
        "loco_lib_version": __version__,
    }
    return Edit(weights=weights, fingerprints={f"{name}.weight": _fingerprint(module.weight)}, layers=[],
                layer_names={}, meta=meta)
