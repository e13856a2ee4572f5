# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Diffusion transformers
#
# Every model of the paper is a UNet whose text enters through cross-attention layers spread over
# its down, mid and up blocks: 70 of them in SD-XL (the paper, Sec. 5.2), 16 in SD-1.x and SD-2.1
# and 22 in DeepFloyd IF in loco's layer maps (`loco layers MODEL --meta`).
# Newer text-to-image models replace the UNet by a stack of transformer blocks. Two families of
# them keep the paper's mechanism, a cross-attention over the text in every block:
#
# * **PixArt-alpha and PixArt-Sigma** (https://github.com/PixArt-alpha/PixArt-alpha): 28 blocks. The
#   T5 encoder's output is projected once (`caption_projection`) and every block's `attn2` reads that
#   projection through `to_k` / `to_v`, which carry biases, with T5's padding mask;
# * **SANA** (https://github.com/NVlabs/Sana): 20 blocks (1600M) or 28 (600M). A Gemma-2 decoder
#   reads a long instruction followed by the prompt, the pipeline keeps the first position and the
#   last 299, and the caption is projected and RMS-normalised once before the blocks.
#
# loco treats each block's `attn2` as a text layer, in block order, so LocoGen's windows, LocoEdit,
# neurons and causal tracing run on these models through the code that runs on the UNets: the
# family files `loco_lib/families/pixart.py` and `loco_lib/families/sana.py` say where the text
# enters and how the pipelines encode it.
#
# Zarei et al. ("Localizing Knowledge in Diffusion Transformers", NeurIPS 2025,
# https://github.com/ArmanZarei/DiT-Knowledge-Localization) localize knowledge in PixArt-alpha, SANA
# and FLUX without generating altered images: they rank the blocks by how much the knowledge tokens
# contribute to each block's attention output, then withhold the knowledge at the top-ranked
# blocks by giving them a knowledge-free prompt's text, which is LocoGen's altered input at the
# blocks the ranking picks. `loco_lib.ranking` computes their score on any family, UNets included.
#
# No DiT weights reach this book's machines, so, as for the UNets, the science is measured on a
# **model organism**: `toy-dit`, a PixArt-topology transformer trained on chapter 1's world with the
# T5-style encoder of `toy-t5`, its UNet counterpart. This chapter asks of it what chapter 1 asks of
# `toy`: do style, objects and facts localize to a few blocks? Does LocoEdit at those blocks remove
# the style and keep the rest? Does the attention-contribution ranking agree with LocoGen? The last
# sections run the real-model path on the tiny twins and on the full-size architectures with random
# weights, and time the sweep engine.

# %%
import sys

IN_COLAB = "google.colab" in sys.modules
LOCO_REVISION = "v0.1.0"  # the loco release of this notebook: the book's Colab button opens the same one
if IN_COLAB:  # fetch the repository at that revision (library, prompt data, trained organisms) and install its pins
    import subprocess

    subprocess.run(f"git clone -q --depth 1 --branch {LOCO_REVISION} https://github.com/loco-book/loco /content/loco && "
                   "python /content/loco/loco_lib/colab_setup.py", shell=True, check=True)
    sys.path.insert(0, "/content/loco")

# %% tags=["parameters"]
MODEL = "toy-dit"  # the DiT organism
UNET = "toy-t5"  # its UNet counterpart: the same T5-style encoder, world, seed and recipe
SEEDS = [0]  # seeds per prompt of the live runs
RANK_SEEDS = [0, 1]  # seeds of the rankings and of the localizer comparison (loco's choice)
STEPS = None  # None: the organisms' default (15 DDIM steps, guidance 3)
TWINS = ["tiny-pixart", "tiny-sana"]  # the real-model path: "pixart-alpha", "sana" in Colab (a 24 GB GPU)
TWIN_STEPS = 4  # sampling steps on TWINS (loco's choice for the twins; None: each model's default, 20)
REAL = ["pixart-alpha", "pixart-alpha-512", "pixart-sigma", "sana", "sana-600m"]  # built on the meta device

