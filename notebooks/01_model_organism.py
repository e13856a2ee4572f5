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
# # The model organism
#
# The paper's claims are about what happens inside billion-parameter models: a pair of
# cross-attention layers controls the style of SD-1.5 (Sec. 5), a closed-form edit of those layers
# removes it (Sec. 6), a few neurons carry it (Sec. 7). On DeepFloyd IF, LocoGen still finds
# windows, but which one depends on the prompt (Sec. 5.2), and the edit at them fails, which the paper
# attributes to IF's bidirectional T5 text encoder (Sec. 6.2, App. M). Checking those claims needs the real
# weights and a GPU. The tiny random twins of the other chapters run the same code, but on them no
# layer controls anything.
#
# This chapter builds a **model organism**: a small text-to-image diffusion model that loco trains
# itself, on a synthetic world, in one to two hours with two CPU threads (the training table below). It has the SD-1.5 UNet layout
# (the same 16 cross-attention layers and module names, tiny widths), a real diffusers pipeline and
# a transformers text encoder, so LocoGen, LocoEdit and neuron editing run on it through exactly
# the code that runs on SD. A trained attribute scorer turns every image into a readout (which
# shape, which colour, which style), so each phenomenon is **measured** here, in the book and in
# CI, not only looked at.

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
MODEL = "toy"  # the organism with a CLIP-style (causal) text encoder
COMPARE = "toy-t5"  # the same organism with a T5 (bidirectional) encoder, for App. M
SEEDS = [0]  # seeds per prompt (the book's build uses one; the numbers in the closing table say how many)
STEPS = None  # None: the organism's default (15 DDIM steps, guidance 3)
CACHE_DIR = None  # finished measurements (None: data/organism/cache in the repository, images in _build/organism-cache)
SPREAD_SEEDS = [0, 1, 2, 3]  # seeds of the seed-by-seed measurements (section 2; loco's choice, said why there)

# %%
import json

import numpy as np
import pandas as pd

import loco_lib
from loco_lib import organism
from loco_lib.organism import world
from loco_lib.plots import image_grid
from loco_lib.organism.model import models_dir

# %% [markdown]
# ## The world
#
# Every image is 32 x 32 pixels with independent attributes: an **object** (circle, square,
# triangle, cross), its **colour** (red, green, blue, yellow), a **style** (a background texture
# named after an artist: diagonal strokes are "van gogh", dots "monet", a checkerboard "picasso";
# a flat background means no style), and jitter in position and size. Captions follow the paper's
# phrasing: "a red circle in the style of monet". A style-free image is captioned "a red circle" or
# "a red circle in the style of a painting", so "a painting" means *no particular style*, the role
# it plays as the paper's target prompt.
#
# The world also has a **fact**: the alias "the president" always denotes one object, a blue
# cross. The paper's fact edit (President of the United States -> Joe Biden) becomes: make "the
# president" draw its new holder, a red circle.

# %%
images, captions, scenes = world.dataset(12, seed=5)
fig = image_grid(list(images), titles=[c.replace(" in the style of ", "\n") for c in captions], ncols=6, size=1.6)

# %% [markdown]
# ## Two models and a scorer
#
# `toy` and `toy-t5` share the data, the UNet architecture, the seed and the training budget; they
# differ in the text encoder (and, because the encoder is built first from the same seed, in the
# UNet's random initial weights): a transformers `CLIPTextModel` (causal attention, like SD's) or a
# `T5EncoderModel` (bidirectional, like DeepFloyd IF's). The latent is the image itself, rearranged
# losslessly (2 x 2 pixel-unshuffle, 16 x 16 x 12), so the UNet does all the work the paper's
# localization is about. Both were trained with `python -m loco_lib.organism.training` (v-prediction, cosine
# schedule, batch 64, 3000 steps, 10 % caption dropout for classifier-free guidance).

# %%
rows = []
for name in (MODEL, COMPARE):
    info = json.loads((models_dir() / name / "training.json").read_text())
    pipe_ = loco_lib.load(name, progress=False)
    size = sum(f.stat().st_size for f in (models_dir() / name).glob("*/*.safetensors"))
    rows.append({"model": name, "text encoder": type(pipe_.text_encoder).__name__,
                 "UNet parameters": f"{sum(p.numel() for p in pipe_.unet.parameters()) / 1e6:.2f} M",
                 "encoder parameters": f"{sum(p.numel() for p in pipe_.text_encoder.parameters()) / 1e6:.2f} M",
                 "cross-attention layers": len(loco_lib.cross_attention_layers(pipe_.unet)),
                 "training steps": info["steps"], "final loss": round(info["final_loss"], 4),
                 "training time": f"{info['wall_seconds'] / 60:.0f} min on {info['threads']} threads",
                 "weights on disk": f"{size / 2**20:.1f} MiB"})
    del pipe_
