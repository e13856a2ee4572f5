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
# # LocoGen: which layers control an attribute?
#
# LocoGen (paper Sec. 5.1.2, Algorithm 1) looks for a small window of **adjacent cross-attention
# layers** that controls a visual attribute. For a window of *m* layers, the layers inside the
# window read a *target* prompt T' (the attribute removed, e.g. "a house in the style of a
# painting"), every other layer reads the original prompt T ("a house in the style of van gogh").
# If the style disappears from the image, the window controls it.
#
# The search tries every window (M - m + 1 of them), generates one image per prompt pair and
# seed, and scores each image with **CLIP-score** against T (style, objects: lower = removed) or
# T' (facts: higher = updated). Two references frame the numbers: the *clean* image (no layer
# altered) and the *fully altered* one (every layer reads T').
#
# The engine behind it (`loco_lib.sweep`) batches many windows into one pipeline call, computes
# each identical UNet input once, adapts the batch to the GPU's memory and caches every image and
# score on disk: a Colab disconnect costs nothing that was finished.
#
# This page runs on `toy`, loco's model organism, by default: its scorer is a small CLIP trained on
# the organism's world, and the search finds the layers that control the attribute there. Set
# `MODEL = "sd15"` in Colab to see the paper's result on the real model.

# %%
import sys

IN_COLAB = "google.colab" in sys.modules
LOCO_REVISION = "v0.1.0"  # the loco release of this notebook: the book's Colab button opens the same one
if IN_COLAB:  # fetch the repository at that revision (library, prompt data) and install its pins, keeping Colab's torch
    import subprocess

    subprocess.run(f"git clone -q --depth 1 --branch {LOCO_REVISION} https://github.com/loco-book/loco /content/loco && "
                   "python /content/loco/loco_lib/colab_setup.py", shell=True, check=True)
    sys.path.insert(0, "/content/loco")

# %% tags=["parameters"]
MODEL = "toy"  # toy, toy-t5, sd14, sd15, openjourney, sd21, sdxl, deepfloyd-if, or a tiny twin
ATTRIBUTE = "style"  # style, objects or facts
M = 2  # window size (App. G: 2 for SD-1.5 and OpenJourney, 3 for SD-2.1 and DeepFloyd IF, 5 for SD-XL)
N_PROMPTS = 8  # prompt pairs from the model's prompt file (data/prompts/ or data/prompts/toy/)
SEEDS = [0]
STEPS = None  # None: the default of the model (50 for SD, 15 for toy)
GUIDANCE = None  # None: the default of the model
SCORER = None  # None: the model's own (CLIP ViT-L-14 for real models, toy-scorer for toy, tiny for twins)
CACHE_DIR = "locogen-cache"  # in Colab a Google Drive folder survives a disconnect
THRESHOLD = 0.8  # App. G: how far from clean to fully altered the best window must go

# %%
import loco_lib
from loco_lib.clip_score import get_scorer
from loco_lib.locogen import plot_window_scores, readouts, window_grid
from loco_lib.organism.kept import measure
from loco_lib.prompts import default_prompts

pipe = loco_lib.load(MODEL)
scorer = get_scorer(SCORER, MODEL)
prompts = loco_lib.load_pairs(default_prompts(ATTRIBUTE, MODEL), limit=N_PROMPTS)
n_layers = len(loco_lib.cross_attention_layers(pipe.unet))
print(f"{MODEL}: {n_layers} cross-attention layers; scorer {scorer.name}")

# %% [markdown]
# ## The prompt pairs
#
# From `data/prompts/` (App. C; the organism's own in `data/prompts/toy/`): each original prompt T
# with its target T'.

# %%
# NBVAL_CHECK_OUTPUT
import pandas as pd

pd.DataFrame({"original T": prompts.originals, "target T'": prompts.targets})

# %% [markdown]
# ## Every window of m adjacent layers
#
# One row per window: its first layer, the layers, and the mean and standard deviation of the
# CLIP-score over prompts and seeds.

# %%
result = loco_lib.locogen(pipe, prompts, ATTRIBUTE, M, SEEDS, scorer=scorer, steps=STEPS, guidance=GUIDANCE,
                          cache_dir=CACHE_DIR)
print(f"{len(result.table)} windows of m={M}; {len(result.sweep.computed)} images generated now, "
      f"the rest came from the cache; {result.sweep.seconds:.1f} s")

