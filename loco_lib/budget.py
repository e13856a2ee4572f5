"""What a run costs before a GPU is rented: ``loco reproduce --profile paper --dry-run``.

Per chapter of a plan (:func:`loco_lib.reproduce.plan`) this counts the denoiser evaluations the
chapter will run on the real model: one *row* is the UNet applied to one image's latent at one
step (classifier-free guidance gives each image two rows, its conditional and unconditional
branch), counted from the chapter's parameters and its model's prompt files by
:func:`chapter_rows` (``tests/test_budget.py`` counts the rows the library's methods really run on
the tiny twins and compares). The floating-point operations of one row are counted, not estimated,
by running the full-size UNet on the meta device under :class:`torch.utils.flop_counter.FlopCounterMode`
at the model's own resolution (:func:`denoiser_flops`: shapes only, no weights, no memory); the VAE
decoder's are counted the same way per image.

The time is an estimate: the FLOPs divided by a stated fraction (:data:`EFFICIENCY`, loco's choice)
of a named GPU's dense half-precision tensor peak (:data:`GPU_PEAKS`, the vendors' datasheets).
The memory is the half-precision weights (exact, 2 bytes per parameter of the full-size record);
the activations come on top.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from .errors import LocoError

# Dense fp16/bf16 tensor-core peak in FLOP/s, without sparsity (NVIDIA's A100 and H100 SXM datasheets).
GPU_PEAKS = {"A100": 312e12, "H100 SXM": 989e12}
EFFICIENCY = 0.25  # the fraction of the peak a UNet reaches in fp16: loco's assumption, not a measurement
TOKENS = 77  # the text length every model here is conditioned on (CLIP's 77; IF pads T5 to 77)


def _unet_inputs(config: dict, size: int, rows: int, device="meta", dtype=None):
    import torch

    new = lambda *shape: torch.zeros(*shape, device=device, dtype=dtype)
    side = size // 8 if config["in_channels"] == 4 else size  # SD / SD-XL latents; IF samples pixels
    kwargs = {"encoder_hidden_states": new(rows, TOKENS, config.get("encoder_hid_dim") or config["cross_attention_dim"])}
    if config.get("addition_embed_type") == "text_time":  # SD-XL: pooled text and the six size/crop ids
        pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
        kwargs["added_cond_kwargs"] = {"text_embeds": new(rows, pooled), "time_ids": new(rows, 6)}
    return new(rows, config["in_channels"], side, side), torch.zeros(rows, device=device), kwargs


def _meta_unet(model: str):
    from .architectures import unet_config

    return _meta_unet_of(json.dumps(unet_config(model), sort_keys=True))


@lru_cache(maxsize=None)
def _meta_unet_of(config: str):
    """One meta-device UNet per distinct config (SD-1.4, SD-1.5 and OpenJourney share one)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    with init_empty_weights():
        return UNet2DConditionModel(**json.loads(config)).eval()


def count_flops(unet, size: int, rows: int = 1) -> int:
    """FLOPs of one call of ``unet`` (on any device, the meta device included) on ``rows`` rows at
    ``size`` px, counted by :class:`torch.utils.flop_counter.FlopCounterMode`. Attention runs as its
    matrix products (the math kernel): the counter does not see inside the fused CPU kernel."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    x, t, kwargs = _unet_inputs(dict(unet.config), size, rows, device=unet.device, dtype=unet.dtype)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        unet(x, t, **kwargs)
    return int(counter.get_total_flops())


def denoiser_flops(model: str, size: int | None = None, rows: int = 1) -> int:
    """FLOPs of one call of ``model``'s full-size UNet on ``rows`` rows at ``size`` px (default: the
    model's resolution), counted on the meta device."""
    from .architectures import architectures, arch_key, unet_config

    size = size or architectures()[arch_key(model)]["resolution"]
    return _flops_of(json.dumps(unet_config(model), sort_keys=True), size, rows)


@lru_cache(maxsize=None)
def _flops_of(config: str, size: int, rows: int) -> int:
    return count_flops(_meta_unet_of(config), size, rows)