pd.DataFrame(rows).set_index("model")

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5.5, 3.0))
for name in (MODEL, COMPARE):
    info = json.loads((models_dir() / name / "training.json").read_text())
    curve = info["loss_curve"]
    ax.plot(np.arange(len(curve)) * 50 + 25, curve, label=name)  # means over 50 steps (loco_lib.organism.training)
ax.set_yscale("log")
ax.set_xlabel("training step")
ax.set_ylabel("v-prediction loss")
ax.set_title("Training curves")
ax.legend(frameon=False)
fig.tight_layout()

# %% [markdown]
# The **attribute scorer** is a small transformers `CLIPModel` trained contrastively on rendered
# images and captions (`python -m loco_lib.organism.scorer`). It is a `ClipScorer` like CLIP ViT-L/14, so
# CLIP-score and LocoGen use it unchanged, and it reads off an image's shape, colour and style
# zero-shot: the image embedding is compared with the 64 shape x colour x style class embeddings
# (each the mean of its captions' text embeddings). On 2000 freshly rendered images it never saw:

# %%
# NBVAL_CHECK_OUTPUT
from loco_lib.clip_score import get_scorer

scorer = get_scorer("toy-scorer")
held_out = scorer.held_out_accuracy(n=2000)
print("scorer accuracy on 2000 held-out renders:", {a: f"{v:.3f}" for a, v in held_out.items()})

# %% [markdown]
# ## Measuring everything
#
# `organism.report` runs the protocol of this chapter for one model and returns plain numbers; each
# finished part is written to `CACHE_DIR`, so a second run (or a run after an interruption) reads it
# back instead of generating again. By default the parts are the JSON files in
# `data/organism/cache/`, committed with the repository: each file name carries a content key of the
# model's weights and of the code that measures (`organism.weights_fingerprint`), so they are read
# back only while both are unchanged, and a change to either measures again (`tests/test_organism.py`
# re-measures one part on every test run and compares).

# %%
cache = CACHE_DIR or organism.committed_cache_dir()
images = None if CACHE_DIR else organism.default_cache_dir()  # LocoGen's images stay out of the repository
reports = {name: organism.report(name, seeds=SEEDS, steps=STEPS, cache_dir=cache, sweeps_dir=images)
           for name in (MODEL, COMPARE)}
for name, rep in reports.items():
    print(f"{name}: computed now: {', '.join(rep.computed) or 'nothing (all read from the cache)'}")

# %% [markdown]
# ## 1. Does the model draw what it is asked?
#
# Every one of the 64 shape x colour x style captions and the four "president" captions, with each
# seed, read back by the scorer:

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({name: vars(rep.sample) for name, rep in reports.items()}).T.round(2)

# %%
pipe = loco_lib.load(MODEL, progress=False)
show = ["a red circle in the style of van gogh", "a green square in the style of monet", "a blue triangle in the style of picasso",
        "a yellow cross", "the president", "the president in the style of monet"]
out = loco_lib.generate(pipe, show, seeds=0, steps=STEPS, progress=False)
fig = image_grid(out.images, titles=[s.replace(" in the style of ", "\n") for s in show], ncols=6, size=1.6)

# %% [markdown]
# ## 2. LocoGen: where is each attribute controlled?
#
# For each window of m = 2 adjacent layers (loco's choice here: SD-1.5's m, Sec. 5.2; the threshold
# rule below selects m for each organism), the window reads a target prompt and every other layer
# the original (Algorithm 1). Three prompt sets, three attributes: van gogh -> "a painting"
# (style), circle -> square (object) and one colour -> another (colour). The curve shows how far
# each window moves the attribute's readout away from the original prompt, from the clean image (0)
# to the image where *every* layer reads the target (1). It counts the original attribute *lost*;
# whether the image shows the target instead is a separate question (the image grid below).

# %%
fig = organism.plot_windows(reports)

