"""Neuron-level model editing (paper Sec. 7 and App. K).

In the cross-attention layers that LocoGen localizes, the *neurons* are the d' output units of the
key and value projections (``to_k`` / ``to_v`` for SD-1.x/2.x/SD-XL, ``add_k_proj`` /
``add_v_proj`` for DeepFloyd IF) applied to the text states. The paper:

1. takes these outputs at the last subject token for N1 prompts *with* a style ("... in the style of
   Van Gogh") and N2 prompts *without* it, giving two groups z_1..z_N1 and z'_1..z'_N2 per neuron;
2. computes a two-sample statistic per neuron (here Welch's t, ``(mean1 - mean2) / sqrt(s1^2/n1 +
   s2^2/n2)`` with unbiased variances, the paper's "z-score") and ranks neurons by its absolute value;
3. "drops out" the top k neurons (k = 30, 50, 100 of SD's 1280) during generation and measures the
   CLIP-score against the style (Fig. 9 and 10).

Which value replaces a neuron
-----------------------------
The paper's text says "During generation, we drop-out these neurons and see if particular style is
removed or not" (Sec. 7; Fig. 9 and 59/60 captions: "neuron-level dropout"; the conclusion: "a
simple dropout layer"). Taken literally, dropping out a unit sets it to zero. But the text never
names a value, the same captions call them "modified neurons", and the authors' public code (the
only operational description) replaced the selected neurons with their *mean activation over the
style-free prompts* (mean ablation) rather than zero. We read the paper as not stating the value
clearly, so the default here is ``mode="mean"`` (the authors' code); ``mode="zero"`` is the literal
reading of "drop-out". Both are implemented and tested.

Other choices, documented
-------------------------
* Variances: unbiased (ddof=1), as scipy's Welch test. The paper does not say; the authors' code
  (``get_z_score`` in neuron_modifications/detect_neurons.py, github.com/samyadeepbasu/LocoGen)
  uses ``np.std`` (ddof=0). With equally many prompts in both groups the two statistics differ by
  the constant factor sqrt(n / (n - 1)) and rank the neurons identically; with unequal groups the
  ranking can differ.
* Position of the statistics: the paper says the last subject token; the authors' code used token
  position 76 (padding). Default here: the last subject token (``subjects=None`` means the last
  prompt token, which is the subject when the prompt ends with it); ``position=76`` reproduces the
  authors' choice.
* Where the replacement acts: every text token of the conditional rows of the classifier-free
  guidance batch ``[uncond, cond]`` (the unconditional branch is never touched, as in LocoGen).
* k: per projection by default (k neurons of each chosen layer's K output and k of its V output,
  the natural reading of "k of 1280" with d' = 1280 in SD's layer 8); ``scope="global"`` takes the
  k largest ``|z|`` across all chosen layers' K and V outputs together.
* The mechanism: one :class:`~loco_lib.hooks.Patch` per projection on its output (so bias, IF's
  ``encoder_hid_proj`` and GroupNorm come first, exactly as in a plain run), only in the conditional
  rows. Leaving the context removes every hook.
"""
from __future__ import annotations

import numbers
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import LocoError
from .families.registry import denoiser_family
from .hooks import Patch, hooks, kv_site
from .layers import CrossAttentionLayer, cross_attention_layers, kv_inputs, parse_layers
from .text import as_prompt_list, encode
from .tokens import subject_token_indices

PROJECTIONS = ("key", "value")
MODES = ("mean", "zero")
SCOPES = ("projection", "global")


# -- statistics ----------------------------------------------------------------------------------

