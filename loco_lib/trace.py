"""Causal tracing (paper Sec. 4, App. A, Figs. 2, 3, 11-13): which internal states carry the subject.

The paper revisits the causal tracing of Basu et al. 2023 ("Localizing and Editing Knowledge in
Text-to-Image Generative Models", https://arxiv.org/abs/2310.13730), itself after ROME's (Meng et
al. 2022, https://github.com/kmeng01/rome, ``experiments/causal_trace.py``). Three runs per prompt
and seed:

* **clean**: the prompt as it is;
* **corrupted**: Gaussian noise added to the input token embeddings of the subject's tokens, in
  every text encoder the pipeline has (SD-XL: both). The noise has ``factor`` (default 3, ROME's
  factor) times the standard deviation of that encoder's whole token-embedding table (loco's
  choice; ROME measures it over the embeddings of subject tokens), and is drawn from a CPU
  generator seeded with ``CORRUPTION_SEED + seed``, so a trace is reproducible;
* **restored**: the corrupted run with one state (or a window of adjacent states) set back to the
  value it has in the clean run.

A state's *effect* is the CLIP-score of the restored image against the original prompt, and the
fraction of the clean-corrupted gap it restores, ``(mean restored - mean corrupted) / (mean clean
- mean corrupted)`` (means over prompts and seeds; loco's choice: a ratio of means, so that a
prompt whose gap is near zero does not blow up the average). An image (prompt and seed) whose
corruption lowers its score by less than ``floor`` (:data:`GAP_FLOOR`, a fraction of its clean
score; loco's choice) was not corrupted: it carries no evidence about which state restores the
subject, so every mean above is taken over the images that corrupt, and the result says how many
were left out (:meth:`TraceResult.summary`). The floor is a reading, not a setting of the runs:
``result.floor`` can be changed on a finished trace.

Where (``where``):

* ``"unet"``: every ResNet block, every transformer block and its cross-attention (IF: its
  added-K/V attention modules), in execution order (:func:`unet_states`), restored at every
  denoising step, or only in a band of steps (``bands``). loco restores the conditional branch only
  (loco's choice): the unconditional branch never reads the prompt, and it must run on the
  restored run's own latent for the guidance formula to hold (the argument of Sec. 5.1.1).
* ``"text"``: one text-encoder layer's self-attention output or MLP output (or the whole layer's
  output) at the subject's last token (``tokens="last"``) or all its tokens (``"subject"``),
  :func:`encoder_states`; CLIP (SD-1.x/2.x, each of SD-XL's two encoders with ``encoder=1|2``) and
  T5 (DeepFloyd IF). The restore applies to the prompt's encoding only (the first call of each
  encoder in a pipeline call), never to the negative prompt's.

How. Every restored run is a set of :class:`~loco_lib.hooks.Patch` es on the one record/patch
mechanism (:mod:`loco_lib.hooks`): the clean run rides as sample 0 of each batch and every restored
run copies its state from there (:class:`~loco_lib.hooks.FromSample`), so no activation is ever
stored, at any model size. Many restored runs share one UNet batch, and bitwise-identical rows are
evaluated once (the unconditional rows at the first step; restored runs that equal the corrupted
one). ``batched=False`` runs one pipeline call per restored state instead (ROME's loop), for
comparison; both agree to float rounding: a batch's composition changes the order of float32
sums, <= 1e-5 per pixel after 4 steps (tested), a few 1e-5 after toy's 15
(``benchmarks/trace_batched.py``). Finished runs are cached on disk (image and
score per run, :class:`~loco_lib.sweep.SweepCache`), so an interrupted trace resumes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from . import parallel, settings
from .errors import LocoError
from .families.base import State  # noqa: F401 (the record of a restorable state; its home was here)
from .hooks import FromSample, Patch, Site, hooks

WHERE = ("unet", "text")
UNET_KINDS = ("resnet", "transformer", "cross-attention", "attention")  # loco's states (the default)
# The paper's states: each ResNet block and, inside every transformer block, its self-attention
# (attn1), cross-attention (attn2) and feed-forward (ff): 22 + 16 x 3 = 70 for SD-2.1 and
# 17 + 70 x 3 = 227 for SD-XL, the lengths of the poster's UNet panels. IF's attention modules stay
# one state each (``"attention"``).
PAPER_UNET_KINDS = ("resnet", "self-attention", "cross-attention", "feed-forward", "attention")
UNET_GRANULARITY = {"loco": UNET_KINDS, "paper": PAPER_UNET_KINDS}
# joint-attention blocks (SD3, FLUX): each block's two output streams, and the pooled text's path
# into the time embedding (the default there, :attr:`~loco_lib.families.base.DenoiserFamily.trace_kinds`)
JOINT_KINDS = ("pooled", "image stream", "text stream")
_UNET_ALLOWED = UNET_KINDS + ("self-attention", "feed-forward") + JOINT_KINDS
TEXT_KINDS = ("self-attention", "mlp", "layer")
TOKEN_MODES = ("last", "subject", "all")
NOISE_FACTOR = 3.0  # ROME's factor: 3 x a standard deviation of the token embeddings
CORRUPTION_SEED = 10_000_019  # the corruption of seed s is drawn with seed CORRUPTION_SEED + s
CACHE_FORMAT = 1
GAP_FLOOR = 0.05  # an image counts as corrupted when its corruption lowers its score by >= 5% of its clean score (loco's choice)


def default_cache_dir():
    """Where traces keep finished runs when no folder is given by a chapter: ``$LOCO_CACHE_DIR/trace``
    or ``_build/trace-cache`` at the repository root (shared by every notebook run, wherever it runs from)."""
    import os
    from pathlib import Path

    env = os.environ.get("LOCO_CACHE_DIR")
    return Path(env) / "trace" if env else Path(__file__).resolve().parents[1] / "_build" / "trace-cache"


# -- states -------------------------------------------------------------------------------------------

def unet_states(unet, kinds=None) -> list[State]:
    """The denoiser's restorable states in execution order (its family's walk,
    :meth:`loco_lib.families.base.DenoiserFamily.states`). For a UNet: in each block, its ResNet
    blocks and attention modules as its forward interleaves them (the mid block starts with a ResNet
    block); inside an attention module each transformer block, then its self-attention (``attn1``),
    cross-attention (``attn2``) and feed-forward (``ff``). IF's attention modules read the text
    themselves (added K/V) and are one state each (``"attention"``). ``kinds``: which kinds (default
    :data:`UNET_KINDS`, loco's: whole transformer blocks and their cross-attention;
    :data:`PAPER_UNET_KINDS`: the paper's count, self-attention, cross-attention and feed-forward
    instead of whole transformer blocks)."""
    from .families.registry import denoiser, denoiser_family

    family = denoiser_family(unet)
    kinds = _check_kinds(kinds, _UNET_ALLOWED, family.trace_kinds or UNET_KINDS)
    return family.states(denoiser(unet), kinds)


def granularity_counts(unets: dict):
    """Per UNet (``{name: unet}``, meta-device ones included): its ResNet blocks, transformer blocks
    and IF-style attention modules, and its states at each granularity (:data:`UNET_GRANULARITY`)."""
    import pandas as pd

    rows = {}
    for name, unet in unets.items():
        kinds = [s.kind for s in unet_states(unet, _UNET_ALLOWED)]
        rows[name] = {"ResNet blocks": kinds.count("resnet"), "transformer blocks": kinds.count("transformer"),
                      "attention modules (IF)": kinds.count("attention"),
                      **{f"{g} states": len(unet_states(unet, k)) for g, k in UNET_GRANULARITY.items()}}
    return pd.DataFrame.from_dict(rows, orient="index")


def causal_shares(traces: dict, thresholds=(0.5, 0.9)):
    """Per single-band trace (``{label: TraceResult}``): its entries, and how many of them alone
    restore at least each threshold of the gap, as a count and a share of the entries."""
    import pandas as pd

    rows = {}
    for label, result in traces.items():
        n = len(result.sets)
        row = {"states": n}
        for f in thresholds:
            k = len(result.causal(f))
            row[f"restore >= {f:.0%}"] = k
            row[f"share >= {f:.0%}"] = k / n
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def encoder_component(pipe, encoder: int = 1) -> str:
    """``"text_encoder"`` (``encoder=1``), ``"text_encoder_2"`` (SD-XL's second encoder, FLUX's T5) or
    ``"text_encoder_3"`` (SD3's T5)."""
    if isinstance(encoder, bool) or encoder not in (1, 2, 3):
        raise LocoError(f"encoder is 1, 2, 3 or 'both', got {encoder!r}")
    name = "text_encoder" if encoder == 1 else f"text_encoder_{encoder}"
    if not isinstance(getattr(pipe, name, None), torch.nn.Module):
        count = sum(isinstance(getattr(pipe, n, None), torch.nn.Module) for n in ("text_encoder", "text_encoder_2",
                                                                                 "text_encoder_3"))
        loaded = "one text encoder" if count == 1 else f"{count} text encoders loaded"
        raise LocoError(f"this model has {loaded}: there is no encoder {encoder}" if count
                        else "this pipeline has no text encoder")
    return name


def encoder_components(pipe, encoder=1) -> list[str]:
    """The text encoders a trace restores in: ``encoder`` 1 or 2 (:func:`encoder_component`), or
    ``"both"``: SD-XL's two encoders together."""
    if encoder == "both":
        encoder_component(pipe, 2)  # one line if the model has a single encoder
        return ["text_encoder", "text_encoder_2"]
    return [encoder_component(pipe, encoder)]


def model_encoders(pipe) -> list:
    """What "every text encoder of the model" traces: ``[1]``, or for SD-XL ``[1, 2, "both"]``
    (each encoder alone, and the same state restored in both together), for SD3 ``[1, 2, 3]``."""
    if isinstance(getattr(pipe, "text_encoder_3", None), torch.nn.Module):
        return [1, 2, 3]  # SD3: two CLIPs and T5, each alone
    return [1, 2, "both"] if isinstance(getattr(pipe, "text_encoder_2", None), torch.nn.Module) else [1]


def encoder_states(pipe, encoder=1, kinds=("self-attention", "mlp")) -> list[State]:
    """The text encoder's restorable states, layer by layer: its self-attention output, its MLP
    output, and (``"layer"``) the layer's whole output (the residual stream). CLIP and T5.

    ``encoder="both"`` (SD-XL): the states of both encoders, layer by layer and kind by kind, each
    of encoder 1 next to the same state of encoder 2 (layers counted from the input; past encoder
    1's depth, 12 layers against 32, encoder 2's alone). A trace restores each such pair together
    (:func:`entries`)."""
    if encoder == "both":
        both = [encoder_states(pipe, e, kinds) for e in (1, 2)]
        merged = sorted(both[0] + both[1], key=lambda s: (s.layer, TEXT_KINDS.index(s.kind), s.component))
        return [State(i, s.name, s.kind, s.component, s.block) for i, s in enumerate(merged)]
    kinds = _check_kinds(kinds, TEXT_KINDS)
    component = encoder_component(pipe, encoder)
    enc = getattr(pipe, component)
    names = {name: m for name, m in enc.named_modules()}
    clip = [n for n, m in names.items() if n.endswith("encoder.layers") and isinstance(m, torch.nn.ModuleList)]
    t5 = [n for n, m in names.items() if n.endswith("encoder.block") and isinstance(m, torch.nn.ModuleList)]
    if clip:  # CLIPTextModel / CLIPTextModelWithProjection (with or without the text_model level)
        n = len(names[clip[0]])
        base, parts = clip[0] + ".{}", {"self-attention": ".self_attn", "mlp": ".mlp", "layer": ""}
    elif t5:  # T5EncoderModel
        n = len(names[t5[0]])
        base, parts = t5[0] + ".{}", {"self-attention": ".layer.0.SelfAttention", "mlp": ".layer.1.DenseReluDense", "layer": ""}
    elif isinstance(names.get("layers"), torch.nn.ModuleList) and hasattr(names["layers"][0], "self_attn"):
        n = len(names["layers"])  # a decoder-only encoder (SANA's Gemma-2): layers.{i}.self_attn / .mlp
        base, parts = "layers.{}", {"self-attention": ".self_attn", "mlp": ".mlp", "layer": ""}
    else:
        raise LocoError(f"tracing knows CLIP, T5 and Gemma-style text encoders, not {type(enc).__name__}")
    out = []
    for i in range(n):
        for kind in TEXT_KINDS:
            if kind in kinds:
                out.append(State(len(out), base.format(i) + parts[kind], kind, component, f"layer {i}"))
    return out


def entries(states: list[State]) -> list[tuple[int, ...]]:
    """The traced entries of a list of states: each state alone, except that text-encoder states of
    the same layer and kind in several encoders (``encoder="both"``) form one entry."""
    groups: dict = {}
    for s in states:
        key = (s.layer, s.kind) if s.component != "unet" else s.index
        groups.setdefault(key, []).append(s.index)
    return [tuple(g) for g in groups.values()]


def _check_kinds(kinds, allowed, default=None) -> tuple:
    if kinds is None:
        return tuple(allowed if default is None else default)
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    bad = [k for k in kinds if k not in allowed]
    if bad or not kinds:
        raise LocoError(f"unknown state kind(s) {', '.join(map(repr, bad)) or '(none)'}: use {', '.join(allowed)}")
    return kinds


def windows(n: int, window: int) -> list[tuple[int, ...]]:
    """ROME's windows: for each state i, the ``window`` adjacent states centred on it (cut at the ends)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise LocoError(f"window must be a positive integer, got {window!r}")
    return [tuple(range(max(0, i - window // 2), min(n, i - (-window // 2)))) for i in range(n)]


def step_bands(steps: int, bands: int) -> list[tuple[int, ...]]:
    """``bands`` contiguous, nearly equal bands of the denoising steps 0..steps-1 (early to late)."""
    if isinstance(bands, bool) or not isinstance(bands, int) or not 1 <= bands <= steps:
        raise LocoError(f"bands must be an integer from 1 to the number of steps ({steps}), got {bands!r}")
    edges = np.linspace(0, steps, bands + 1).round().astype(int)
    return [tuple(range(edges[b], edges[b + 1])) for b in range(bands)]


# -- the corruption -----------------------------------------------------------------------------------

def _encoders(pipe) -> list[tuple[str, object]]:
    """(component, tokenizer) of every text encoder the pipeline uses."""
    out = [("text_encoder", pipe.tokenizer)]
    for k in (2, 3):  # SD-XL's second CLIP; FLUX's T5; SD3's second CLIP and T5 (when the pipeline has it)
        if isinstance(getattr(pipe, f"text_encoder_{k}", None), torch.nn.Module):
            out.append((f"text_encoder_{k}", getattr(pipe, f"tokenizer_{k}")))
    return out


def embedding_site(pipe, component: str = "text_encoder") -> Site:
    """The output of ``component``'s input token-embedding lookup (before position embeddings).

    The module the encoder's forward actually calls: T5 keeps its table as ``shared`` and calls a
    second module, ``encoder.embed_tokens``, that holds the same (tied) weight."""
    enc = getattr(pipe, component)
    table = enc.get_input_embeddings()
    tied = [(name, m) for name, m in enc.named_modules(remove_duplicate=False)
            if isinstance(m, torch.nn.Embedding) and m.weight is table.weight]
    called = [name for name, m in tied if name.endswith(("embed_tokens", "token_embedding"))]
    if called:
        return Site(component, called[0], "output")
    if tied:
        return Site(component, tied[0][0], "output")
    raise LocoError(f"cannot find the token embeddings of {component}")  # pragma: no cover


def noise_scale(pipe, component: str = "text_encoder", factor: float = NOISE_FACTOR) -> float:
    """``factor`` x the standard deviation of the entries of ``component``'s token-embedding table."""
    w = getattr(pipe, component).get_input_embeddings().weight
    return float(factor) * float(w.detach().float().std())


def _check_factor(factor) -> float:
    try:
        factor = float(factor)
    except (TypeError, ValueError):
        raise LocoError(f"the noise factor must be a number, got {factor!r}") from None
    if not (factor >= 0 and np.isfinite(factor)):
        raise LocoError(f"the noise factor must be a finite number >= 0, got {factor}")
    return factor


def corruption(pipe, prompt: str, subject: str, seed: int, samples, factor: float = NOISE_FACTOR) -> list[Patch]:
    """Patches adding the seeded noise to the subject's token embeddings of ``prompt`` in each text
    encoder, for ``samples`` of the next encoding (the prompt's encoding only: the first call of
    each encoder)."""
    from .tokens import encoder_positions, subject_tokens

    gen = torch.Generator("cpu").manual_seed(CORRUPTION_SEED + int(seed))
    patches = []
    from .families.registry import pipeline_family

    family = pipeline_family(pipe)
    for component, tok in _encoders(pipe):
        view = family.encoder_view(pipe, component)
        positions = encoder_positions(view, subject_tokens(view, prompt, subject))
        dim = getattr(pipe, component).get_input_embeddings().weight.shape[1]
        noise = torch.randn(len(positions), dim, generator=gen) * noise_scale(pipe, component, factor)

        def add(clean, call, positions=positions, noise=noise):
            out = clean.clone()
            out[:, positions] = clean[:, positions] + noise.to(clean.device, clean.dtype)
            return out

        patches.append(Patch(embedding_site(pipe, component), add, samples=samples, steps=[0]))
    return patches


def token_positions(pipe, prompt: str, subject: str, tokens, component: str = "text_encoder") -> list[int] | None:
    """The token positions a text-encoder restore touches: the subject's last token (``"last"``),
    all its tokens (``"subject"``), every position (``"all"``: None) or a list of positions."""
    from .tokens import encoder_positions, subject_tokens

    if isinstance(tokens, str):
        if tokens not in TOKEN_MODES:
            raise LocoError(f"unknown token choice {tokens!r}: use one of {', '.join(TOKEN_MODES)} or a list of positions")
        if tokens == "all":
            return None
        from .families.registry import pipeline_family

        tok = pipeline_family(pipe).encoder_view(pipe, component)
        inside = encoder_positions(tok, subject_tokens(tok, prompt, subject))
        return inside[-1:] if tokens == "last" else inside
    positions = [int(p) for p in tokens]
    if not positions or min(positions) < 0:
        raise LocoError(f"token positions are non-negative integers, got {tokens!r}")
    return positions


# -- runs ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One image of a trace: prompt, seed, and which states are restored (None: the clean run,
    (): the corrupted run) in which band of steps (index into the trace's bands)."""

    prompt_index: int
    seed: int
    restore: tuple | None
    band: int = 0


@dataclass
class TraceResult:
    """Scores of the clean, corrupted and restored runs of a trace, with everything needed to read them."""

    where: str
    encoder: object  # 1, 2 or "both"
    prompts: list
    subjects: list
    seeds: list
    states: list  # State
    sets: list  # tuples of state indices restored together (one per traced entry)
    bands: list  # tuples of steps (the UNet's bands; one band of every step for text traces)
    tokens: object
    scores: dict  # Run -> float
    images: dict = field(default_factory=dict, repr=False)  # Run -> PIL image
    settings: dict = field(default_factory=dict)
    counter: dict = field(default_factory=dict)  # UNet calls / rows evaluated in this run
    seconds: float = 0.0
    computed: list = field(default_factory=list)  # runs this process generated now (the rest: the cache, other processes)
    arrays: dict = field(default_factory=dict, repr=False)  # Run -> float image, for fresh runs (keep_arrays)
    floor: float = GAP_FLOOR  # the smallest gap, as a fraction of the clean score, of an image that counts

    def image_keys(self) -> list[tuple[int, int]]:
        """Every image of the trace as (prompt index, seed)."""
        return [(p, s) for p in range(len(self.prompts)) for s in self.seeds]

    def gap(self, p: int, s: int) -> float:
        """Image (prompt ``p``, seed ``s``)'s clean score minus its corrupted score."""
        return self.scores[Run(p, s, None)] - self.scores[Run(p, s, ())]

    def corrupts(self, p: int, s: int) -> bool:
        """Whether the corruption lowered image (``p``, ``s``)'s score by at least ``floor`` of its clean score."""
        return bool(self.gap(p, s) >= self.floor * abs(self.scores[Run(p, s, None)]))

    @property
    def corrupting(self) -> list[tuple[int, int]]:
        """The images whose corruption corrupts: every mean and restored fraction is taken over these."""
        return [im for im in self.image_keys() if self.corrupts(*im)]

    def _mean(self, restore, band: int = 0, images=None) -> float:
        images = self.corrupting if images is None else images
        if not images:
            return float("nan")
        return float(np.mean([self.scores[Run(p, s, restore, band if restore else 0)] for p, s in images]))

    @property
    def clean(self) -> float:
        """The mean clean score over the images that corrupt (NaN if none does)."""
        return self._mean(None)

    @property
    def corrupted(self) -> float:
        """The mean corrupted score over the images that corrupt (NaN if none does)."""
        return self._mean(())

    def restored(self, score: float) -> float:
        gap = self.clean - self.corrupted
        return float("nan") if not np.isfinite(gap) or abs(gap) < 1e-12 else (score - self.corrupted) / gap

    def set_name(self, k: int) -> str:
        ids = [self._state_id(i) for i in self.sets[k]]
        if len(ids) == 1:
            return ids[0]
        if len(entries([self.states[i] for i in self.sets[k]])) == 1:  # one state of both encoders
            return " + ".join(ids)
        return f"{ids[0]} .. {ids[-1]}"

    def _state_id(self, i: int) -> str:
        """State ``i``'s module path, with its encoder where a trace restores in both."""
        return _state_id(self.states[i], self.encoder)

    def table(self):
        """One row per traced entry (and band): its states, mean score and restored fraction."""
        import pandas as pd

        rows = []
        for b, band in enumerate(self.bands):
            for k, st in enumerate(self.sets):
                first = self.states[st[0]]
                score = self._mean(st, b)
                rows.append({"index": k, "name": self.set_name(k), "label": first.label, "kind": first.kind,
                             "block": first.block, "band": f"{band[0]}-{band[-1]}", "states": len(st),
                             "score": score, "restored": self.restored(score)})
        return pd.DataFrame(rows)

    def to_json(self) -> dict:
        t = self.table()
        t = t[t["band"] == t["band"].iloc[0]] if len(self.bands) == 1 else t
        layers = [{"index": int(r["index"]), "name": r["name"], "kind": r["kind"], "score": float(r["score"]),
                   "restored": float(r["restored"]), **({"steps": r["band"]} if len(self.bands) > 1 else {})}
                  for _, r in t.iterrows()]
        return {"where": self.where, "encoder": self.encoder, "prompts": self.prompts, "subjects": self.subjects,
                "seeds": self.seeds, "clean": self.clean, "corrupted": self.corrupted, "floor": self.floor,
                "images": len(self.image_keys()), "left_out": len(self.image_keys()) - len(self.corrupting), "layers": layers,
                "settings": self.settings, "unet_rows": self.counter.get("rows"), "seconds": self.seconds}

    def causal(self, threshold: float = 0.5, band: int = 0):
        """The traced entries that alone restore at least ``threshold`` of the gap (strongest first)."""
        t = self.table()
        t = t[t["band"] == t["band"].unique()[band]]
        return t[t["restored"] >= threshold].sort_values("restored", ascending=False)

    def strongest(self, kind: str | None = None, band: int = 0) -> State:
        """The first state of the strongest restoring entry (of ``kind``, if given)."""
        for k in self.ranking(band):
            st = self.states[self.sets[k][0]]
            if kind is None or st.kind == kind:
                return st
        raise LocoError(f"this trace has no {kind!r} states")

    def summary(self, thresholds=(0.5, 0.9)) -> dict:
        """Clean and corrupted scores, how many traced entries alone restore each threshold of the
        gap, and the strongest entry, all over the images that corrupt; how many images the trace
        has and how many of them were left out because their corruption did not corrupt."""
        best = self.ranking()[0]
        out = {"clean": round(self.clean, 2), "corrupted": round(self.corrupted, 2), "entries": len(self.sets)}
        for f in thresholds:
            out[f"restore >= {f:.0%}"] = len(self.causal(f))
        out["strongest"] = self.set_name(best)
        out["strongest restores"] = round(self.restored(self._mean(self.sets[best])), 2)
        out["images"] = len(self.image_keys())
        out["left out"] = len(self.image_keys()) - len(self.corrupting)
        return out

    def ranking(self, band: int = 0) -> list[int]:
        """Traced entries from the strongest restorer to the weakest (over the images that corrupt;
        over every image when none does, a ranking without a restored fraction)."""
        images = self.corrupting or self.image_keys()
        return sorted(range(len(self.sets)), key=lambda k: -self._mean(self.sets[k], band, images))


@dataclass
class Needed:
    """How many of the strongest states, restored together, bring back a fraction of the gap."""

    curve: object  # DataFrame: k, states, score, restored
    needed: dict  # fraction -> smallest k reaching it (None: not reached)
    n_states: int

    def to_json(self) -> dict:
        return {"needed": {str(f): k for f, k in self.needed.items()}, "n_states": self.n_states,
                "curve": self.curve[["k", "score", "restored"]].to_dict(orient="records")}


def states_needed(pipe, result: TraceResult, fractions=(0.5, 0.9), ks=None, **kwargs) -> Needed:
    """Restore the top-k entries of a trace together (ranked by their own effect), for growing k: the
    smallest k that brings back each of ``fractions`` of the clean-corrupted gap says whether the
    knowledge sits in a few states (sparse) or many (distributed). The entries are single states
    (or ``encoder="both"``'s pairs: :func:`entries`). ``ks``: the k to try (default every k up to 8,
    then about x1.5 steps up to all entries). Settings as ``result``'s; ``kwargs`` (cache_dir,
    progress, batch_size, scorer) are passed to :func:`trace`."""
    import pandas as pd

    flat = [i for st in result.sets for i in st]
    if len(flat) != len(set(flat)) or len(result.bands) != 1:
        raise LocoError("states_needed ranks entries that do not overlap: give it a trace with window=1 and one band")
    n = len(result.sets)
    if ks is None:
        ks, k = list(range(1, min(8, n) + 1)), 8
        while k < n:
            k = min(n, int(np.ceil(k * 1.5)))
            ks.append(k)
    ks = sorted({int(k) for k in ks if 1 <= int(k) <= n})
    order = [result.sets[k] for k in result.ranking()]
    sets = [tuple(sorted(i for st in order[:k] for i in st)) for k in ks]
    more = trace(pipe, result.prompts, result.subjects, where=result.where, encoder=result.encoder,
                 kinds=sorted({s.kind for s in result.states}, key=(_UNET_ALLOWED + TEXT_KINDS).index),
                 tokens=result.tokens, sets=sets, seeds=result.seeds, factor=result.settings["factor"],
                 steps=result.settings["steps"], guidance=result.settings["guidance"], size=result.settings["size"],
                 batched=result.settings["batched"], **kwargs)
    more.floor = result.floor
    rows = []
    for k, st in zip(ks, sets):
        score = more._mean(st)
        rows.append({"k": k, "states": [more._state_id(i) for i in st], "score": score, "restored": more.restored(score)})
    curve = pd.DataFrame(rows)
    needed = {}
    for f in fractions:
        hit = curve[curve["restored"] >= f]
        needed[f] = None if hit.empty else int(hit["k"].iloc[0])
    return Needed(curve, needed, n)


def _state_id(state: State, encoder) -> str:
    return f"{state.component}.{state.ident}" if encoder == "both" else state.ident


def _run_key(base: dict, prompt: str, subject: str, run: Run, states: list, bands: list) -> str:
    from .jobs import key as _key

    restore = None if run.restore is None else [_state_id(states[i], base["encoder"]) for i in run.restore]
    band = list(bands[run.band]) if run.restore else None
    return _key({**base, "prompt": prompt, "subject": subject, "seed": run.seed, "restore": restore, "steps_restored": band})


def trace(pipe, prompts, subjects=None, *, where: str = "unet", encoder=1, kinds=None, window: int = 1,
          tokens="last", bands: int = 1, sets=None, seeds=(0,), factor: float = NOISE_FACTOR, steps: int | None = None,
          guidance: float | None = None, size: int | None = None, scorer=None, cache_dir=None,
          batch_size: int | None = None, batched: bool = True, progress: bool | None = None,
          keep_arrays: bool = False) -> TraceResult:
    """Causally trace ``prompts`` (one subject each, or one for all; a PromptSet gives both).

    ``where``: ``"unet"`` or ``"text"`` (with ``encoder`` 1, 2 or ``"both"``, SD-XL's two encoders
    restored together, and ``tokens`` ``"last"`` / ``"subject"`` / ``"all"`` / positions).
    ``kinds``: which states (default: loco's UNet states :data:`UNET_KINDS`, or
    :data:`PAPER_UNET_KINDS`; the text encoder's self-attention and MLP outputs). ``window``:
    restore that many adjacent entries (:func:`entries`) together. ``bands``: split the denoising steps into that many bands and restore in each band
    separately (UNet only). ``sets``: explicit lists of state indices to restore together (instead
    of the windows). ``scorer``: a :class:`~loco_lib.clip_score.ClipScorer` (default: the model's
    own). ``batch_size``: runs per pipeline call (default 16 on GPU, 32 on CPU), the clean source
    included. ``batched=False``: one pipeline call per restored run (ROME's loop). ``keep_arrays``:
    also keep the float images of the runs computed now (``result.arrays``).
    """
    from .families.registry import denoiser
    from .clip_score import get_scorer
    from .generate import progress_bars, sample_batch
    from .models import progress_default
    from .jobs import Jobs
    from .sweep import model_id
    from .text import encode
    from .tokens import subject_tokens

    settings.pipeline_family(pipe)  # refuses unsupported pipelines
    where = "unet" if where == "denoiser" else where  # "unet" names any denoiser (a DiT's transformer too)
    if where not in WHERE:
        raise LocoError(f"unknown place to trace {where!r}: use 'denoiser' (or its alias 'unet') or 'text'")
    if hasattr(prompts, "originals"):
        subjects = list(prompts.subjects) if subjects is None else subjects
        prompts = list(prompts.originals)
    prompts = settings.prompts(pipe, prompts)
    if subjects is None:
        raise LocoError("causal tracing corrupts the subject: give subjects= (one per prompt, or one for all)")
    subjects = [subjects] * len(prompts) if isinstance(subjects, str) else list(subjects)
    if len(subjects) == 1 and len(prompts) > 1:
        subjects = subjects * len(prompts)
    if len(subjects) != len(prompts):
        raise LocoError(f"{len(subjects)} subjects given for {len(prompts)} prompts")
    for p, s in zip(prompts, subjects):
        if not isinstance(s, str):
            raise LocoError(f"a subject is text, got {s!r}")
        subject_tokens(pipe, p, s)  # the subject must occur in the prompt
    factor = _check_factor(factor)
    steps = settings.steps(pipe, steps)
    guidance = settings.guidance(pipe, guidance)
    size = settings.size(size)
    seeds = settings.seeds(seeds)
    on_gpu = str(denoiser(pipe).device).startswith("cuda")
    batch = settings.batch_size(batch_size, 16 if on_gpu else 32)
    if batch < 2:
        raise LocoError("a trace batch holds the clean run and at least one restored run: batch_size >= 2")
    progress = progress_default() if progress is None else progress
    if where == "unet":
        if encoder != 1:
            raise LocoError("encoder= chooses a text encoder to trace: it goes with where='text'")
        states = unet_states(pipe, kinds)
        band_list = step_bands(steps, bands)
        components = []
    else:
        components = encoder_components(pipe, encoder)
        states = encoder_states(pipe, encoder, ("self-attention", "mlp") if kinds is None else kinds)
        if bands != 1:
            raise LocoError("bands split the denoising steps: they go with where='unet'")
        band_list = [tuple(range(steps))]
        for p, s in zip(prompts, subjects):
            for component in components:
                token_positions(pipe, p, s, tokens, component)
    if sets is None:
        groups = entries(states)
        sets = [tuple(sorted(i for e in w for i in groups[e])) for w in windows(len(groups), window)]
    else:
        sets = [tuple(int(i) for i in st) for st in sets]
        bad = [st for st in sets if not st or min(st) < 0 or max(st) >= len(states)]
        if bad:
            raise LocoError(f"a restored set names states 0..{len(states) - 1}, got {list(bad[0])}")
    scorer = get_scorer(None, getattr(pipe, "loco_name", None)) if scorer is None else scorer
    scorer_id = getattr(scorer, "name", None) or type(scorer).__name__

    base = {"format": CACHE_FORMAT, "kind": "trace", "model": model_id(pipe), "where": where,
            "encoder": encoder, "tokens": tokens if isinstance(tokens, str) else [int(t) for t in tokens],
            "factor": factor, "steps": steps, "guidance": guidance, "size": size,
            "scheduler": type(pipe.scheduler).__name__, "batch_size": batch, "batched": bool(batched)}
    runs_by_group: dict = {}
    for p in range(len(prompts)):
        for s in seeds:
            group = [Run(p, s, None), Run(p, s, ())]
            group += [Run(p, s, st, b) for b in range(len(band_list)) for st in sets]
            runs_by_group[(p, s)] = list(dict.fromkeys(group))
    runs = [r for group in runs_by_group.values() for r in group]
    records = {r: {**base, "prompt": prompts[r.prompt_index], "subject": subjects[r.prompt_index], "seed": r.seed,
                   "restore": None if r.restore is None else [_state_id(states[i], encoder) for i in r.restore]}
               for r in runs}
    engine = Jobs(cache_dir, records, keys={r: _run_key(base, prompts[r.prompt_index], subjects[r.prompt_index], r, states,
                                                         band_list) for r in runs})
    result = TraceResult(where, encoder, prompts, subjects, seeds, states, sets, band_list, tokens, engine.scores,
                         images=engine.images, computed=engine.computed, arrays=engine.arrays,
                         settings={k: base[k] for k in ("factor", "steps", "guidance", "size", "tokens", "batch_size", "batched")})
    pending: dict = {}
    for r in engine.read(runs, scorer_id):
        pending.setdefault((r.prompt_index, r.seed), []).append(r)

    # several processes (accelerate launch): each traces every n-th pending (prompt, seed), then all gather;
    # no process writes before every one has read the cache (the same pending groups everywhere)
    world = parallel.world()
    parallel.barrier()
    mine = world.share(pending.items())
    start = time.perf_counter()
    lengths = {c: _sequence_length(pipe, c, prompts[0]) for c in components} if pending else {}
    total = sum(len(v) for _, v in mine)
    bar = tqdm(total=total, desc=f"trace {where} (images)", disable=not progress or total == 0 or not world.main, leave=False)
    with progress_bars(pipe, False):
        for (p, s), todo in mine:
            prompt, subject = prompts[p], subjects[p]
            restored = [r for r in todo if r.restore is not None]
            masks = {}
            for component in components:
                positions = token_positions(pipe, prompt, subject, tokens, component)
                if positions is not None:
                    length = lengths[component]
                    masks[component] = torch.zeros(length, dtype=torch.bool)
                    masks[component][[q for q in positions if q < length]] = True
            clean = [Run(p, s, None)] if Run(p, s, None) in todo else []

            def compute(chunk, p=p, s=s, prompt=prompt, subject=subject, masks=masks, clean=clean):
                # the clean run rides as sample 0 of every call, the restored runs after it
                n = len(chunk) + 1
                samples = list(range(1, n))
                restore = []
                for k, r in enumerate(chunk, start=1):
                    for i in r.restore:
                        st = states[i]
                        if where == "unet":
                            restore.append(Patch(st.site, FromSample(0), samples=[k], branch="cond", steps=band_list[r.band]))
                        else:
                            restore.append(Patch(st.site, FromSample(0), samples=[k], steps=[0],
                                                 tokens=masks.get(st.component)))
                if where == "unet":
                    with hooks(pipe, patches=corruption(pipe, prompt, subject, s, [1], factor)):
                        two = encode(pipe, [prompt, prompt])
                    cond = two.select([0] + [1] * len(chunk))
                    patches = restore
                else:
                    with hooks(pipe, patches=corruption(pipe, prompt, subject, s, samples, factor) + restore):
                        cond = encode(pipe, [prompt] * n)
                    patches = []
                arrays = sample_batch(pipe, cond, [s] * n, steps=steps, guidance=guidance, size=size, output_type="np",
                                      share_identical_rows=True, counter=result.counter, patches=patches)
                fresh = clean + chunk
                arrays = arrays if clean else arrays[1:]
                clean.clear()  # kept once, from the first call that made it
                return list(zip(fresh, arrays))

            engine.run(restored, batch - 1 if batched else 1, compute, on_gpu=on_gpu, bar=bar, keep_arrays=keep_arrays,
                       always=True)
    bar.close()
    engine.gather(keep_arrays)
    result.seconds = time.perf_counter() - start
    engine.score(runs, scorer, scorer_id, lambda r: prompts[r.prompt_index])
    return result


def _sequence_length(pipe, component: str, prompt: str) -> int:
    """The padded token length of ``prompt``'s encoding as the pipeline feeds it to ``component``."""
    from .hooks import Record
    from .text import encode

    site = embedding_site(pipe, component)
    with hooks(pipe, records=[Record(site, steps=[0])]) as recorded:
        encode(pipe, [prompt])
    return int(recorded[site][0].shape[1])


# -- figures ------------------------------------------------------------------------------------------

KIND_COLOURS = {"resnet": "#4c72b0", "transformer": "#dd8452", "cross-attention": "#55a868", "attention": "#c44e52",
                "self-attention": "#dd8452", "feed-forward": "#8172b3", "mlp": "#4c72b0", "layer": "#8172b3",
                "pooled": "#937860", "image stream": "#dd8452", "text stream": "#55a868"}


def plot_trace(result: TraceResult, ax=None, title: str | None = None):
    """The restored fraction of the gap per traced entry, as the paper's Figs. 2, 3 and 11-13 show it.

    UNet with one band: bars in execution order, coloured by kind (block boundaries marked). UNet
    with several bands: a heatmap, step bands (early at the top) x states. Text encoder: a heatmap,
    kinds x layers. 0 = as corrupted, 1 = as clean."""
    import matplotlib.pyplot as plt

    t = result.table()
    if result.where == "text":
        t["layer"] = t["block"].str.replace("layer ", "").astype(int)
        grid = t.pivot_table(index="kind", columns="layer", values="restored", sort=False)
        if ax is None:
            _, ax = plt.subplots(figsize=(max(3.5, 0.6 * grid.shape[1] + 2), 0.5 * grid.shape[0] + 1.4))
        im = ax.imshow(grid.to_numpy(dtype=float), cmap="Purples", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set_xlabel("text-encoder layer")
        for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
        ax.figure.colorbar(im, ax=ax, label="fraction of the gap restored")
    elif len(result.bands) == 1:
        if ax is None:
            _, ax = plt.subplots(figsize=(max(6, 0.14 * len(t) + 2), 2.8))
        ax.bar(range(len(t)), t["restored"], color=[KIND_COLOURS[k] for k in t["kind"]], width=0.85)
        blocks = t["block"].tolist()
        for i in range(1, len(blocks)):
            if blocks[i] != blocks[i - 1]:
                ax.axvline(i - 0.5, color="0.8", lw=0.6)
        starts = [i for i in range(len(blocks)) if i == 0 or blocks[i] != blocks[i - 1]]
        ax.set_xticks(starts, [blocks[i] for i in starts], rotation=60, fontsize=7, ha="right")
        ax.axhline(0, color="k", lw=0.6)
        ax.axhline(1, color="k", lw=0.6, ls=":")
        ax.set_ylabel("fraction of the gap restored")
        kinds = list(dict.fromkeys(t["kind"]))
        ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=KIND_COLOURS[k]) for k in kinds], labels=kinds,
                  fontsize=7, loc="upper right", ncol=len(kinds))
    else:
        grid = t.pivot_table(index="band", columns="index", values="restored", sort=False)
        if ax is None:
            _, ax = plt.subplots(figsize=(max(6, 0.14 * grid.shape[1] + 2), 0.4 * grid.shape[0] + 1.6))
        im = ax.imshow(grid.to_numpy(dtype=float), cmap="Purples", vmin=0, vmax=1, aspect="auto")
        ax.set_yticks(range(grid.shape[0]), [f"steps {b}" for b in grid.index])
        blocks = [result.states[result.sets[k][0]].block for k in grid.columns]
        starts = [i for i in range(len(blocks)) if i == 0 or blocks[i] != blocks[i - 1]]
        ax.set_xticks(starts, [blocks[i] for i in starts], rotation=60, fontsize=7, ha="right")
        ax.figure.colorbar(im, ax=ax, label="fraction of the gap restored")
    n, left = len(result.image_keys()), len(result.image_keys()) - len(result.corrupting)
    where = ("UNet" if result.where == "unet" else "text encoders 1 + 2 together" if result.encoder == "both"
             else f"text encoder {result.encoder}")
    ax.set_title(title or f"causal trace, {where}: clean {result.clean:.1f}, corrupted {result.corrupted:.1f} "
                          f"({n} prompt x seed" + (f", {left} left out: not corrupted" if left else "") + ")", fontsize=9)
    return ax.figure