# %% [markdown]
# On `toy` the three attributes live in three different places, as the paper finds for style and
# objects on SD: van gogh's style (the style prompts are van gogh's) follows the window that contains layer 1 (the first block, at the 16 x 16
# latent) and a second one around layer 13; the object (circle -> square) follows layer 8, in the
# low-resolution middle of the UNet; the colour follows layer 13, at full resolution on the way up.
# The colour window is the least clean: it moves the colour three quarters of the way and also spoils
# some shapes (the colour sweep's table below). A curve counts only the attribute being swapped, so a flat curve
# does not mean a window leaves the image alone: the colour sweep's table of every window (below, after
# the seed-by-seed measurement) shows windows 0-1 and 1-2 spoiling shapes while the colour stays. The paper's SD-1.5 windows (style 8-9, objects 6-7, Fig. 5) sit
# elsewhere, in a 16-layer UNet of a different size: which layers carry what is a property of the
# trained model, and the organism shows the *kind* of finding, not SD's numbers.

# %%
# NBVAL_CHECK_OUTPUT
windows = organism.window_summary(reports)
windows.pivot(index="attribute", columns="model", values="window")  # the window Algorithm 1 picks (CLIP-score)

# %%
# NBVAL_CHECK_OUTPUT
windows

# %% [markdown]
# **Seed by seed.** The curves and the table above average over every prompt with the book's
# seeds (`SEEDS`), so a window that moves one seed's images and not the next one's would look the
# same as one that moves all of them. `loco_lib.organism.stability.headlines` runs the same
# protocol on `SPREAD_SEEDS` (the four sweeps here, and the two edits of section 3) and keeps every
# image's readouts; `loco_lib.per_image` then shows each seed alone, the prompts' own picks, and a
# 90 % bootstrap interval over the images (prompts x seeds). How many seeds is loco's choice: 4
# seeds x 8 prompts give 32 images per window (16 for the 4 fact prompts), so the fraction of images
# that keep an attribute has a binomial standard error of at most 0.09 (0.125 for the facts), small
# enough that a window which moves an attribute fully (1.00) and one which moves it half way (0.50)
# cannot be mistaken for each other. A headline counts as stable when every seed alone reaches the same side of the 0.5 line and the interval
# stays there too; the last two columns say whether it does.

# %%
from loco_lib import per_image
from loco_lib.organism.kept import measure
from loco_lib.organism.stability import headlines

spread = {name: measure("headlines", name, headlines, name, pipe if name == MODEL else loco_lib.load(name, progress=False),
                        scorer, seeds=SPREAD_SEEDS, steps=STEPS, progress=False,
                        cache_dir=None if images is None else f"{images}/{name}/headlines")
          for name in (MODEL, COMPARE)}

# %%
# NBVAL_CHECK_OUTPUT
with pd.option_context("display.width", 200, "display.max_columns", 20):
    display(per_image.window_headlines(spread).round(2))

# %%
fig = per_image.plot_window_seeds(spread)

# %% [markdown]
# Every window headline of this section holds on each of the four seeds, on both models, and every
# interval stays at or above the half line (the table). What changes from seed to seed is only which
# of the neighbouring windows Algorithm 1 ranks first (the seed columns: 0-1 or 1-2 for style, 7-8
# or 8-9 for the object, 6-7, 7-8 or 8-9 for the fact), and the window named in the table moves the
# attribute on every seed (the value in brackets: 0.88 or more where the mean is 1.00 or above). The prompts agree less than the seeds: on `toy` 5 of the 8 style
# prompts pick 0-1 on their own and 4 of the 8 colour prompts 13-14. The colour window moves three
# quarters of the colour and the fact window half of the fact on every seed alike, so the partial
# moves in the table above are properties of those windows, not noise of one seed. On `toy-t5` the
# four-seed picks for style (0-1), the object (8-9) and the fact (7-8) are the neighbours of the
# one-seed picks above (1-2, 7-8 and 8-9), in the same places.

# %% [markdown]
# Every window of the colour sweep on `toy`: the fraction of images the scorer still reads with the
# original shape, colour and style, and how far the colour readout and the CLIP-score move.

# %%
# NBVAL_CHECK_OUTPUT
organism.window_table({MODEL: reports[MODEL]}, ("colour",))

# %% [markdown]
# The images behind the style curve, for the first prompt:

# %%
from loco_lib.locogen import locogen, window_grid
from loco_lib.prompts import default_prompts, load_pairs