# %%
# NBVAL_CHECK_OUTPUT
print("windows:", ", ".join(result.table["layers"]))

# %%
# NBVAL_CHECK_OUTPUT
result.table[["start", "layers", "mean", "std"]].round(1)

# %%
# NBVAL_CHECK_OUTPUT
best = result.best
print(f"clean {result.clean:.1f} | all layers altered {result.altered_all:.1f} | best window {best['layers']}: "
      f"{best['mean']:.1f} ({100 * best['fraction']:.0f}% of the way from clean to fully altered)")
fig = plot_window_scores(result, title=f"{MODEL}: LocoGen, {ATTRIBUTE}, m={M}")

# %% [markdown]
# The images behind the curve, for the first prompt (like the paper's App. B): the clean image,
# each window's altered image, and the fully altered one.

# %%
fig = window_grid(result, prompt_index=0)

# %% [markdown]
# With the organism's scorer every image is also read off: the fraction of images that still show
# the original prompt's shape, colour and style, per window. `moved` is how far the attribute's
# readout went from the clean level (0) to the fully altered level (1). A window that localizes the
# attribute moves it and leaves the other two alone.

# %%
# NBVAL_CHECK_OUTPUT
if hasattr(scorer, "accuracy"):
    display(readouts(result, scorer).round(2))
else:
    print(f"{scorer.name} has no attribute readouts (only the model organism's scorer does)")

# %% [markdown]
# ## Choosing m (App. G)
#
# The paper picks the smallest m for which some window meets a threshold on the average CLIP-score
# (Sec. 5.1.2) and does not state the threshold's value. loco's threshold is relative: the best
# window must move the score at least `THRESHOLD` of the way from the clean to the fully altered
# reference. Sizes share the cache, so the clean and fully altered images are
# generated once. On an organism the finished choice is kept with the repository
# (`loco_lib.organism.kept`: `data/organism/cache/chapters/`, keyed by the weights, the code and
# the settings), so the book reads it while none of them has changed.

# %%
# NBVAL_CHECK_OUTPUT
selection = measure("select-m", MODEL, loco_lib.select_m, pipe, prompts, ATTRIBUTE, threshold=THRESHOLD, ms=[1, 2, 3],
                    seeds=SEEDS, scorer=scorer, steps=STEPS, guidance=GUIDANCE, cache_dir=CACHE_DIR, stop_at_first=False)
print("chosen m:", selection["m"])
selection["table"].round({"mean": 1, "fraction": 2})

# %% [markdown]
# ## Resuming
#
# Running the same search again reads every image and score from `CACHE_DIR` and generates nothing.

# %%
# NBVAL_CHECK_OUTPUT
again = loco_lib.locogen(pipe, prompts, ATTRIBUTE, M, SEEDS, scorer=scorer, steps=STEPS, guidance=GUIDANCE,
                         cache_dir=CACHE_DIR)
print(f"images generated on the second run: {len(again.sweep.computed)}")
print("same table:", again.table[["mean"]].equals(result.table[["mean"]]))

# %% [markdown]
# ## What the paper finds on the real models
#
# The windows of Sec. 5.2, Fig. 5, Fig. 40 and App. G, as `loco_lib.paper` records them. The paper
# states neither the CLIP checkpoint it scores with nor the number of sampling steps; loco's
# defaults for real models (CLIP ViT-L/14, the pipeline's scheduler with 50 steps) are loco's choice.
# Each value is marked `reported` (with the place), `conflicting` (the paper states two values; the
# note gives both) or `inferred` (the paper states none; the note says what loco assumed):

# %%
# NBVAL_CHECK_OUTPUT
from loco_lib.paper import locations_table

with pd.option_context("display.max_colwidth", None, "display.width", 200):
    display(locations_table()[["window", "kind", "where", "note"]])

# %% [markdown]
# SD-1.5 controls style from layers 8-9 and objects and facts from 6-7; SD-2.1 style and objects
# from layer 8 and facts from layer 7; SD-XL style and facts from its layer 45 and objects from 15;
# for DeepFloyd IF the window depends on the prompt. To run one panel of Fig. 5 in Colab, set
# `MODEL = "sd15"`; `N_PROMPTS` and `SEEDS` set how many prompts and seeds per window (the paper
# does not state its seeds; App. C lists its prompts). Keep `CACHE_DIR` on Google Drive so that an
# interrupted sweep resumes.