@lru_cache(maxsize=None)
def decoder_flops(model: str, size: int | None = None) -> int:
    """FLOPs of decoding one image with the Stable Diffusion VAE at ``size`` px; 0 for DeepFloyd IF
    (stage I samples pixels)."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL
    from torch.utils.flop_counter import FlopCounterMode

    from .architectures import _VAE, architectures, arch_key

    if unet_family(model) == "if":
        return 0
    size = size or architectures()[arch_key(model)]["resolution"]
    with init_empty_weights():
        vae = AutoencoderKL(**_VAE).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        vae.decode(torch.empty(1, 4, size // 8, size // 8, device="meta"))
    return int(counter.get_total_flops())


def unet_family(model: str) -> str:
    """'sd', 'sdxl' or 'if' for a real model or its tiny twin."""
    from .models import MODELS

    if model not in MODELS:
        raise LocoError(f"no full-size architecture for {model!r}: the plan covers {', '.join(m for m in MODELS if not MODELS[m].twin_of)}")
    return MODELS[model].family


def seconds(flops: float, gpu: str = "A100", efficiency: float = EFFICIENCY) -> float:
    """The estimated time of ``flops`` on ``gpu`` at ``efficiency`` of its fp16 peak."""
    if gpu not in GPU_PEAKS:
        raise LocoError(f"unknown GPU {gpu!r}: use {' or '.join(GPU_PEAKS)}")
    return flops / (GPU_PEAKS[gpu] * efficiency)


# ---------------------------------------------------------------------------------------------
# The work of each chapter, as pipeline calls and images
# ---------------------------------------------------------------------------------------------
# Batch sizes on a GPU: traces and sweeps 16 (loco_lib.trace, loco_lib.sweep), generate, compare and
# the neuron sweep 8, the robustness tables 16 (loco_lib.unlearning).
TRACE_BATCH = SWEEP_BATCH = TABLE_BATCH = 16
GENERATE_BATCH = 8


@dataclass
class Work:
    """One line of a chapter's plan: ``images`` pipeline samples (a trace's clean run, which rides in
    every call of a prompt and seed, counted in each) in ``calls`` pipeline calls of ``steps`` steps."""

    chapter: str
    what: str
    model: str
    images: int
    calls: int
    steps: int
    trained_calls: int | None = None  # a fine-tuning's UNet calls and rows (:func:`finetune_work`), in place of
    trained_rows: int | None = None  # images x steps: its sampling runs stop early and it runs backward passes

    @property
    def unet_calls(self) -> int:
        return self.calls * self.steps if self.trained_calls is None else self.trained_calls

    @property
    def unet_rows(self) -> int:
        """Denoiser rows: two per image and step (classifier-free guidance), or a fine-tuning's count."""
        return 2 * self.images * self.steps if self.trained_rows is None else self.trained_rows


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def trace_work(groups: int, runs: int, batch: int = TRACE_BATCH) -> tuple[int, int]:
    """``(images, calls)`` of a causal trace: ``groups`` prompt-and-seed pairs of ``runs`` runs each
    (the corrupted run and the restored ones not already cached); every call carries the clean run
    beside at most ``batch - 1`` of them."""
    if runs <= 0:
        return 0, 0
    calls = groups * _ceil(runs, batch - 1)
    return groups * runs + calls, calls


def sweep_work(jobs: int, batch: int = SWEEP_BATCH) -> tuple[int, int]:
    """``(images, calls)`` of one sweep (:func:`loco_lib.sweep.run_sweep`): its jobs in chunks of ``batch``."""
    return jobs, _ceil(jobs, batch)


BACKWARD_ROWS = 2  # a backward pass counted as two forward rows (the usual rule of thumb; loco's assumption)


