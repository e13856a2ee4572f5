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
# The search tries every window (M - m + 1 of them for a model of M cross-attention layers; the
# parameter `M` below is the window size m), generates one image per prompt pair and
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
# `MODEL = "sd15"` in Colab to run the same search on the real model and compare it with Sec. 5.2
# (loco has not run it there).

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
THRESHOLD = 0.8  # Sec. 5.1.2's rule: how far from clean to fully altered the best window must go (loco's value)
OTHER_MODEL = "toy-t5"  # a second model for App. G's curve (None: MODEL only)
SPREAD_SEEDS = [0, 1, 2, 3]  # an organism's seed-by-seed windows (chapter 1, section 2, measures them with the same seeds)

# %%
import loco_lib
from loco_lib.clip_score import get_scorer
from loco_lib.locogen import plot_window_scores, readouts, window_grid
from loco_lib.organism.kept import measure
from loco_lib.paper import default_window
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
# The table above reads `SEEDS` only. On an organism the same sweep with `SPREAD_SEEDS` is kept with
# every image (chapter 1, section 2, measures it with the same call and reads the same file), so each
# window shows how far it moves the attribute on each seed alone, a 90 % bootstrap interval over
# the images (prompts x seeds), and how many seeds and how many prompts pick it by Algorithm 1's
# CLIP-score on their own images:

# %%
# NBVAL_CHECK_OUTPUT
from loco_lib import per_image
from loco_lib.organism.model import organism_kind
from loco_lib.organism.stability import headlines

if organism_kind(MODEL) and ATTRIBUTE in ("style", "objects", "facts"):
    spread = measure("headlines", MODEL, headlines, MODEL, pipe, scorer, seeds=SPREAD_SEEDS, steps=STEPS, progress=False,
                     cache_dir=None if CACHE_DIR is None else f"{CACHE_DIR}/{MODEL}/headlines")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        display(per_image.window_seeds(spread["windows"][ATTRIBUTE]).round(2))
else:
    print(f"{MODEL} is not a model organism: its windows seed by seed are for the reader to measure (raise SEEDS above)")

# %% [markdown]
# On `toy`'s style pairs the window picked above, 0-1, moves van gogh's style on every seed (1.00 on
# each), and its neighbour 1-2 nearly as far (0.97; 0.88 on seed 2); 3 of the 4 seeds and 5 of the 8
# prompts pick 0-1 by CLIP-score, the others 1-2. The late windows 12-13 and 13-14 also move the
# readout (1.00 and 0.91) but no seed and no prompt picks them: chapter 1 shows that they garble the
# texture instead of giving the flat target.

# %% [markdown]
# The style pairs of `data/prompts/toy/style.yaml` are all van gogh's, so on an organism the style
# window above is van gogh's. On `toy` the artists' styles are not all controlled in one place
# (chapter 1, "Whose style?": picasso's at layers 11-12, monet's both at the early layers, 1-2
# beside van gogh's 0-1, and at 12-13), while Sec. 5.2
# reports that on the SD models a few layers control style "irrespective of the specific prompt
# used": on that point the organism diverges from the paper.

# %% [markdown]
# ## Choosing m
#
# The paper states two ways of choosing the window size m, and this section runs both.
#
# ### Sec. 5.1.2's threshold rule
#
# Sec. 5.1.2 picks the smallest m for which some window meets a threshold on the average
# CLIP-score, and does not state the threshold's value. loco's threshold is relative: the best
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
# ### App. G's procedure
#
# App. G (Figs. 55 and 56) does it another way. It fixes the layer LocoGen located for the attribute
# on SD-1.5 (layer 8 for style, found with m = 2), grows the window from that layer one layer at a
# time up to the largest possible m, and takes the m after which the CLIP-score *saturates*. For
# every other model it then searches "locally" around that m, scaled by the model's share of layers
# ({mod}`loco_lib.window_size`). The paper gives no number for "saturates": loco reads it as the
# smallest m from which one more layer moves the score by at most `window_size.SATURATION` of the
# clean-to-all-layers span (the knee of the curve; its tail rises again as the window nears every
# layer, which is the all-layers image). loco counts layers from 0, as the authors' code does
# (`start_loc` in `loco_edit.py`; App. D's lists also start at 0 but number each layer's key and
# value projections separately), so from
# layer 8 of SD-1.5's 16 the largest m is 8, where Fig. 55 says 9.
#
# Below, each organism locates its window with the chapter's `M`, then grows the window from the
# first layer of that window (m = 0 is the clean image):

