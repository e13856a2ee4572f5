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
# # Neuron-level editing
#
# LocoEdit (previous chapter) rewrites whole key and value matrices of the layers that LocoGen
# localized. Sec. 7 of the paper asks whether a style is even more localized: is it carried by a
# **few neurons** of those layers? Here a neuron is one output unit of a key or value projection,
# one of its $d'$ columns (1280 in SD-1.5's layers 8 and 9). The recipe:
#
# 1. run prompts *with* the style and prompts *without* it through the localized layers' key and
#    value projections, at the last subject token;
# 2. give every neuron a two-sample statistic that says how differently it fires in the two groups,
#    and rank the neurons by its absolute value;
# 3. at generation time, overwrite the top $k$ neurons and see whether the style goes (Fig. 9) and
#    how the CLIP-score against "style of <artist>" falls as $k$ grows (Fig. 10).
#
# Nothing is learned or rewritten in the weights: the edit is a hook on the projections that is
# removed when generation ends.
#
# By default the page runs on `toy`, loco's model organism, at the style window LocoGen found on it
# (layers 0-1, the window chapter 1 measures with one seed per prompt and again on four seeds); its scorer also reads each image off, so the sweep reports the fraction of images
# still in the artist's style. Run it in Colab with `MODEL = "sd15"` and `KS = [0, 30, 50, 100]` for
# the paper's numbers of neurons on Stable Diffusion (its ranking prompts stay loco's choice, below;
# loco has not run it on the real model).

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
MODEL = "toy"  # toy toy-t5 sd14 sd15 openjourney sd21 sdxl deepfloyd-if or a tiny twin
ARTIST = "van gogh"  # one of the App. K.1 artists (toy: van gogh monet or picasso)
LAYERS = None  # e.g. "8-9"; None: the paper's style window for this model (toy: the measured one)
KS = [0, 4, 8, 16]  # neurons replaced per projection; the paper: 50 and 100 of 1280 (Figs. 9, 59, 60), 30 50 100 (Fig. 10)
MODE = "mean"  # mean (the authors code) or zero (the literal drop-out)
N_PROMPTS = 6  # prompts of the artist to generate and score
SEEDS = [0, 1, 2, 3]  # seeds per prompt (the seeds the authors' clip-sim.py averages over; loco's choice here)
STEPS = None  # None: the model default (50 for SD, 15 for toy)
GUIDANCE = None  # None: the model default (7.5 for SD, 3 for toy)
SCORER = None  # None: the model's own (CLIP ViT-L-14 for real models, toy-scorer for toy, tiny for twins)

# %%
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import loco_lib
from loco_lib import per_image
from loco_lib.clip_score import get_scorer
from loco_lib.neurons import k_sweep, plot_k_sweep, rank_neurons
from loco_lib.paper import default_window
from loco_lib.plots import change_maps, image_grid
from loco_lib.prompts import load_artists

pipe = loco_lib.load(MODEL)
scorer = get_scorer(SCORER, MODEL)
layers = LAYERS if LAYERS is not None else default_window(MODEL, "style")
artist = load_artists(ARTIST, model=MODEL)
artist_name = artist.concepts[0]

# %%
# NBVAL_CHECK_OUTPUT
print(f"{MODEL}: neurons of the key and value projections in layers {layers}; scorer {scorer.name}")
print(f"{artist_name}: {len(artist)} prompts with the style and {len(artist)} without")