def finetune_work(method: str, steps: int, sample_steps: int, seed: int = 0) -> tuple[int, int, int]:
    """``(pipeline calls, UNet calls, UNet rows)`` of one :mod:`loco_lib.finetune` training of ``steps``
    steps: each step samples to its drawn denoising step ``k`` (``k + 1`` guided calls of two rows,
    the draws of :func:`loco_lib.finetune._step_draw` for ``seed``, counted exactly), then runs the
    frozen model (ESD both branches, Concept Ablation the anchor's) and the trained one forward on
    one row and backward (:data:`BACKWARD_ROWS`)."""
    from .finetune import _step_draw

    if method not in ("esd", "concept-ablation"):
        raise LocoError(f"unknown fine-tuning method {method!r}: use esd or concept-ablation")
    prefix = sum(_step_draw(seed, i, sample_steps)[0] + 1 for i in range(steps))
    frozen = 2 if method == "esd" else 1
    return steps, prefix + 2 * steps, 2 * prefix + steps * (frozen + 1 + BACKWARD_ROWS)


def generate_work(images: int, models: int = 1, batch: int = GENERATE_BATCH) -> tuple[int, int]:
    """``(images, calls)`` of :func:`loco_lib.generate` run for each of ``models`` edits (``compare``)."""
    return models * images, models * _ceil(images, batch)


@dataclass
class Shape:
    """What a chapter's work depends on in a model: cross-attention layers, the UNet's traceable
    states (loco's, ResNet, cross-attention, transformer blocks, the paper's), the text encoders'
    layers (0 for a second encoder the model lacks)."""

    layers: int
    states: int
    resnet: int
    cross: int
    text_layers: int
    transformer: int = 0
    paper_states: int = 0
    text_layers_2: int = 0

    def unet_states(self, granularity: str) -> int:
        return self.paper_states if granularity == "paper" else self.states

    def encoder_layers(self, encoder) -> int:
        """Layers of a traced encoder entry: 1, 2 or "both" (the deeper one's)."""
        return {1: self.text_layers, 2: self.text_layers_2, "both": max(self.text_layers, self.text_layers_2)}[encoder]

    @property
    def encoders(self) -> list:
        return [1, 2, "both"] if self.text_layers_2 else [1]


@lru_cache(maxsize=None)
def shape(model: str) -> Shape:
    """:class:`Shape` of a full-size model, read from the meta-device UNet and the text encoder's config."""
    from collections import Counter

    from .architectures import architectures, arch_key, expected_layer_count
    from .trace import PAPER_UNET_KINDS, unet_states

    unet = _meta_unet(model)
    kinds = Counter(s.kind for s in unet_states(unet))
    arch = architectures()[arch_key(model)]
    depth = [(enc.get("num_hidden_layers") or enc["num_layers"]) if enc else 0
             for enc in (arch["text_encoder"], arch.get("text_encoder_2"))]
    return Shape(expected_layer_count(model), sum(kinds.values()), kinds["resnet"], kinds["cross-attention"], depth[0],
                 kinds["transformer"], len(unet_states(unet, PAPER_UNET_KINDS)), depth[1])


def _sizes_needed(n: int) -> int:
    """How many sizes :func:`loco_lib.trace.states_needed` restores for ``n`` states (its default ``ks``)."""
    ks, k = list(range(1, min(8, n) + 1)), 8
    while k < n:
        k = min(n, _ceil(k * 3, 2))
        ks.append(k)
    return len(set(ks))


def _model_steps(model: str, steps) -> int:
    from .paper import sampling

    return int(steps) if steps else sampling(model)["steps"]