# %%
# NBVAL_CHECK_OUTPUT
import os

from loco_lib import window_size

growth = {}
for name in [MODEL] + ([OTHER_MODEL] if OTHER_MODEL else []):
    p = pipe if name == MODEL else loco_lib.load(name)
    growth[name] = measure("app-g-growth", name, window_size.from_located, p,
                           loco_lib.load_pairs(default_prompts(ATTRIBUTE, name), limit=N_PROMPTS), ATTRIBUTE, M, SEEDS,
                           scorer=scorer if name == MODEL else get_scorer(SCORER, name), steps=STEPS, guidance=GUIDANCE,
                           cache_dir=CACHE_DIR if name == MODEL else os.path.join(CACHE_DIR, name))
    g = growth[name]
    print(f"{name}: located at layers {g['located']}; grown from layer {g['start']}; saturates at m = {g['m']}")
pd.concat({name: g["table"].set_index("m")[["layers", "mean", "fraction"]] for name, g in growth.items()},
          axis=1).round(2)

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3))
for name, g in growth.items():
    ax.plot(g["table"]["m"], g["table"]["fraction"], marker="o", label=f"{name} (from layer {g['start']})")
    ax.axvline(g["m"], ls=":", c=ax.lines[-1].get_color())
ax.set_xlabel("window size m (0: clean)")
ax.set_ylabel("fraction of the way to all layers")
ax.set_title(f"App. G: growing the {ATTRIBUTE} window; dotted: saturation")
ax.legend(fontsize=8);

# %% [markdown]
# The local search starts from App. G's m = 2 on SD-1.5, scaled by this model's share of SD-1.5's 16
# layers, tries the sizes within one of it (loco's radius) and keeps the smallest whose best window
# goes as far as the largest one's, within the same tolerance. The windows come from the sweeps above
# (the cache), and the three readings of m, side by side:

# %%
# NBVAL_CHECK_OUTPUT
local = measure("app-g-local-search", MODEL, window_size.local_search, pipe, prompts, ATTRIBUTE, base_m=2, base_layers=16,
                seeds=SEEDS, scorer=scorer, steps=STEPS, guidance=GUIDANCE, cache_dir=CACHE_DIR)
m_local, table = local
print(f"local search around m = {table.attrs['centre']}: m = {m_local}")
display(table.round({"mean": 1, "fraction": 2}))
print(f"{MODEL}: the threshold rule (Sec. 5.1.2, {THRESHOLD:.0%}) picks m = {selection['m']}; App. G's growth saturates "
      f"at m = {growth[MODEL]['m']}; its local search picks m = {m_local}; the window search above ran m = {M}, and "
      f"the window {MODEL}'s edits use has m = {len(default_window(MODEL, ATTRIBUTE))}")