# %% [markdown]
# ## The statistic
#
# Take one key (or value) projection $W \in \mathbb{R}^{d \times d'}$ of a localized layer. For the
# $N_1$ prompts with the style let $c_i \in \mathbb{R}^d$ be the text state at the last subject
# token (the token "Gogh") and $z_i = c_i W \in \mathbb{R}^{d'}$ its key; for the $N_2$ prompts
# without the style, $c'_i$ and $z'_i = c'_i W$ likewise (these prompts have no subject, so loco
# reads their last prompt token: loco's choice, as the paper does not say which token; the authors'
# code reads position 76 for both groups, below). For neuron $j$, with group means $\bar z_j, \bar z'_j$ and unbiased
# variances $s_j^2, s_j'^2$:
#
# $$t_j = \frac{\bar z_j - \bar z'_j}{\sqrt{s_j^2 / N_1 + s_j'^2 / N_2}} .$$
#
# This is Welch's two-sample statistic (what `scipy.stats.ttest_ind(..., equal_var=False)` returns),
# the form of the authors' `get_z_score`; the paper (Sec. 7) calls it the z-score and gives no formula. Its variances are the unbiased ones ($s^2$ with $N - 1$ in the
# denominator, ddof=1), loco's choice: the paper does not say, and the authors' public code
# (`get_z_score` in `neuron_modifications/detect_neurons.py` of
# [samyadeepbasu/LocoGen](https://github.com/samyadeepbasu/LocoGen)) divides by $N$ (`np.std`,
# ddof=0). With equally many prompts in both groups the two differ by the constant factor
# $\sqrt{N/(N-1)}$ and rank the neurons identically (tested in `tests/test_neurons.py`). A large $|t_j|$ means that neuron $j$ reacts to the artist's name
# consistently across prompts. Neurons are ranked by $|t_j|$ separately for every projection, and
# $k$ means $k$ neurons of *each* key and value projection of the window (`scope="global"` in
# `loco_lib.neurons` takes the $k$ largest over all of them instead).
#
# ## What replaces a neuron
#
# The paper says the top neurons are "dropped out" during generation (Sec. 7, the captions of
# Fig. 9, 59 and 60), which read literally means setting them to zero; the same captions speak of
# "modified neurons", and the text never names a value. The authors' public code computes, for each
# selected neuron, its **mean activation over the style-free prompts** (`detect_neurons.py`; mean
# ablation); the line that writes these values into the conditional branch is commented out in its
# published `neuron_modifications/nethook_diffusion.py`. The neuron then carries, at every token,
# the style-free prompts' mean at the token the statistic was read at, instead of a value that no
# prompt ever produces. `loco_lib` does the same by default (`MODE = "mean"`); `MODE = "zero"` is
# the literal drop-out. In both modes the replacement is applied at every text token of the
# conditional branch of classifier-free guidance; the unconditional branch is left alone (as that
# commented-out line would do; the paper does not say).
#
# One more difference from the authors' code: it took the activations at token position 76 (a
# padding token) although the paper says the last subject token. `loco_lib` uses the last subject
# token; `rank_neurons(..., position=76)` reproduces the code, and a cell below compares the two.

# %% [markdown]
# ## The prompts (App. K.1)
#
# The paper lists about ten prompts per artist (App. K.1). For the z-score it puts the chosen
# artist's name into all of the listed prompts and builds the style-free ones by removing the name
# (App. K.1: "for each artist, we put the artist name in all of the above prompts"); loco ranks on
# the chosen artist's own prompts only (loco's choice: on SD, pass every artist's prompts with the
# name replaced to follow App. K.1). loco's style-free counterparts remove the whole attribution ("in the
# style of Van Gogh", "painted by Van Gogh"), not just the name, so that no dangling "in the style
# of" is left (loco's choice; `data/prompts/artists.yaml` explains it). The organism
# uses the scenes of its style prompt file, with and without "in the style of <artist>".

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({"with the style (N1)": artist.originals, "without (N2)": artist.targets})

# %% [markdown]
# ## Ranking the neurons

# %%
ranking = rank_neurons(pipe, layers, artist.originals, artist.targets, artist.subjects)

# %%
# NBVAL_CHECK_OUTPUT
for layer, proj in ranking.keys:
    print(f"layer {layer} {proj:5s}: {ranking.width((layer, proj))} neurons")
print(f"groups: {ranking.n_with} prompts with the style and {ranking.n_without} without")

# %% [markdown]
# The strongest neurons of each projection: their statistic, their rank within the projection and
# the style-free mean that `MODE = "mean"` writes in their place.