# %%
import json
from pathlib import Path

import pandas as pd

import loco_lib
from loco_lib import architectures, organism, ranking, reproduce
from loco_lib.clip_score import get_scorer
from loco_lib.layers import cross_attention_layers
from loco_lib.organism import localizers
from loco_lib.organism.kept import measure
from loco_lib.organism.training import trained_lr
from loco_lib.plots import image_grid
from loco_lib.prompts import default_prompts, load_pairs

DIT = MODEL
reports = {name: organism.recorded_report(name, seeds=2) for name in (UNET, DIT)}

# %% [markdown]
# ## What a text layer is in a diffusion transformer
#
# The real checkpoints' transformers, built from their configs on the meta device (no weights, no
# download; `loco layers MODEL --meta`): one text layer per block, each reading the caption at the
# block's width after the projection, and the parameter count of the transformer alone.

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for name in REAL:
    model = architectures.meta_denoiser(name)
    layers = cross_attention_layers(model)
    attn = model.get_submodule(layers[0].name)
    rows.append({"model": name, "class": type(model).__name__, "text layers": len(layers),
                 "caption width in": model.config.caption_channels, "K/V input width": layers[0].kv_dim,
                 "K/V biases": attn.to_k.bias is not None, "parameters (M)": round(sum(p.numel() for p in model.parameters()) / 1e6)})
pd.DataFrame(rows)

# %% [markdown]
# ## The DiT organism
#
# `toy-dit` has PixArt-alpha's block (adaLN-single time conditioning, self-attention,
# cross-attention on the projected caption with its padding mask, a GELU feed-forward) at toy
# widths: 12 blocks of width 128, patches of 2 x 2 over the organism's 16 x 16 x 12 latent, so a
# window of 2 blocks is a sixth of the stack (a window of 2 of SD's 16 layers is an eighth). It runs
# in a diffusers `PixArtAlphaPipeline`. It was trained with the organisms' recipe (v-prediction,
# cosine schedule, batch 64, EMA, 10 % caption dropout) jointly with its own T5-style encoder, at a
# lower learning rate and for more steps than the UNets (loco's choice; the training table):

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({name: {"text encoder": t["kind"], "denoiser": t["unet"], "learning rate": trained_lr(name),
                     "training steps": t["steps"], "final loss": round(t["final_loss"], 4)}
              for name, t in ((n, organism.training_info(n)) for n in (UNET, DIT))}).T

# %%
info = {n: organism.training_info(n) for n in (UNET, DIT)}
print("training time: " + ", ".join(f"{n} {info[n]['wall_seconds'] / 60:.0f} min ({info[n]['threads']} threads)" for n in info))

# %% [markdown]
# What it draws for the canonical prompts (one seed each), and how often the organism's scorer reads
# the shape, colour and style asked for (chapter 1's sample accuracy, recorded on 2 seeds):

# %%
pipe = loco_lib.load(DIT)
scorer = get_scorer(None, DIT)
show = organism.canonical_prompts()[::6][:12]
out = loco_lib.generate(pipe, show, seeds=SEEDS[0], steps=STEPS, progress=False)
fig = image_grid(out.images, titles=[s.replace(" in the style of ", "\n") for s in show], ncols=6, size=1.6)

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({name: {a: round(getattr(r.sample, a), 2) for a in ("shape", "colour", "style")} for name, r in reports.items()}).T

# %% [markdown]
# ## Chapter 1's protocol on both organisms
#
# The heavy measurements (LocoGen for style, objects, colour and facts; the m that Sec. 5.1.2's
# threshold rule picks; LocoEdit of van gogh at the style window, at an inert window and at every
# layer; the fact edit; neurons; the token swap) are recorded on 2 seeds per prompt, `toy-t5`'s in
# `data/organism/` and `toy-dit`'s in `data/organism/two-by-two/`, by `loco report MODEL --seeds 0,1
# --out FILE`. Whether today's code would measure them again:

# %%
organism.status_table([organism.recorded_dir() / f"{UNET}-2seeds.json", organism.two_by_two_dir() / f"{DIT}-2seeds.json"])