# %% [markdown]
# On the organisms the readings differ, and the tables above say why. On `toy` the rule's best
# single layer already goes most of the way and lies inside the two-layer window the search
# located, whose first layer alone does almost nothing, so App. G's growth from that first layer
# needs both: on `toy` the two readings point at the same controlling layer. On `toy-t5` the
# located window's first layer alone goes most of the way, and the growth saturates at once (the
# rule is run on `MODEL` only). The organism chapters edit and alter the two-layer windows of the
# organisms' cards (measured in "The model organism"): App. G's reading on `toy`, one layer more
# than the rule's on `toy` and than App. G's on `toy-t5`. That second layer adds less than two
# hundredths of the way to the best single layer (`toy`: the rule's table, m = 1 against m = 2;
# `toy-t5`: the growth table, m = 1 against m = 2).

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
# The windows of Sec. 5.2, Fig. 5, Fig. 40 and App. G, as `loco_lib.paper` records them. Each value
# is marked `reported` (with the place), `conflicting` or `inferred` (the paper states none; the
# note says what loco assumed). Where the paper states two window sizes, one rule of loco's picks
# the one `loco reproduce --profile paper` runs: Fig. 5 (the measured curves) first, then Sec. 5.2's
# text, then App. G's one m per model; the note gives the other value, which `--param M=...` runs
# (the page "Reproduce the paper" lists each model's settings).

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
# does not state its seeds; App. C names where its prompts come from and its targets, and
# `data/prompts/style.yaml` says which of loco's prompts are the paper's and which are constructed). Keep `CACHE_DIR` on Google Drive so that an
# interrupted sweep resumes.
#
# **How the real models are sampled.** Sec. 5.1 samples with DDIM and states no number of steps,
# guidance scale or image size. `loco_lib.models.load` switches SD-1.4, SD-1.5 and OpenJourney to
# DDIM; SD-2.1's pipeline samples with DDIM as shipped; SD-XL keeps its pipeline's Euler scheduler
# and DeepFloyd IF its DDPM, which is loco's choice (the paper names one sampler for all models, and
# the authors' code has neither model). The 50 steps and guidance 7.5 of the SD models are the
# authors' code's (`trace_attn_layer.py` and `loco_edit.py` in
# [samyadeepbasu/LocoGen](https://github.com/samyadeepbasu/LocoGen)); `trace_attn_layer.py` generates at
# 512 px for SD-2.1 too (`loco_edit.py` leaves the size to the pipeline, 768 px for SD-2.1), where
# loco keeps SD-2.1's own 768 px (loco's choice). The authors' scripts load
# SD-1.4 (`CompVis/stable-diffusion-v1-4`) while the paper reports SD-1.5; `MODEL = "sd14"` runs the
# former, with SD-1.5's windows (the paper reports none for SD-1.4).
#
# **The target prompt.** App. C gives the style target as *"A painting"*, and the captions of App. B's
# figures say the controlling layers read *"a painting"*; the authors' code feeds that bare prompt
# to the window (`--prompt` of `trace_attn_layer.py`). loco's style pairs (`data/prompts/style.yaml`)
# give the window the full sentence with the artist replaced (*"A house in the style of a
# painting"*, the form of Sec. 5.1.1's altered input, "An <object> in the style of painting", and
# the example of Sec. 6.1), so that the window's text differs from the other layers' only
# in the attribute; their `edits` blocks keep the bare target for LocoEdit, as the authors' code does.
# Does the choice move the window? The same search with every target replaced by the bare
# *"a painting"* (style only; loco's sentence targets above):

# %%
# NBVAL_CHECK_OUTPUT
if ATTRIBUTE == "style":
    bare = (list(prompts.originals), ["a painting"] * len(prompts.originals))
    bare_result = measure("locogen-bare-target", MODEL, loco_lib.locogen, pipe, bare, ATTRIBUTE, M, SEEDS, scorer=scorer,
                          steps=STEPS, guidance=GUIDANCE, cache_dir=os.path.join(CACHE_DIR, "bare-target"))
    sentence = measure("locogen-sentence-target", MODEL, loco_lib.locogen, pipe, prompts, ATTRIBUTE, M, SEEDS,
                       scorer=scorer, steps=STEPS, guidance=GUIDANCE, cache_dir=CACHE_DIR)
    display(pd.DataFrame([{"target": what, "best window": r["best"]["layers"], "mean": round(r["best"]["mean"], 1),
                           "fraction of the way": round(r["best"]["fraction"], 2), "clean": round(r["clean"], 1),
                           "all layers": round(r["altered_all"], 1)}
                          for what, r in (("the sentence (loco)", sentence), ('"a painting" (App. B, C)', bare_result))]))
else:
    print("App. B and C state the bare target for style only; this comparison runs for style")