# %%
# NBVAL_CHECK_OUTPUT
table = ranking.table()
table.groupby(["layer", "projection"], sort=False).head(4).sort_values(["layer", "projection", "rank"]).reset_index(drop=True).round(2)

# %% [markdown]
# How concentrated is the signal? Each curve is one projection's $|t|$ values sorted from the
# largest down; the dashed lines mark the $k$ values of the sweep below.
#
# The paper replaces 50 or 100 "out of 1280" neurons in Figs. 9, 59 and 60, and 30, 50 or 100 in
# Fig. 10; per projection as in the authors' code, that is 2 to 8 percent of each.
# The organism's projections in layers 0-1 are 64 wide (tiny-sd15's 32), so the default
# `KS = [0, 4, 8, 16]` goes up to a quarter of a projection; the cell clips any `k` above the width
# of the narrowest projection.

# %%
width = min(ranking.width(key) for key in ranking.keys)
ks = sorted({min(int(k), width) for k in KS})
if ks != sorted(set(KS)):
    print(f"KS clipped to the {width} neurons per projection of {MODEL}: {ks}")

fig, ax = plt.subplots(figsize=(6.5, 3.2))
for key in ranking.keys:
    ax.plot(np.arange(1, ranking.width(key) + 1), np.sort(ranking.abs_z[key])[::-1], marker=".", ms=3,
            label=f"layer {key[0]} {key[1]}")