# %% [markdown]
# The closing table of chapter 1 for both, with a "layer" of `toy-dit` being a block:

# %%
# NBVAL_CHECK_OUTPUT
organism.summary_table(reports)

# %% [markdown]
# Each window of 2 layers (UNet) or blocks (DiT), for each attribute: how far it moves the
# attribute's readout from the clean image (0) to every layer altered (1):

# %%
fig = organism.plot_windows(reports, attributes=("style", "objects", "colour", "facts"))

# %%
# NBVAL_CHECK_OUTPUT
organism.window_summary(reports)

# %% [markdown]
# On `toy-dit` the style is read late: in the plot only the windows 9-10 and 10-11 move the style
# readout, each about half as far as altering all 12 blocks (0.56 for 9-10), whereas `toy-t5` reads
# it in its first two layers (0-1, 1.00). The facts and the colour are read early in the DiT (both
# windows 1-2; facts 0.92). The objects row of `toy-dit` measures nothing yet: this organism draws
# the shape asked for in only 0.63 of its images (the sample accuracy above), and altering every
# block moves its shape readout on the objects pairs from 0.88 to 0.81 (the table below; 8 prompt
# pairs x 2 seeds, so one image in 16), and the 2.00 of its window is a move of two images over a
# move of one:

# %%
# NBVAL_CHECK_OUTPUT
organism.window_table({DIT: reports[DIT]}, ("objects",), columns=("shape", "moved"))

# %% [markdown]
# LocoEdit of van gogh at each organism's style window: the style readout before -> after on
# held-out van gogh prompts, on the other styles and on style-free prompts, and shape and colour
# over all of them:

# %%
# NBVAL_CHECK_OUTPUT
organism.edit_summary(reports)

# %% [markdown]
# LocoEdit at the DiT's style window (9-10) halves the van gogh readout (1.00 -> 0.50) and leaves the
# other styles (0.84 -> 0.88) and the style-free prompts (1.00 -> 1.00) as they were; on `toy-t5` the
# edit at its window removes van gogh (1.00 -> 0.00). On the DiT, editing all 12 blocks removes
# van gogh too, but then only 0.25 of the other styles' images keep their style (the closing table
# above: "all-layers edit"). The window of 2 that LocoGen picks holds half of the DiT's style, and
# the edit there removes that half. The neuron edit barely moves the DiT's style: it is kept in every
# image up to k = 16 neurons per projection and in 0.75 at k = 32, where `toy-t5`'s falls to 0 at
# k = 8 (the closing table).

# %% [markdown]
# ## A second localizer: the attention contribution of the knowledge tokens
#
# For block b, a prompt and a denoising step, Zarei et al.'s score (their `m_mult_v_mult_o`) is the
# mean over image tokens of the norm of the attention output that the knowledge tokens alone
# produce, W_o (sum over knowledge tokens j of A[i, j] v_j), on the conditional branch; it is
# averaged over prompts and steps and the top K blocks are taken. `loco_lib.ranking.rank_layers`
# computes it through one record per layer; `tests/test_ranking.py` checks the recomputed attention
# against the layer's own output on the SD, PixArt and SANA twins. Here the knowledge tokens are the subject's tokens of each attribute's prompts
# ("van gogh", the object, "the president"), with K = m = 2 so that the ranking's top 2 and
# LocoGen's window are compared at the same size, on both organisms. The windows are the recorded
# reports'. Withholding the knowledge at the top 2 (T''s text there) is scored like a window.

# %%
prompts = {a: load_pairs(default_prompts(a, DIT)) for a in ("style", "objects", "facts")}
compared = {}
for name, rep in reports.items():
    p = pipe if name == DIT else loco_lib.load(name)
    windows = {a: getattr(rep.locogen, a).best for a in prompts}
    compared[name] = measure("localizers", name, localizers.compare, p, get_scorer(None, name), prompts, windows,
                             seeds=RANK_SEEDS, steps=STEPS, rank_seeds=RANK_SEEDS)