def _chapter_02(p: dict, model: str) -> list:
    from .prompts import default_prompts, edit_concepts, load_controls, load_pairs

    s, attr = shape(model), p["ATTRIBUTE"]
    P, D = min(p["N_PROMPTS"], len(load_pairs(default_prompts(attr, model)))), len(p["SEEDS"])
    g = p.get("UNET_STATES", "loco")
    n = s.unet_states(g)
    # the other granularity's trace: only its own kinds are new (ResNet and cross-attention runs are cached)
    new = s.transformer if g == "paper" else s.paper_states - s.states + s.transformer
    out = [(f"UNet trace: every state ({g}'s)", *trace_work(P * D, n + 1)),
           ("states needed: the k strongest restored together", *trace_work(P * D, _sizes_needed(n) - 1)),
           (f"UNet trace at the other granularity: its own states", *trace_work(P * D, new)),
           ("App. A's panel: one prompt, the paper's states", *trace_work(1, s.paper_states + 1)),
           ("step-banded ResNet trace", *trace_work(1, s.resnet * p["BANDS"])),
           ("batched against one run per state: batched", *trace_work(1, s.cross + 1)),
           ("batched against one run per state: the loop", 2 * (s.cross + 1), s.cross + 1)]
    for name in [model] + ([p["OTHER_MODEL"]] if p.get("OTHER_MODEL") else []):
        encoders = list(p["ENCODERS"]) if p.get("ENCODERS") and name == model else shape(name).encoders
        for e in encoders:
            t = shape(name).encoder_layers(e) * 2 + 1  # self-attention and MLP of every layer, and the corrupted run
            which = "" if e == 1 and len(encoders) == 1 else f" (encoder {e})"
            out.append((f"text-encoder trace{which}, last and subject tokens", *(2 * x for x in trace_work(P * D, t)), name))
    src = default_prompts(attr, model)
    concept = edit_concepts(src)[0]
    shown = len(load_pairs(src, concept=concept)) + sum(len(v) for v in load_controls(src).values())
    out += [("edits compared (original, LocoEdit, DiffQuickFix)", *generate_work(shown, 3)),
            ("the first prompts of each edit", *generate_work(min(4, shown), 3))]
    return out


def _chapter_03(p: dict, model: str, start: int | None = None) -> list:
    """``start``: the layer App. G grows from (default: the paper's window's first layer, where the
    search should locate it)."""
    from .paper import paper_window
    from .prompts import default_prompts, load_pairs
    from .window_size import scaled_m

    L, M = shape(model).layers, p["M"]
    P, D = min(p["N_PROMPTS"], len(load_pairs(default_prompts(p["ATTRIBUTE"], model)))), len(p["SEEDS"])
    swept = {M, 1, 2, 3}  # window sizes whose every window is in the cache after the first two lines
    out = [(f"LocoGen: clean, {L - M + 1} windows of m = {M}, all layers", *sweep_work(P * D * (L - M + 3)))]
    for m in (1, 2, 3):  # select_m's sizes; clean and all layers are in the cache
        if m != M:
            out.append((f"choosing m: {L - m + 1} windows of m = {m}", *sweep_work(P * D * (L - m + 1))))
    start = paper_window(model, p["ATTRIBUTE"])[0] if start is None else start
    grown = [m for m in range(1, L - start + 1) if m not in swept]
    out.append((f"App. G: the window grown from layer {start}", *sweep_work(P * D * len(grown))))
    centre = scaled_m(2, 16, L)
    for m in range(max(1, centre - 1), min(L, centre + 1) + 1):
        if m not in swept:
            out.append((f"App. G's local search: {L - m + 1} windows of m = {m}", *sweep_work(P * D * (L - m + 1))))
    if p["ATTRIBUTE"] == "style":
        out.append(('the search with the bare target "a painting"', *sweep_work(P * D * (L - M + 3))))
    return out


def _chapter_04(p: dict, model: str) -> list:
    from .prompts import default_prompts, edit_concepts, load_edit, load_pairs

    src = default_prompts(p["ATTRIBUTE"], model)
    concept = p.get("CONCEPT") or edit_concepts(src)[0]
    block = load_edit(src, concept)
    held = [q for q in load_pairs(src, concept=concept).originals if q not in set(block.originals)]
    n_out, D, n = min(p["N_PROMPTS"], len(held)), len(p["SEEDS"]), p["N_PROMPTS"]
    return [("original, localized and all-layer edit on the edit and held-out prompts",
             *generate_work((len(block) + n_out) * D, 3)),
            ("the three on unrelated prompts", *generate_work(n * D, 3)),
            ("the edit reloaded from its file", *generate_work(n_out * D))]