for k in ks:
    if k > 0:
        ax.axvline(k + 0.5, color="grey", ls="--", lw=0.8)
        ax.annotate(f"k = {k}", (k + 0.5, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                    textcoords="offset points", fontsize=8, color="grey")
ax.set_xscale("log")
ax.set_xlabel("neuron rank within its projection")
ax.set_ylabel("|Welch statistic|")
ax.set_title(f"{MODEL}: {artist_name} vs style-free prompts")
ax.legend(frameon=False, fontsize=8)
fig.tight_layout()

# %% [markdown]
# The authors' token position (76 on SD: the last padding position) against the last subject token: how many of the top-$k$
# neurons the two rankings share, summed over the projections.

# %%
# NBVAL_CHECK_OUTPUT
last_position = pipe.tokenizer.model_max_length - 1  # 76 on SD (77 tokens), 11 on the organism
ranking_76 = rank_neurons(pipe, layers, artist.originals, artist.targets, position=last_position)
shared = []
for k in [k for k in ks if k > 0]:
    a, b = ranking.top(k), ranking_76.top(k)
    shared.append({"k": k, "selected": sum(len(v) for v in a.values()),
                   "shared by both rankings": sum(len(np.intersect1d(a[key], b[key])) for key in a)})
pd.DataFrame(shared)

# %% [markdown]
# ## The k-sweep (Fig. 10)
#
# For each $k$, `k_sweep` generates the first `N_PROMPTS` prompts of the artist with the same seeds,
# the top $k$ neurons of every projection replaced, and scores each image against "style of
# <artist>", as the paper does. $k = 0$ is the unedited model (the brown bar of Fig. 10). The
# sweep runs once with `MODE` and once with the other replacement, for comparison. The dashed line
# stands for Fig. 10's blue bar ("controlling layers receive other prompt"; the authors' code gives
# layers 8-9 the prompt "painting"): here the localized layers read the style-free prompt instead
# (LocoGen's altered input; loco's choice of prompt).
#
# The paper does not name Fig. 10's CLIP model. The authors' script for it,
# `neuron_modifications/clip-sim.py` in [LocoGen](https://github.com/samyadeepbasu/LocoGen), scores
# with open_clip's ViT-B-16 (OpenAI weights) as the plain cosine similarity of image and text
# embeddings, averaged over seeds 0-3. loco scores with the model's own scorer (CLIP ViT-L-14 on the
# real models, 100 x the cosine, clamped at 0; loco's choice, as on every page), so its numbers are
# not on Fig. 10's scale; `SCORER` picks another.

# %%
prompts = artist.originals[:N_PROMPTS]
targets = artist.targets[:N_PROMPTS]
prompts_x = [p for p in prompts for _ in SEEDS]
seeds_x = [s for _ in prompts for s in SEEDS]
style_text = f"style of {artist_name}"
other = "zero" if MODE == "mean" else "mean"

sweep = pd.concat([
    k_sweep(pipe, ranking, prompts_x, ks=ks, scorer=scorer, seeds=seeds_x, steps=STEPS, mode=mode,
            score_texts=style_text, guidance=GUIDANCE, label=f"{mode} replacement", keep_images=mode == MODE)
    for mode in (MODE, other)
], ignore_index=True)
altered = loco_lib.generate(pipe, prompts_x, alt_prompts=[t for t in targets for _ in SEEDS], layers=layers,
                            seeds=seeds_x, steps=STEPS, guidance=GUIDANCE)
altered_scores = scorer.score(altered.images, style_text).double().cpu().numpy()
altered_score = float(altered_scores.mean())

# %%
# NBVAL_CHECK_OUTPUT
for label, group in sweep.groupby("label", sort=False):
    print(f"{label}: neurons replaced in total for k = {list(group['k'])}: {list(group['n_neurons'])}")
print(f"images per k: {len(prompts_x)}")

# %%
# NBVAL_CHECK_OUTPUT
sweep[["label", "k", "n_neurons", "clip_score", "std"]].round(1)

# %% [markdown]
# With the organism's scorer the sweep can also be read off directly: the fraction of the images
# that still show the artist's style, for each k (the sweep's own images, `MODE`).

# %%
# NBVAL_CHECK_OUTPUT
main = sweep[sweep["label"] == f"{MODE} replacement"]
if "accuracy" in sweep:
    display(pd.DataFrame({"k": main["k"], f"images still in {artist_name} style": [a["style"] for a in main["accuracy"]]})
            .reset_index(drop=True).round(2))
else:
    print(f"{scorer.name} has no attribute readouts (only the model organism's scorer does)")

# %% [markdown]
# The same fractions seed by seed (`loco_lib.per_image.readout_by_seed`: each image read on its own,
# the interval a bootstrap over the images), with the images whose layers read the style-free
# prompt (Fig. 10's blue bar, below) as the last row:

# %%
# NBVAL_CHECK_OUTPUT
if hasattr(scorer, "accuracy"):
    sets = {f"k = {k}": ims for k, ims in zip(main["k"], main["images"])}
    sets[f"layers {layers} read the style-free prompt"] = altered.images
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        display(per_image.readout_by_seed(sets, scorer, prompts_x, seeds_x, "style").round(2))
else:
    print(f"{scorer.name} has no attribute readouts (only the model organism's scorer does)")

# %% [markdown]
# On the organism, read from the tables above (`N_PROMPTS` = 6 prompts x 4 seeds, 24 images per
# row): replacing the top 16 neurons of each projection, and giving layers 0-1 the style-free
# prompt, removes van gogh from every image on every seed. Fewer neurons remove it only in part,
# and how much depends on the seed: with k = 4 the style stays in 0.71 of the images (0.50 to 1.00
# on each seed alone), with k = 8 in 0.08 (two images, both of seed 2). Replacing the
# neurons by zero instead of the style-free mean does less at k = 4 and 8 (a CLIP-score of 44.3
# and 40.4 against 32.5 and 8.5) and as much at k = 16.

# %%
fig = plot_k_sweep(sweep, title=f"{MODEL}: CLIP-score vs '{style_text}'")
ax = fig.axes[0]
line = ax.axhline(altered_score, color="tab:blue", ls="--", lw=1.2)
ax.add_artist(ax.get_legend())  # keep the k legend and add a second one for the line
ax.legend([line], [f"layers {layers}\nread the\nstyle-free prompt"], loc="lower left", bbox_to_anchor=(1.0, 0.0),
          frameon=False, fontsize=8)

# %% [markdown]
# Fig. 10's blue bar on this model: the CLIP-score of the images whose layers `layers` read the
# style-free prompt (mean and standard deviation over the same images as each k, as in the table
# above), and, with the
# organism's scorer, the fraction of them still in the artist's style.

# %%
# NBVAL_CHECK_OUTPUT
line = f"altered input (layers {layers}): CLIP-score {altered_score:.1f} (std {float(altered_scores.std()):.1f})"
if hasattr(scorer, "accuracy"):
    line += f"; images still in {artist_name} style: {scorer.accuracy(altered.images, prompts_x)['style']:.2f}"
print(line)

# %% [markdown]
# ## The images across k
#
# The first prompts with the top-$k$ neurons replaced (`MODE`, the sweep's images for the first
# seed), next to the altered-input image.
# Under each row of images, the change from the unedited image ($k = 0$), as absolute pixel
# difference in grey on one scale for the whole figure. On the organism, in these two prompts of
# seed 0, the background strokes fade as k grows (the table above gives all the sweep's images).

# %%
grid_prompts = prompts[: min(2, len(prompts))]
first_seed = [i * len(SEEDS) for i in range(len(grid_prompts))]  # prompts_x repeats each prompt once per seed
images = [[row_images[i] for i in first_seed] for row_images in main["images"]]
images.append([altered.images[i] for i in first_seed])
columns = ["unedited (k = 0)" if k == 0 else f"k = {k}" for k in main["k"]] + ["style-free prompt\nin the window"]

maps, top = change_maps(images[0], *images)  # one row of change maps per column, vs k = 0
cells, row_labels = [], []
for i, prompt in enumerate(grid_prompts):
    cells += [col[i] for col in images]
    cells += [row[i] for row in maps]
    row_labels += [textwrap.fill(prompt, 28), "change from k = 0"]
fig = image_grid(cells, titles=columns + [""] * (len(cells) - len(columns)), row_labels=row_labels,
                 ncols=len(columns), size=2.0,
                 suptitle=f"{artist_name}: top-k neurons replaced ({MODE}); change: white = {top:.0f} of 255")

# %% [markdown]
# ## What the paper reports
#
# On SD-1.5, replacing 50 or 100 of 1280 neurons in the controlling layers (per key and value
# projection in the authors' code; the layers are Sec. 5.2's 8-9) removes the artist's style in the
# images of Figs. 9, 59 and 60, and Fig. 10 shows the CLIP-score against "style of <artist>" of the
# edited images below the unedited ones for the six artists whose prompts App. K.1 lists (Van
# Gogh, Monet, Salvador Dali, Jeremy Mann, Greg Rutkowski, Pablo Picasso). Sec. 7 says removal
# grows with the number of neurons, at a cost in image quality, which it attributes to the neurons
# possibly carrying other attributes. The paper runs neuron editing on SD-1.5 only (the authors'
# neuron scripts load SD-1.4).
#
# ## Running it on a real model
#
# In Colab (the Colab button at the top), set `MODEL = "sd15"`, `KS = [0, 30, 50, 100]`,
# `STEPS = 50`, `N_PROMPTS = None` (all of the artist's App. K.1 prompts, 8 to 11) and as many
# `SEEDS` as you can afford (the paper does not state its seeds; the authors' `clip-sim.py` reads
# seeds 0-3). `ARTIST` picks one of the six App. K.1 artists. Fig. 10's brown, red, orange and
# green bars, one group per artist (the blue bar is the altered-input run of the cells above):
#
# ```python
# from loco_lib.prompts import artist_names
#
# sweeps = []
# for name in artist_names():
#     a = load_artists(name)
#     r = rank_neurons(pipe, layers, a.originals, a.targets, a.subjects)
#     sweeps.append(k_sweep(pipe, r, [p for p in a.originals for _ in range(4)], seeds=[0, 1, 2, 3] * len(a.originals),
#                           ks=[0, 30, 50, 100], scorer=scorer, steps=50,
#                           score_texts=f"style of {name}", label=name))
# plot_k_sweep(pd.concat(sweeps, ignore_index=True))
# ```