def _as_float64(x, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise LocoError(f"{what} must be [n] or [n, d] activations, got shape {arr.shape}")
    return arr


def welch_statistic(a, b) -> np.ndarray:
    """Welch's two-sample t statistic per neuron (column), in float64.

    ``a``: ``[n1, d]`` activations of one group, ``b``: ``[n2, d]`` of the other (numpy or torch;
    1-D inputs are one neuron). Returns ``(mean_a - mean_b) / sqrt(s_a^2/n1 + s_b^2/n2)`` with
    unbiased (ddof=1) variances, shape ``[d]``; this is
    ``scipy.stats.ttest_ind(a, b, equal_var=False).statistic``. A neuron constant and equal in both
    groups gives NaN (0/0), as in scipy. Each group needs at least two rows.
    """
    a = _as_float64(a, "the first group")
    b = _as_float64(b, "the second group")
    if a.shape[1:] != b.shape[1:]:
        raise LocoError(f"the groups have different widths: {a.shape[1:]} and {b.shape[1:]}")
    n1, n2 = a.shape[0], b.shape[0]
    if n1 < 2 or n2 < 2:
        raise LocoError(f"each group needs at least 2 prompts for a variance (got {n1} and {n2})")
    diff = a.mean(axis=0) - b.mean(axis=0)
    se2 = a.var(axis=0, ddof=1) / n1 + b.var(axis=0, ddof=1) / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        return diff / np.sqrt(se2)


# -- activations ---------------------------------------------------------------------------------

def _unet(pipe):
    from .families.registry import denoiser

    return denoiser(pipe)


def chosen_layers(unet, layers) -> list[CrossAttentionLayer]:
    """The layer records of ``layers`` (a layer spec: ``[8, 9]``, ``"8,9"``, ``"4-6"``, ``"all"``)."""
    all_layers = cross_attention_layers(unet)
    idx = parse_layers(layers, len(all_layers))
    if not idx:
        raise LocoError("no layers chosen: give the localized layers, e.g. [8, 9]")
    return [all_layers[i] for i in idx]


def _projection_module(attn, layer: CrossAttentionLayer, proj: str) -> torch.nn.Module:
    if getattr(attn, "fused_projections", False):
        raise LocoError(f"layer {layer.index} has fused K/V projections: unfuse them (unet.unfuse_qkv_projections()) first")
    return getattr(attn, layer.key if proj == "key" else layer.value)


def _token_positions(pipe, prompts, subjects, position, seq_len: int) -> torch.Tensor:
    if position is None:
        pos = subject_token_indices(pipe, prompts, subjects)
    else:
        if subjects is not None:
            raise LocoError("give either subjects or a fixed position, not both")
        if isinstance(position, bool) or not isinstance(position, numbers.Integral):
            raise LocoError(f"position must be a token index, got {position!r}")
        pos = [int(position)] * len(prompts)
    bad = [p for p in pos if not 0 <= p < seq_len]
    if bad:
        raise LocoError(f"token position {bad[0]} is outside the {seq_len}-token text sequence")
    return torch.tensor(pos, dtype=torch.long)


@torch.no_grad()
def kv_activations(pipe, layers, prompts, subjects=None, *, position: int | None = None, runs: dict | None = None) -> dict:
    """Key and value projection outputs of the chosen layers at each prompt's last subject token.

    Returns ``{layer_index: {"key": [n, d'], "value": [n, d']}}`` (float32, CPU). The projections
    are the layer's own modules applied to exactly what they see in a UNet call: the pipeline's
    text embedding (``encode(pipe, prompts).embeds``), for IF passed through ``encoder_hid_proj``
    and the layer's GroupNorm ``norm_cross`` (over the whole sequence, as diffusers'
    ``AttnAddedKVProcessor`` does) before the position is taken. ``subjects``: one per prompt, one
    for all, or None (the last prompt token); ``position``: a fixed token index for every prompt
    instead (``76`` reproduces the authors' code).

    A joint-attention transformer (SD3, FLUX: its family's ``text_from_run``) reads there what the
    run has made of the text: each prompt's activation is the mean over its own runs (``runs``:
    ``seeds``, ``steps``, ``guidance``, ``size`` of :func:`loco_lib.locoedit.rows_along_runs`), every
    step, and the subject's last token in each encoder part.
    """
    prompts = as_prompt_list(prompts)
    unet = _unet(pipe)
    chosen = chosen_layers(unet, layers)
    if denoiser_family(pipe).text_from_run:
        rows, per_prompt = _rows_along_runs(pipe, chosen, prompts, subjects, position, runs)
    else:
        embeds = encode(pipe, prompts).embeds
        pos = _token_positions(pipe, prompts, subjects, position, embeds.shape[1])
        rows, per_prompt = kv_inputs(unet, chosen, embeds, pos), 1
    modules = dict(unet.named_modules())
    out: dict = {}
    for layer in chosen:
        out[layer.index] = {}
        for proj in PROJECTIONS:
            module = _projection_module(modules[layer.name], layer, proj)
            acts = module(rows[layer.index].to(module.weight.dtype)).float().cpu()
            out[layer.index][proj] = acts.view(len(prompts), per_prompt, -1).mean(1) if per_prompt > 1 else acts
    return out


def _rows_along_runs(pipe, chosen, prompts, subjects, position, runs) -> tuple[dict, int]:
    """A joint-attention transformer's K/V inputs at the subject, recorded along each prompt's own
    runs (:func:`loco_lib.locoedit.rows_along_runs`: every step of each seed's guided run, at the
    subject's last token in each encoder part, or at ``position``), and how many rows each prompt
    has: a neuron's activation for a prompt is their mean (loco's choice)."""
    from .locoedit import _as_list, rows_along_runs
    from .tokens import edit_positions

    if position is not None:
        if subjects is not None:
            raise LocoError("give either subjects or a fixed position, not both")
        positions = [[int(position)] for _ in prompts]
    else:
        positions = [edit_positions(pipe, p, s) for p, s in zip(prompts, _as_list(subjects, len(prompts), "subjects"))]
    rows = rows_along_runs(pipe, [la.index for la in chosen], prompts, positions, **(runs or {}))
    return rows, next(iter(rows.values())).shape[0] // len(prompts)


# -- ranking -------------------------------------------------------------------------------------

Key = tuple  # (layer index, "key" | "value")


def _order(abs_z: np.ndarray) -> np.ndarray:
    """Indices by ``|z|`` descending; ties keep neuron order; NaN (constant neurons) last."""
    key = np.where(np.isnan(abs_z), -1.0, abs_z)
    return np.argsort(-key, kind="stable")


@dataclass
class NeuronRanking:
    """Per (layer, projection): Welch statistics, the ``|z|`` ordering and the style-free mean."""

    layers: list[CrossAttentionLayer]
    z: dict  # {(layer, proj): float64 [d'] signed statistic}
    neutral_mean: dict  # {(layer, proj): float64 [d'] mean activation over the style-free prompts}
    n_with: int
    n_without: int
    position: int | None = None
    order: dict = field(init=False)  # {(layer, proj): int64 [d'] neuron indices by ``|z|`` descending}

    def __post_init__(self):
        self.order = {key: _order(np.abs(z)) for key, z in self.z.items()}

    @property
    def keys(self) -> list:
        return [(l.index, p) for l in self.layers for p in PROJECTIONS]

    @property
    def abs_z(self) -> dict:
        return {key: np.abs(z) for key, z in self.z.items()}

    def width(self, key) -> int:
        return int(self.z[key].shape[0])

    def top(self, k: int, scope: str = "projection") -> dict:
        """The selection ``{(layer, proj): int64 neuron indices}`` of the k neurons of largest ``|z|``.

        ``scope="projection"`` (default): k neurons of every chosen layer's K output and k of its V
        output. ``scope="global"``: the k largest ``|z|`` over all chosen K and V outputs together
        (ties: layer order, then key before value, then neuron index). NaN statistics come last.
        """
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
            raise LocoError(f"k must be a non-negative integer, got {k!r}")
        k = int(k)
        if scope not in SCOPES:
            raise LocoError(f"scope must be one of {SCOPES}, got {scope!r}")
        if scope == "projection":
            sel = {}
            for key in self.keys:
                if k > self.width(key):
                    raise LocoError(f"k={k} is more than the {self.width(key)} neurons of layer {key[0]}'s {key[1]} projection")
                sel[key] = self.order[key][:k].copy()
            return sel
        total = sum(self.width(key) for key in self.keys)
        if k > total:
            raise LocoError(f"k={k} is more than the {total} neurons of the chosen projections")
        flat = np.concatenate([np.abs(self.z[key]) for key in self.keys])
        owner = np.concatenate([np.full(self.width(key), i) for i, key in enumerate(self.keys)])
        neuron = np.concatenate([np.arange(self.width(key)) for key in self.keys])
        picked = _order(flat)[:k]
        sel = {}
        for i, key in enumerate(self.keys):
            mine = picked[owner[picked] == i]
            sel[key] = neuron[mine].astype(np.int64)
        return sel

    def table(self):
        """One row per neuron (layer, projection, neuron, z, ``|z|``, rank, neutral mean), by ``|z|`` descending."""
        import pandas as pd

        frames = []
        for key in self.keys:
            z = self.z[key]
            rank = np.empty(len(z), dtype=np.int64)
            rank[self.order[key]] = np.arange(len(z))
            frames.append(pd.DataFrame({
                "layer": key[0], "projection": key[1], "neuron": np.arange(len(z)), "z": z,
                "abs_z": np.abs(z), "rank": rank, "neutral_mean": self.neutral_mean[key],
            }))
        df = pd.concat(frames, ignore_index=True)
        return df.sort_values("abs_z", ascending=False, kind="stable", na_position="last").reset_index(drop=True)


def rank_neurons(pipe, layers, with_style, without_style, subjects_with=None, subjects_without=None, *,
                 position: int | None = None, runs: dict | None = None) -> NeuronRanking:
    """Rank the K/V output neurons of ``layers`` by ``|Welch z|`` between prompts with and without a style.

    ``with_style`` / ``without_style``: at least two prompts each (the two groups may differ in
    size). ``subjects_with`` / ``subjects_without``: the subject whose last token is read (e.g.
    ``"van gogh"`` and ``"a painting"``), one per prompt, one for all, or None (the last prompt
    token). ``position``: one fixed token index for every prompt instead (the authors' code used 76).
    """
    unet = _unet(pipe)
    chosen = chosen_layers(unet, layers)
    acts_w = kv_activations(pipe, layers, with_style, subjects_with, position=position, runs=runs)
    acts_o = kv_activations(pipe, layers, without_style, subjects_without, position=position, runs=runs)
    z, mean = {}, {}
    for layer in chosen:
        for proj in PROJECTIONS:
            a, b = acts_w[layer.index][proj], acts_o[layer.index][proj]
            z[(layer.index, proj)] = welch_statistic(a, b)
            mean[(layer.index, proj)] = b.double().mean(dim=0).numpy()
    n_with = next(iter(acts_w.values()))["key"].shape[0]
    n_without = next(iter(acts_o.values()))["key"].shape[0]
    return NeuronRanking(chosen, z, mean, n_with, n_without, position)


# -- the edit ------------------------------------------------------------------------------------

class NeuronEdit:
    """The top-k K/V output neurons of a ranking and the values that replace them.

    ``mode="mean"`` (default, the authors' code) writes the style-free mean activation,
    ``mode="zero"`` writes 0 (the literal "drop-out"). :meth:`patches` gives the
    :class:`~loco_lib.hooks.Patch` es that do it in the conditional rows of a UNet.
    """

    def __init__(self, ranking: NeuronRanking, k: int, mode: str = "mean", *, scope: str = "projection"):
        if mode not in MODES:
            raise LocoError(f"mode must be one of {MODES}, got {mode!r}")
        self.ranking = ranking
        self.k = k
        self.mode = mode
        self.scope = scope
        self.selection = ranking.top(k, scope)
        self.values = {}
        for key, idx in self.selection.items():
            v = ranking.neutral_mean[key][idx] if mode == "mean" else np.zeros(len(idx))
            self.values[key] = torch.as_tensor(v, dtype=torch.float64)

    @property
    def n_neurons(self) -> int:
        return int(sum(len(idx) for idx in self.selection.values()))

    def patches(self, unet) -> list[Patch]:
        """One patch per chosen projection; refuses a model the ranking was not made on."""
        layers = cross_attention_layers(unet)
        patches = []
        for mine in self.ranking.layers:
            if mine.index >= len(layers) or layers[mine.index].name != mine.name:
                raise LocoError(f"the ranking's layer {mine.index} ({mine.name}) is not in this model: rank the neurons on the same model")
            attn = unet.get_submodule(mine.name)
            for proj in PROJECTIONS:
                module = _projection_module(attn, mine, proj)
                key = (mine.index, proj)
                if module.out_features != self.ranking.width(key):
                    raise LocoError(f"layer {mine.index}'s {proj} projection has {module.out_features} outputs, the ranking {self.ranking.width(key)}")
                patches.append(Patch(kv_site(mine, proj), _replace_units(self.selection[key], self.values[key])))
        return patches


def _replace_units(idx_np: np.ndarray, values: torch.Tensor):
    """A patch function writing ``values`` into output units ``idx_np`` at every token."""

    def replace(clean, call):
        out = clean.clone()
        if len(idx_np):
            out[..., torch.as_tensor(idx_np, device=out.device)] = values.to(device=out.device, dtype=out.dtype)
        return out

    return replace


@contextmanager
def neurons_replaced(pipe, ranking: NeuronRanking, k: int, mode: str = "mean", guidance: bool | None = None, *,
                     n_samples: int | None = None, scope: str = "projection"):
    """Context manager: inside it, ``pipe`` runs with the top-k neurons of ``ranking`` replaced.

    Yields the :class:`NeuronEdit` (its ``selection`` lists the neurons). ``guidance``: whether the
    pipeline runs classifier-free guidance; ``n_samples``: images per pipeline call (one of the two
    is needed; both make a wrong layout an error instead of a guess).
    """
    edit = NeuronEdit(ranking, k, mode, scope=scope)
    with hooks(pipe, patches=edit.patches(_unet(pipe)), n_samples=n_samples, guidance=guidance):
        yield edit


# -- sweep and figure ------------------------------------------------------------------------------

def k_sweep(pipe, ranking: NeuronRanking, prompts, ks=(0, 30, 50, 100), scorer=None, seeds=0, steps: int | None = None,
            mode: str = "mean", *, score_texts=None, guidance: float | None = None, size: int | None = None,
            scope: str = "projection", batch_size: int = 8, label: str | None = None, keep_images: bool = False):
    """CLIP-score of the style prompts' images as more neurons are replaced (paper Fig. 10).

    For each k in ``ks`` generates one image per prompt (same ``seeds`` for every k) with the top-k
    neurons replaced and scores it against ``score_texts`` (default: the prompts themselves; the
    paper scores against 'style of <artist>'). ``scorer``: a :class:`~loco_lib.clip_score.ClipScorer`
    (None: the default ``openai/clip-vit-large-patch14``). Returns a DataFrame with one row per k:
    ``k, n_neurons, mode, scope, clip_score`` (mean), ``std`` (over prompts, ddof=0), ``scores``
    (list of per-prompt scores) and ``label`` when given; with the organism's scorer also
    ``accuracy`` (its readouts against the prompts), and with ``keep_images`` the ``images`` (PIL).
    """
    import pandas as pd

    from . import settings
    from .clip_score import clip_score
    from .generate import generate

    # every setting is checked before the first k is generated
    prompts = settings.prompts(pipe, prompts)
    texts = prompts if score_texts is None else ([score_texts] if isinstance(score_texts, str) else list(score_texts))
    g = settings.guidance(pipe, guidance)
    steps, size, batch_size = settings.steps(pipe, steps), settings.size(size), settings.batch_size(batch_size, 8)
    seeds = settings.seeds_per_prompt(seeds, len(prompts))
    ks = [ks] if isinstance(ks, numbers.Integral) else list(ks)
    if not ks:
        raise LocoError("no k given")
    rows = []
    for k in ks:
        with neurons_replaced(pipe, ranking, k, mode, guidance=g > 1.0, scope=scope) as edit:
            gen = generate(pipe, prompts, seeds=seeds, steps=steps, guidance=g, size=size, batch_size=batch_size,
                           output_type="np", progress=False)
        scores = clip_score(gen.images, texts, scorer).double().cpu().numpy()
        row = {"k": int(k), "n_neurons": edit.n_neurons, "mode": mode, "scope": scope,
               "clip_score": float(scores.mean()), "std": float(scores.std()), "scores": scores.tolist()}
        readouts = scorer is not None and hasattr(scorer, "accuracy")
        if keep_images or readouts:
            from diffusers.image_processor import VaeImageProcessor

            pil = VaeImageProcessor.numpy_to_pil(np.stack(gen.images))  # what output_type="pil" gives
            if readouts:
                row["accuracy"] = scorer.accuracy(pil, prompts)
            if keep_images:
                row["images"] = pil
        if label is not None:
            row["label"] = label
        rows.append(row)
    return pd.DataFrame(rows)


def plot_k_sweep(df, ax=None, title: str | None = None):
    """Bar plot of CLIP-score vs k with per-prompt spread (like the paper's Fig. 10); returns the figure.

    ``df``: one or more :func:`k_sweep` results (concatenate sweeps with a ``label`` column, e.g. the
    artist, to get the paper's grouped bars).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    long = df.drop(columns=["images", "accuracy"], errors="ignore").explode("scores").rename(columns={"scores": "score"})
    long["score"] = long["score"].astype(float)
    long["k"] = long["k"].astype(str)
    if ax is None:
        grouped = "label" in long.columns
        width = max(4.5, 1.2 * long["label"].nunique() + 3) if grouped else max(3.5, 0.8 * long["k"].nunique() + 1.5)
        fig, ax = plt.subplots(figsize=(width, 3.2))
    else:
        fig = ax.figure
    if "label" in long.columns:
        sns.barplot(data=long, x="label", y="score", hue="k", errorbar="sd", ax=ax, palette="rocket")
        ax.set_xlabel("")
        ax.legend(title="neurons\nmodified (k)", frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        sns.barplot(data=long, x="k", y="score", errorbar="sd", ax=ax, color="#c44e52")
        ax.set_xlabel("neurons modified (k)")
    ax.set_ylabel("CLIP-score")
    ax.set_title(title or "Neuron-level editing: CLIP-score vs k")
    fig.tight_layout()
    return fig