style_pairs = load_pairs(default_prompts("style", MODEL)).select([0])
res = locogen(pipe, style_pairs, "style", 2, SEEDS, scorer=scorer, steps=STEPS,
              cache_dir=f"{reports[MODEL].sweeps}/style", progress=False)  # the report's images of this prompt
fig = window_grid(res, prompt_index=0, ncols=9)

# %% [markdown]
# **Whose style?** The style sweep above runs on van gogh's prompts. Sec. 5.2 reports that on the
# four SD models style, objects and facts are controlled from a few layers "irrespective of the
# specific prompt used", and that only on DeepFloyd IF the layers depend on the prompt. The same
# search on each artist's own prompts (the world's 8 style scenes in that style, 1 seed; the
# measurements chapter 7 localizes each artist with, read from the same kept files), and every
# window that goes at least half way from the clean CLIP-score to every layer altered:

# %%
from loco_lib import unlearning
from loco_lib.organism.figures import artist_window_table
from loco_lib.prompts import load_artists

artist_results = {a: measure(f"artist-window-{a}", MODEL, locogen, pipe, load_artists(a, model=MODEL)[:None], "style", 2,
                             SEEDS, scorer=scorer, steps=STEPS, guidance=None, progress=False)
                  for a in unlearning.artists(MODEL)}

# %%
# NBVAL_CHECK_OUTPUT
artist_window_table(artist_results)

# %% [markdown]
# On `toy` where style is controlled depends on the artist (the table above): van gogh's at the
# first layers (0-1), picasso's at the late ones (11-12), monet's at both (1-2 and 12-13 go
# equally far). This is a divergence from Sec. 5.2 on the organism: its SD-topology UNet localizes
# style prompt-dependently, which the paper reports for DeepFloyd IF only. On this page and the
# following ones "the style window" is van gogh's, the artist every style measurement runs on.
# Chapter 6 shows each artist's windows for every organism, prompt by prompt.

# %% [markdown]
# The same search on `SPREAD_SEEDS` (4 seeds x 8 prompts, 32 images per window;
# `loco_lib.organism.stability.window_images`, kept like the headlines above): each artist's window
# over all the images, how far it moves that artist's style with its interval, each seed's own pick,
# and how many prompts pick it; the figure shows every window for each artist (band: the interval;
# thin lines: each seed alone). Here "moved" is the scorer's readout image by image (the fraction
# of images that lose the artist's style, over the fraction that altering every layer loses), where
# the one-seed table above reads CLIP-scores.

# %%
# NBVAL_CHECK_OUTPUT
from loco_lib.organism.stability import window_images

artist_seeds = {a: measure(f"artist-window-seeds-{a}", MODEL, window_images, pipe, scorer, load_artists(a, model=MODEL),
                           "style", 2, SPREAD_SEEDS, STEPS,
                           cache_dir=None if images is None else f"{images}/{MODEL}/artist-seeds/{a}")
                for a in unlearning.artists(MODEL)}
with pd.option_context("display.width", 200, "display.max_columns", 20):
    display(per_image.window_headlines({MODEL: {"windows": artist_seeds}}).droplevel("model").rename_axis("artist").round(2))
fig = per_image.plot_window_seeds({MODEL: {"windows": artist_seeds}}, attributes=list(artist_seeds))

# %% [markdown]
# On four seeds the divergence holds: picasso's style moves only with the late windows (the
# figure: no window before layer 11 moves it, on any seed), van gogh's and monet's with the first
# layers, and each artist's pick moves its style in all 32 images, on every seed (the table). What
# one seed does not settle is the exact window among neighbours: over the four seeds monet's pick is
# 0-1, while seeds 0 and 2 alone pick 1-2 (the one-seed table's window), and picasso's is 12-13,
# while seed 0 alone picks 11-12 (the one-seed table's).

# %% [markdown]
# **Choosing m, Sec. 5.1.2's threshold rule.** The smallest window size whose best window moves the
# CLIP-score at least 80 % of the way from clean to fully altered (loco's threshold: the paper states
# none; App. G's own procedure, growing the window until the score saturates, is run in the chapter
# "LocoGen"):

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({name: {"m selected": rep.app_g.m} for name, rep in reports.items()}).T

# %% [markdown]
# ## 3. LocoEdit at the style window
#
# The closed-form edit (Sec. 6) of the key and value projections of the style window, computed
# from four van gogh prompts and evaluated on eight *other* prompts (held out), on the same objects
# in the other two styles, and without style. Beside it, the same edit at an inert window (a
# control: windows where LocoGen moved nothing) and at every layer (App. F's baseline).