def _chapter_05(p: dict, model: str) -> list:
    from .prompts import load_artists

    P, D = min(p["N_PROMPTS"], len(load_artists(p["ARTIST"], model=model))), len(p["SEEDS"])
    ks = len(set(p["KS"]))
    one = generate_work(P * D)
    return [(f"neurons replaced, {ks} values of k, mean and zero", 2 * ks * one[0], 2 * ks * one[1]),
            ("altered inputs at the window", *one)]


def _chapter_06(p: dict, model: str) -> list:
    from .prompts import load_artists

    L, m, D = shape(p["IF_MODEL"]).layers, p["IF_M"], len(p["SEEDS"])
    out = []
    for artist in ("Van Gogh", "Monet"):
        n = min(p["IF_PROMPTS"], len(load_artists(artist)))
        out.append((f"IF's window for {artist}", *sweep_work(n * D * (L - m + 3))))
    out.append(("IF's LocoEdit against the original", *generate_work(min(p["IF_PROMPTS"], len(load_artists("Van Gogh"))) * D, 2)))
    return [(what, images, calls, p["IF_MODEL"]) for what, images, calls in out]


def _chapter_07(p: dict, model: str) -> list:
    from .paper import default_window
    from .prompts import load_artists
    from .unlearning import artists, generic_prompts

    s, D, St = shape(model), len(p["SEEDS"]), len(p["TABLE_SEEDS"])
    names = artists(model)
    lower = {n.lower(): n for n in names}
    concept = lower.get(str(p.get("CONCEPT") or names[0]).strip().lower())
    if concept is None:
        raise LocoError(f"unknown artist {p.get('CONCEPT')!r} for {model}: choose one of {', '.join(names)}")
    n_of = {a: len(load_artists(a, model=model)[: p.get("N_PER_ARTIST") or None]) for a in names}
    # unlearning.prompt_groups' sizes (a real model's cross-domain prompts are the generic ones)
    cross = len(generic_prompts(p["PROFILE"], model, exclude=names))
    side = sum(n_of.values()) + cross
    multi = names[: p["MULTI"]]
    m, L = len(default_window(model, "style")), s.layers
    text = trace_work(2, s.text_layers + 1)
    models = 7 if p.get("FINETUNE") else 5
    out = [("text-encoder trace of the erased artist (DiffQuickFix's layer)", *text),
           (f"{models} models on erased, in-domain and cross-domain prompts", *generate_work(side * D, models, TABLE_BATCH)),
           ("the side-by-side grid", *generate_work(8, models))]
    for a in multi:
        out.append((f"LocoGen window of {a}", *sweep_work(n_of[a] * St * (L - m + 3))))
    ret = sum(n_of[a] for a in multi) + len(generic_prompts(p["PROFILE"], model, exclude=multi))
    out += [(f"retention: original, LocoEdit and UCE of 1-{len(multi)} artists",
             *generate_work(ret * St, 1 + 2 * len(multi), TABLE_BATCH)),
            ("text-encoder trace of the object (DiffQuickFix's layer)", *text)]
    spread = len(p.get("SPREAD_SEEDS") or [])
    if spread:  # the side-by-side and retention tables again, one seed per run
        for what, (images, calls) in (("the models", generate_work(side, models, TABLE_BATCH)),
                                      ("retention", generate_work(ret, 1 + 2 * len(multi), TABLE_BATCH))):
            out.append((f"{what} on each of {spread} further seeds (SPREAD_SEEDS)", spread * images, spread * calls))
    generic = len(generic_prompts(p["PROFILE"], model, exclude=[concept]))
    from .study import app_j_items

    out.append(("App. J's pairs: clean and LocoGen-altered", *generate_work(len(app_j_items(model)) * len(p["STUDY_SEEDS"]), 2)))
    trains = bool(p.get("FINETUNE"))
    out.append((f"Table 1: the original once, {6 if trains else 4} edits on two columns",
                *generate_work(generic * St, 13 if trains else 9, TABLE_BATCH)))
    if trains:  # App. I's ESD-x and Concept Ablation, of the artist (side by side) and of the object (Table 1)
        from .finetune import CA_STEPS, ESD_STEPS

        S = _model_steps(model, p.get("STEPS"))
        for what, method, n in (("ESD-x", "esd", ESD_STEPS), ("Concept Ablation", "concept-ablation", CA_STEPS)):
            calls, unet_calls, rows = finetune_work(method, n, S)
            for of in ("the artist", "the object"):
                out.append(Work("07_robustness_and_baselines", f"{what} of {of}: {n} training steps", model, 0, calls, S,
                                unet_calls, rows))
    return out