# %%
# NBVAL_CHECK_OUTPUT
localizers.table(compared)

# %%
fig = localizers.plot(compared)

# %% [markdown]
# For style the two localizers disagree on both organisms: the ranking's top 2 share no layer with
# LocoGen's window, and withholding van gogh at them moves the style readout 0.00 (`toy-t5`) and 0.06
# (`toy-dit`), where the windows move it 1.00 and 0.56. The subject's tokens contribute most to
# layers that do not decide the style. For objects and facts the top 2 share one layer with the
# window on both organisms (two layers drawn at random share 0.25 on `toy-t5` and 0.33 on `toy-dit`
# on average), and on `toy-t5` withholding at them moves the readouts as far as the windows do
# (1.07 for objects, 0.50 for facts). So on these organisms the attention contribution finds where
# object and fact tokens are read but not where the style is decided; LocoGen, which measures the
# effect itself, is the one to trust for style.

# %% [markdown]
# ## The real-model path on the twins
#
# `tiny-pixart` (PixArt-alpha's 28 blocks) and `tiny-sana` (SANA-1600M's 20 blocks, a Gemma-style
# causal encoder and SANA's instruction) are random: their numbers test the code path, not a
# phenomenon. Each runs LocoGen over windows of 2 blocks, the ranking and a LocoEdit at the window
# LocoGen picks, with the CLIP scorer of the twins. In Colab set `TWINS = ["pixart-alpha", "sana"]`
# and `TWIN_STEPS = None`; the same runs from a shell:
#
# ```
# loco locogen pixart-alpha --attribute style --m 2
# loco edit pixart-alpha --layers 8-9 --prompt "a house in the style of van gogh" --target "a house" --subject "van gogh"
# loco trace sana --where denoiser --prompt "a house in the style of van gogh" --subject "van gogh"
# ```

# %%
# NBVAL_CHECK_OUTPUT
# LOCO_CHECK: meaning (random-weight twins: the windows and rankings are noise; the table's rows and columns are checked, not its digits)
rows = []
for name in TWINS:
    twin = loco_lib.load(name)
    pairs = load_pairs(default_prompts("style", name), limit=2)
    result = loco_lib.locogen(twin, pairs, "style", 2, SEEDS, steps=TWIN_STEPS, scorer=get_scorer(None, name), progress=False)
    ranked = ranking.rank_layers(twin, pairs.originals, pairs.subjects, seeds=SEEDS, steps=TWIN_STEPS, progress=False)
    edit = loco_lib.compute_edit(twin, result.best["layers"], pairs.originals, pairs.targets, pairs.subjects)
    rows.append({"model": name, "text layers": len(cross_attention_layers(twin)), "windows scored": len(result.table),
                 "LocoGen window": result.best["layers"], "ranking top 2": ranked.top(2),
                 "LocoEdit weights": len(edit.weights)})
    del twin
pd.DataFrame(rows)

# %% [markdown]
# The same methods at full size: `benchmarks/full_size.py` builds PixArt-alpha (1024 px) and
# SANA-1600M with random weights from their real configs (`loco_lib/data/architectures.json`), the
# transformer and the text encoder (T5-v1.1-XXL; Gemma-2-2B; the VAE is PixArt's SD layout, for
# SANA a DC-AE of diffusers' default layout with 32x downsampling), in bfloat16 (loco's choice: half of
# float32's memory), and runs one LocoGen window (loco's choice for a model the paper does not
# cover: the two middle blocks), one LocoEdit (computed, applied, reverted), one text-encoder trace
# and a neuron ranking at 64 px for 2 steps, each in a fresh process on this book's CPU
# (`make test-slow` runs the same steps). Its last record, with the parameters of every component,
# their half-precision weight memory (2 bytes per parameter), the peak resident memory measured
# and whether the weights alone fit each GPU size (the activations at 1024 px come on top):