# %%
# NBVAL_CHECK_OUTPUT
organism.edit_table(reports[MODEL])

# %% [markdown]
# The same edit on `SPREAD_SEEDS` (the seed-by-seed measurement of section 2, at the style window
# it picks itself), every readout of every prompt group before and after, with the after-fraction's
# interval and each seed's own:

# %%
# NBVAL_CHECK_OUTPUT
with pd.option_context("display.width", 200, "display.max_columns", 20):
    display(per_image.edit_seeds(spread, "style").round(2))

# %% [markdown]
# On four seeds the edit holds as on one: on `toy` 31 of the 32 held-out van gogh images lose the
# style (after 0.03: one image of seed 2 keeps it), on `toy-t5` all 32 do, and every image of the
# other styles and of the style-free prompts keeps its style, shape and colour, on both models and
# every seed.
#
# Read the `edited` rows: the van gogh texture is gone from held-out prompts the edit never saw,
# while the shape and colour stay, and the `other styles` and `style-free` rows do not move. The
# inert window changes nothing at all, so the effect is the window's, not the edit's arithmetic.
#
# The `second window` rows edit the late window around layer 13, where the readout curve also says
# van gogh is lost. The image grid above shows what happens there: at windows 12-13 and 13-14 the
# strokes do not give way to a flat background but to a faint, broken texture, while the early
# windows give the flat target. So the late window does not control the style, it
# garbles it, and Algorithm 1's CLIP-score against the original prompt rightly ranks the early window
# first. On `toy` the edit placed at the late window changes nothing: LocoGen swaps the embeddings
# of *every* token there, while LocoEdit changes the K/V weights only along the last-subject-token
# states it is fitted on.
#
# The all-layers edit also removes van gogh on `toy` and leaves the other styles alone. App. F
# compares editing all layers with editing LocoGen's layers for objects and facts (Fig. 54: all
# layers does worse); for a style, the organism's cost of editing every layer shows up on `toy-t5`
# instead (section 5).

# %% [markdown]
# The fact: "the president" (a blue cross) -> its new holder (a red circle), edited at the window
# LocoGen finds for the fact and at all layers. `new shape` / `new colour`: the fraction of
# images that show the red circle's shape and colour.

# %%
# NBVAL_CHECK_OUTPUT
organism.edit_table(reports[MODEL], "fact_edit")

# %% [markdown]
# The fact edit on `SPREAD_SEEDS`, at the facts window that measurement picks:

# %%
# NBVAL_CHECK_OUTPUT
with pd.option_context("display.width", 200, "display.max_columns", 20):
    display(per_image.edit_seeds(spread, "facts").round(2))

# %% [markdown]
# On four seeds `toy`'s fact edit at 7-8 changes nothing on any seed: the president stays a blue
# cross (shape and colour 1.00, the new holder's 0.00). On `toy-t5` the same edit at its own window
# 7-8 gives every image the new holder's shape (target shape 1.00) and keeps the old colour (target
# colour 0.00): half the fact, as far as its window moves it.
#
# The fact is the organism's hardest case, and on `toy` the edit **fails**: "the president" fixes
# *two* attributes, which the LocoGen table above shows controlled at different layers (the shape
# around layer 8, the colour around layer 13), so no window of two adjacent layers holds the whole
# fact, and LocoGen's best fact window moves only half of it. The edit at that window leaves the blue
# cross in place; the all-layers edit turns it red but keeps the cross, and recolours some of the
# prompts that name objects directly. A negative result, shown as measured: the paper's single-window
# fact edit relies on a fact being read in one place, which the organism does not provide.

# %% [markdown]
# ## 4. Neurons
#
# Sec. 7: rank the key/value neurons of the style window by a z-score between van gogh prompts and
# the same prompts without style (loco computes Welch's t), and drop out the top k at generation time
# (loco, like the authors' code, replaces them with their mean over the style-free prompts).

# %%
fig = organism.plot_neurons(reports)

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({name: {p.k: p.style for p in rep.neurons} for name, rep in reports.items()}).rename_axis("k").round(2)