CHAPTERS = {"02_causal_tracing": _chapter_02, "03_locogen": _chapter_03, "04_locoedit": _chapter_04,
            "05_neuron_editing": _chapter_05, "06_deepfloyd_t5": _chapter_06, "07_robustness_and_baselines": _chapter_07}


def chapter_work(chapter: str, params: dict) -> list[Work]:
    """The denoiser work of one chapter of a plan on its real model (``params``: the plan's, on top of
    the chapter's own defaults). Chapters that run no real model (the quick start's three images
    aside, the organisms, this page) give []."""
    from .reproduce import parameter_defaults

    p = {**parameter_defaults(chapter), **params}
    if chapter == "00_quickstart" and p.get("MODEL") in _real_models():
        return [Work(chapter, "three images", p["MODEL"], 3, 3, _model_steps(p["MODEL"], p.get("STEPS")))]
    fn = CHAPTERS.get(chapter)
    model = p.get("IF_MODEL") if chapter == "06_deepfloyd_t5" else p.get("MODEL")
    if fn is None or model not in _real_models():
        return []
    out = []
    for item in fn(p, p.get("MODEL")):
        if isinstance(item, Work):
            out.append(item)
            continue
        what, images, calls, name = (*item, model)[:4] if len(item) == 3 else item
        steps = p.get("IF_STEPS") if chapter == "06_deepfloyd_t5" else p.get("STEPS")
        out.append(Work(chapter, what, name, images, calls, _model_steps(name, steps)))
    return out


def _real_models() -> list[str]:
    from .paper import LOCATIONS

    return list(LOCATIONS)