# %%
# NBVAL_CHECK_OUTPUT
full = json.loads((reproduce.ROOT / "benchmarks" / "results" / "full_size_dit-cpu.json").read_text())
print(f"measured {full['date']}: {full['size']} px, {full['steps']} steps, {full['dtype']}, torch {full['torch']}, "
      f"{full['cpu_count']} CPU cores")
reproduce.memory_table(full)

# %%
pd.DataFrame([{"model": m, "method": k, "seconds": round(r["seconds"], 1),
               **{c: r[c] for c in ("image", "matrices", "restored", "runs", "ranked") if c in r}}
              for m, methods in full["results"].items() for k, r in methods.items() if k != "build"]).set_index(["model", "method"])

# %% [markdown]
# On both full-size DiTs every method ran on the real shapes: an image of the asked size, a
# LocoEdit of 4 matrices (K and V of the window's 2 blocks) whose revert restored every weight,
# the clean, corrupted and one restored run of the trace, and 4 neuron rankings (K and V of 2
# blocks). The random weights know nothing, so no number here says anything about the models'
# knowledge.

# %% [markdown]
# ## Speed
#
# The sweep engine batches the windows of one prompt and seed in one pipeline call and evaluates
# identical denoiser rows once (chapter 3). `benchmarks/dit_sweep.py` times it on the PixArt twin and
# on `toy-dit` (4 prompts, windows of 2 over every block plus the clean and fully altered runs, 1 seed,
# 10 steps) against three references: a naive loop of one pipeline call per layer set (the same
# images), the bare transformer replaying exactly the calls the engine made (`engine share`: the
# part of the engine's time that is the denoiser's own work; the rest is hooks, scheduler, text
# encoding and decoding), and the bare transformer's best batched throughput on the engine's own
# work: every row of every call the engine made (its latent, text, mask and timestep), cut into calls
# of 8, 16, 32 and 64 rows and of the engine's largest call, each pass timed whole, the fastest pass
# counting (`fraction of denoiser`: the engine's rows per second over that pass's). This machine's
# speed drifts between runs, so each is repeated; the ratios are medians over the repeats of the
# ratio within one repeat, and the last two columns take the fastest run of each instead. Its last
# recorded run on this book's CPU (2 threads):

# %%
# NBVAL_CHECK_OUTPUT
bench = json.loads((Path(loco_lib.__file__).resolve().parents[1] / "benchmarks" / "results" / "dit_sweep-cpu.json").read_text())
speed = pd.DataFrame(bench).set_index("model")
speed[["blocks", "images", "repeats", "naive rows", "naive calls", "engine rows", "engine calls", "largest call",
       "wall ratio", "engine share", "at batch", "fraction of denoiser", "engine share, fastest runs",
       "fraction, fastest runs"]].round(2).assign(
    **{"max abs pixel diff": [f"{x:.1e}" for x in speed["max abs diff"]]})

# %% [markdown]
# The naive loop's own speed (its rows per second, fastest run) as a fraction of the transformer's
# best, and the engine's time that is not the denoiser's (1 - engine share):

# %%
speed.assign(**{"naive fraction of best": speed["naive rows"] / speed["naive s"] / speed["denoiser best rows/s"],
                "engine's own time": 1 - speed["engine share"]})[["naive fraction of best", "engine's own time"]].round(2)

# %% [markdown]
# The engine makes the same images as the naive loop (the largest pixel difference above). On the
# PixArt twin, whose 28 blocks give 29 layer sets to batch, it makes 40 calls where the loop makes
# 290 (the counts above); the loop's small calls run that tiny transformer far below its best
# (second table). On `toy-dit` the loop's calls already run the transformer close to its best, so
# batching gains less. loco's goals for the engine are 3 times the naive loop on the PixArt twin and
# 0.9 of the denoiser's best on the twin and the organism; the first table has the measured ratios.
# On `toy-dit` the engine's own time is a small part of its wall time (second table), and the
# engine runs the transformer near its best. On the twin, whose transformer is tiny, the engine's
# own work (the hooks' patches on 28 layers, the scheduler, the decoding) is a larger share of the
# wall time (second table), and that share is what separates its rows per second from the bare
# transformer's.