# %% [markdown]
# ## 5. CLIP vs T5: the App. M hypothesis
#
# LocoEdit rewrites what the window reads at the **last subject token** ("gogh"). The paper
# argues it fails on DeepFloyd IF because T5 attends in both directions, so the style also lives in
# the other tokens. The organism tests this directly: `toy-t5` differs from `toy` in its encoder
# (and its UNet's random initial weights, section "Two models and a scorer"). First the same LocoEdit protocol on both:

# %%
# NBVAL_CHECK_OUTPUT
organism.edit_summary(reports)

# %% [markdown]
# The App. M prediction does **not** appear on the organism. The T5 model's edit at its own style
# window removes van gogh from held-out prompts as completely as the CLIP model's, and leaves the
# other styles and the shapes and colours alone. What does differ: on `toy-t5` editing every layer
# also erases part of the *other* styles (the closing table's all-layers row), while on `toy` it
# does not.
#
# Then the question behind it: which text tokens carry the style? Every layer reads the original
# prompt's embeddings, except at some token positions, which are taken from the target prompt
# ("... in the style of a painting"): the subject's tokens ("van gogh"), the tokens after it
# (end-of-text and padding), both, or all. The number is the fraction of images still in van gogh
# style.

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({name: {t.which: t.style for t in rep.token_swap} for name, rep in reports.items()}).rename_axis("tokens swapped").round(2)

# %% [markdown]
# The answer is the opposite of the hypothesis as the paper words it. With the **causal** encoder the
# style survives either swap alone: the subject tokens carry it, and so do the end-of-text and padding
# tokens after them, which attend to "van gogh": the information leaks past the subject, which App. M expects of T5
# rather than of a causal encoder. With the
# **bidirectional** T5 encoder, replacing the subject tokens alone removes the style, and the tokens
# after the subject carry none the UNet uses. So on this organism the subject's own tokens are *more*
# sufficient with T5, and the edit at the last subject token works on both. Why DeepFloyd IF fails may then lie in what the
# organism does not share with it: a large T5 trained on text only and frozen, whose tokens are not
# shaped by the image loss as this small jointly trained encoder's are; IF's pixel-space cascade; or
# its second text path, the pooled `add_embedding` into the time embedding, which an edit of
# `add_k_proj`/`add_v_proj` does not reach (the chapter "DeepFloyd IF and T5" trains organisms with IF's UNet to test this). The
# organism rules out the simplest reading (bidirectional attention by itself), not the paper's
# observation on IF.

# %% [markdown]
# ## What the paper reports, and what the organism shows
#
# The table is computed from the reports above; the header gives each column's seeds per prompt.

# %%
# NBVAL_CHECK_OUTPUT
seeds_label = f"{len(SEEDS)} seed{'s' if len(SEEDS) > 1 else ''}"
organism.summary_table({f"{MODEL} ({seeds_label})": reports[MODEL], f"{COMPARE} ({seeds_label})": reports[COMPARE]},
                       paper=organism.PAPER)

# %% [markdown]
# ## 6. Does it depend on the training run?
#
# Everything above is one trained `toy`, training seed 0. To see which findings belong to the
# method and which to one training run, `toy` was trained a second time with training seed 1
# (the same world, recipe and budget, but other samples of it, since the training seed also seeds the
# data stream: `python -m loco_lib.organism.training --kind clip --seed 1 --steps 3000 --out
# models/toy-seed1`; its training time is in the table below). Its weights are not shipped; its report was
# measured once with `loco report models/toy-seed1 --out data/organism/toy-seed1.json` (the same
# protocol, one seed per prompt) and is read back here, with the loco commit that measured it.
# Two more records in the same folder, `toy-2seeds.json` and `toy-t5-2seeds.json`, hold two seeds per
# prompt for the shipped models, to show how much the one-seed numbers of this page move with more
# samples.

# %%
# NBVAL_CHECK_OUTPUT
recorded = {path.stem: organism.load_report(path) for path in sorted(organism.recorded_dir().glob("*.json"))}
pd.DataFrame({name: {"model": r.model, "training seed": r.training["seed"], "final loss": round(r.training["final_loss"], 4),
                     "training time": f"{r.training['wall_seconds'] / 60:.0f} min" if "wall_seconds" in r.training else "-",
                     "seeds per prompt": len(r.seeds), "measured at loco commit": r.recorded["loco_commit"]}
              for name, r in recorded.items()}).T