@lru_cache(maxsize=None)
def parameters(model: str) -> int:
    """Parameters of a full-size model's UNet, text encoder(s) and VAE, counted on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL

    from .architectures import _VAE, _text_encoder, architectures, arch_key

    arch = architectures()[arch_key(model)]
    count = lambda m: sum(p.numel() for p in m.parameters())
    total = count(_meta_unet(model))
    with init_empty_weights():
        if unet_family(model) == "if":
            from transformers import T5Config, T5EncoderModel

            cfg = {k: v for k, v in arch["text_encoder"].items() if not k.startswith("_")}
            total += count(T5EncoderModel(T5Config(**cfg)))
        else:
            total += count(AutoencoderKL(**_VAE)) + count(_text_encoder(arch["text_encoder"]))
            if "text_encoder_2" in arch:
                total += count(_text_encoder(arch["text_encoder_2"], projection=True))
    return int(total)


def dry_run(profile: str = "paper", model: str | None = None, only=None, extra: dict | None = None, gpu: str = "A100",
            efficiency: float = EFFICIENCY):
    """The plan of ``loco reproduce`` (same arguments) as work, one row per chapter and model it runs:
    images, pipeline calls, UNet calls, UNet rows (two per image and step: classifier-free
    guidance), the counted FLOPs of one row and of the whole, the estimated hours on ``gpu`` at
    ``efficiency`` of its fp16 peak and the half-precision weights in GB; a last row sums them.
    ``attrs["work"]`` holds every :class:`Work` line."""
    import pandas as pd

    from .reproduce import plan

    seconds(0, gpu, efficiency)  # the same errors before any counting
    work = [w for chapter, params in plan(profile, model, only, extra).items() for w in chapter_work(chapter, params)]
    rows = []
    groups = {}
    for w in work:
        groups.setdefault((w.chapter, w.model), []).append(w)
    for (chapter, name), items in groups.items():
        flops_row = denoiser_flops(name)
        unet_rows = sum(w.unet_rows for w in items)
        flops = float(unet_rows * flops_row + sum(w.images for w in items) * decoder_flops(name))  # past int64
        rows.append({"chapter": chapter, "model": name, "images": sum(w.images for w in items),
                     "pipeline calls": sum(w.calls for w in items), "UNet calls": sum(w.unet_calls for w in items),
                     "UNet rows": unet_rows, "TFLOP per row": round(flops_row / 1e12, 3), "PFLOP": round(flops / 1e15, 1),
                     f"hours on {gpu}": round(seconds(flops, gpu, efficiency) / 3600, 2),
                     "fp16 weights (GB)": round(parameters(name) * 2 / 2**30, 1), "_flops": flops})
    table = pd.DataFrame(rows)
    if len(table):
        total = {"chapter": "total", "model": ", ".join(dict.fromkeys(table["model"]))}
        for col in ("images", "pipeline calls", "UNet calls", "UNet rows"):
            total[col] = int(table[col].sum())
        total["PFLOP"] = round(table["_flops"].sum() / 1e15, 1)
        total[f"hours on {gpu}"] = round(seconds(table["_flops"].sum(), gpu, efficiency) / 3600, 2)
        total["fp16 weights (GB)"] = table["fp16 weights (GB)"].max()
        flops = float(table["_flops"].sum())
        table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
        table = table.drop(columns="_flops")
    else:
        flops = 0.0
    table.attrs.update(work=work, gpu=gpu, efficiency=efficiency, peak=GPU_PEAKS[gpu], flops=flops)
    return table.set_index(["chapter", "model"]) if len(table) else table


PAPER_MODELS = ("sd15", "sd21", "openjourney", "sdxl", "deepfloyd-if")  # the five models the paper reports


def paper_plan(models=PAPER_MODELS, gpu: str = "A100", efficiency: float = EFFICIENCY):
    """The whole paper's plan: :func:`dry_run` of ``--profile paper --model M`` for each of ``models``,
    one row per model (its chapters summed), and a last row for all of them."""
    import pandas as pd

    rows, flops = [], 0.0
    for model in models:
        run = dry_run("paper", model, gpu=gpu, efficiency=efficiency)
        total, flops = run.loc["total"].iloc[0], flops + run.attrs["flops"]
        rows.append({"model": model, **{k: total[k] for k in ("images", "UNet calls", "UNet rows")},
                     "TFLOP per row": round(denoiser_flops(model) / 1e12, 3), "PFLOP": total["PFLOP"],
                     f"hours on {gpu}": total[f"hours on {gpu}"], "fp16 weights (GB)": total["fp16 weights (GB)"]})
    table = pd.DataFrame(rows)
    last = {"model": "all", **{k: table[k].sum() for k in ("images", "UNet calls", "UNet rows")},
            "PFLOP": round(flops / 1e15, 1), f"hours on {gpu}": round(seconds(flops, gpu, efficiency) / 3600, 2)}
    table = pd.concat([table, pd.DataFrame([last])], ignore_index=True).set_index("model")
    for col in ("images", "UNet calls", "UNet rows"):
        table[col] = table[col].astype(int)
    return table


def cpu_rates(record: dict):
    """``benchmarks/unet_flops.py``'s record as a table: per model its resolution, counted TFLOP of one
    row, the fastest measured second, the rate, and time and FLOPs relative to the first model."""
    import pandas as pd

    rows = []
    for model, r in record["results"].items():
        rows.append({"model": model, "size (px)": r["size"], "TFLOP per row": round(r["flops"] / 1e12, 3),
                     "seconds": round(min(r["seconds"]), 1), "GFLOP/s": round(r["flops"] / min(r["seconds"]) / 1e9, 1)})
    table = pd.DataFrame(rows).set_index("model")
    if len(table):
        first = table.iloc[0]
        table["FLOPs / first"] = (table["TFLOP per row"] / first["TFLOP per row"]).round(2)
        table["time / first"] = (table["seconds"] / first["seconds"]).round(2)
    return table