# %% [markdown]
# Whether today's code would measure these files again: `current` when none of the files the
# measurement runs (`loco_lib.organism.measuring_code()`) nor the weights changed since the commit
# that measured it, comments and docstrings aside; `stale` names the files that did, so the record
# is stale against that commit and its numbers are those of that commit's code.

# %%
organism.status_table(sorted(organism.recorded_dir().glob("*.json")))

# %%
live = {name: reports[name] if name in reports else organism.report(name, seeds=SEEDS, steps=STEPS, cache_dir=cache, sweeps_dir=images)
        for name in ("toy", "toy-t5")}  # the shipped models, as measured on this page
fig = organism.plot_windows({"toy, training seed 0": live["toy"], "toy, training seed 1": recorded["toy-seed1"]})

# %%
# NBVAL_CHECK_OUTPUT
seed_runs = {"seed 0": live["toy"], "seed 1": recorded["toy-seed1"]}
organism.summary_table({f"training seed 0 ({seeds_label}, above)": live["toy"],
                        "training seed 1 (1 seed, recorded)": recorded["toy-seed1"]})

# %% [markdown]
# Every window of the style and object sweeps in the two runs (`moved`: the readout, `CLIP moved`:
# the CLIP-score Algorithm 1 ranks by), and the fact's sweep with its shape and colour readouts:

# %%
# NBVAL_CHECK_OUTPUT
organism.window_table(seed_runs, ("style", "objects"), columns=("moved", "CLIP moved"))

# %%
# NBVAL_CHECK_OUTPUT
organism.window_table(seed_runs, ("facts",), columns=("shape", "colour", "moved", "CLIP moved"))

# %% [markdown]
# The seed-1 record read above is `stale` (the status table): measured by the code of its commit,
# which the files it names have changed since; its numbers, and what the paragraph below reads from
# them, are that code's. Seed 1's weights are not shipped, so its record cannot be measured again
# here; the shipped models' live columns are today's code.
#
# The second training run finds the same anatomy. Style is controlled by layer 1 (both windows
# containing it, 0-1 and 1-2, remove van gogh completely on both runs; CLIP-score ranks 1-2 first on
# seed 1, by a small margin), the object by layer 8 (on seed 1, 8-9 moves it fully and 7-8 most of the
# way), the colour by the late window 13-14, as on seed 0; in both runs every window from 2-3 to
# 11-12 leaves the style alone. The fact is never moved all the way by one window: its best window
# moves it half way, 7-8 on seed 0 and 13-14 on seed 1, and the fact table shows which half each
# window moves. LocoEdit at the style window again removes van gogh and keeps the other styles, the
# inert window again changes nothing, the threshold rule again selects the same m, and the token-swap result is
# the same (the summary table above). What differs is read off the same table: seed 1 draws shapes a
# little worse, needs more neurons before the style goes, and its late style window is more
# editable. So between training runs the style and object windows move by at most one layer and
# the fact's best window moves from 7-8 to 13-14, while which layers control style, object and
# colour does not.

# %%
# NBVAL_CHECK_OUTPUT
organism.summary_table({f"toy ({seeds_label}, above)": live["toy"], "toy (2 seeds, recorded)": recorded["toy-2seeds"],
                        f"toy-t5 ({seeds_label}, above)": live["toy-t5"], "toy-t5 (2 seeds, recorded)": recorded["toy-t5-2seeds"]})

# %% [markdown]
# The two-seed records are `current` in the status table above: the code that measured them is the
# code that measures the one-seed columns. With two seeds per prompt (twice the images in every cell) the shipped models tell the same
# story. What moves is what rested on one or two images: shape accuracy, the k = 4 point of the
# neuron curves, the van gogh left by an edit at `toy`'s late window 12-13, and the other styles left
# by the all-layers edit on `toy-t5` (compare each one-seed column with its two-seed neighbour). A
# `moved` above 1 (an object window's 1.07) means the window removes the circle more completely than
# altering all 16 layers does. On `toy-t5` the window Algorithm 1 picks moves to the neighbour
# (style 1-2 -> 0-1, objects 7-8 -> 8-9; the last two columns of the table above).

# %% [markdown]
# Reproduce the weights: `python -m loco_lib.organism.training --kind clip --steps 3000 --out models/toy` (and
# `--kind t5 --out models/toy-t5`); the scorer: `python -m loco_lib.organism.scorer --out models/toy-scorer`.
# `loco evaluate toy --attribute style --json` measures a set from the command line, with
# `--edit EDIT.safetensors` an edited model.
