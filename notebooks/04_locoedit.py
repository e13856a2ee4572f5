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
# # LocoEdit: editing the localized layers in closed form
#
# LocoGen (previous chapter) finds a small window of cross-attention layers that controls a visual
# attribute: Van Gogh's style lives in layers 8 and 9 of SD-1.5. **LocoEdit** (paper Sec. 6)
# changes only the key and value projections of those layers, so that at the last subject token
# the keys and values the original prompt gives become the ones the attribute-free prompt gives.
# There is no
# fine-tuning: each projection gets a new weight from one small linear solve.
#
# This page:
#
# 1. writes down the objective and its closed form;
# 2. computes an edit for one concept on the localized window;
# 3. compares images and CLIP-scores before and after, on the edit's own prompts and on held-out
#    prompts of the same concept;
# 4. applies the same edit to *all* layers, the baseline of App. F;
# 5. checks unrelated prompts, as in App. L (Table 1);
# 6. saves the edit to a file, loads it, applies it and reverts it bit for bit.
#
# By default it runs on `toy`, loco's model organism: the edit removes its "van gogh" texture at the
# window LocoGen found (layers 0-1), and the organism's scorer reads every image off (shape,
# colour, style), so the effect is measured, not only seen. Run it in Colab with `MODEL = "sd15"`
# for the edit the paper shows removing Van Gogh from Stable Diffusion (Fig. 6); loco has not run
# it on the real model.

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
ATTRIBUTE = "style"  # style or objects or facts
CONCEPT = None  # e.g. "monet"; None: the first edit block of the attribute file
LAYERS = None  # e.g. "8-9" or "all"; None: the paper's window for this model and attribute (toy: the measured one)
LAM = 0.01  # lambda for keys and values (App. H)
N_PROMPTS = 4  # held-out prompts of the concept and unrelated prompts (each)
SEEDS = [0]
STEPS = None  # None: the model default (50 for SD, 15 for toy)
GUIDANCE = None  # None: the model default (7.5 for SD, 3 for toy)
SCORER = None  # None: the model's own (CLIP ViT-L-14 for real models, toy-scorer for toy, tiny for twins)
EDIT_FILE = "edit-cache/edit.safetensors"  # in Colab a Google Drive path keeps the edit
SPREAD_SEEDS = [0, 1, 2, 3]  # an organism's seed-by-seed edit readouts (chapter 1, section 3, measures them with the same seeds)

# %%
import json
import os
import random
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import loco_lib
from loco_lib.clip_score import get_scorer
from loco_lib.evaluate import compare
from loco_lib.edit_file import Edit, weights_checksum
from loco_lib.locoedit import compute_edit, fit_table, lambda_table
from loco_lib.paper import default_window
from loco_lib.plots import change_maps, image_grid
from loco_lib.prompts import default_prompts, edit_concepts, load_controls, load_edit, load_pairs, load_robustness

pipe = loco_lib.load(MODEL)
scorer = get_scorer(SCORER, MODEL)
source = default_prompts(ATTRIBUTE, MODEL)  # the paper's prompt file, or the organism's own
concept = CONCEPT if CONCEPT is not None else edit_concepts(source)[0]
layers = LAYERS if LAYERS is not None else default_window(MODEL, ATTRIBUTE)
n_layers = len(loco_lib.cross_attention_layers(pipe.unet))

# %%
# NBVAL_CHECK_OUTPUT
print(f"{MODEL}: {n_layers} cross-attention layers; scorer {scorer.name}")
print(f"edit: {ATTRIBUTE} / {concept!r} at layers {layers}, lambda {LAM}")

# %% [markdown]
# ## The objective and its closed form
#
# Take one key projection $\hat W \in \mathbb{R}^{d \times d'}$ of a layer in the window ($d$: the
# width of the text states the layer reads, $d'$: the width of its keys; the paper writes the
# matrices acting on row vectors, $k = c\,\hat W$). Stack $N$ text states into two matrices:
#
# * row $i$ of $X_{\text{orig}} \in \mathbb{R}^{N \times d}$ is the text-encoder output at the
#   **last token of the subject** in original prompt $i$: the token "Gogh" in
#   "a photo in the style of Van Gogh";
# * row $i$ of $X_{\text{target}} \in \mathbb{R}^{N \times d}$ is the output at the last token of
#   its attribute-free counterpart: "painting" in "a painting".
#
# LocoEdit looks for the weight that sends every original row to the key the *unedited* weight
# gives its target row, while staying close to the unedited weight:
#
# $$\min_{W}\; \big\lVert X_{\text{orig}} W - X_{\text{target}} \hat W \big\rVert_F^2
#   + \lambda \big\lVert W - \hat W \big\rVert_F^2 .$$
#
# The objective is quadratic in $W$; setting its gradient to zero gives
#
# $$W = \big(X_{\text{orig}}^\top X_{\text{orig}} + \lambda I\big)^{-1}
#       \big(X_{\text{orig}}^\top X_{\text{target}} \hat W + \lambda \hat W\big),$$
#
# and the same for the value projection. The paper uses $\lambda_K = \lambda_V = 0.01$ for every
# model (App. H). Two consequences of the formula:
#
# * $W - \hat W = (X_{\text{orig}}^\top X_{\text{orig}} + \lambda I)^{-1} X_{\text{orig}}^\top
#   (X_{\text{target}} - X_{\text{orig}}) \hat W$ has rank at most $N$, and a text state orthogonal
#   to every original row gets exactly the key and value it had before. Another prompt's keys and
#   values move only as far as its text states lie along the edited rows; the unrelated-prompt test
#   below looks at how far that is.
# * With $N$ rows much fewer than $d$ (4 rows against 768 dimensions for SD-1.5), the fit term can
#   be driven to nearly zero at a small $\lambda$; a larger $\lambda$ keeps the weight nearer
#   $\hat W$ and leaves more of the fit unmet (the $\lambda$ table below).
#
# `loco_lib.locoedit.closed_form` solves it in float64 through the equivalent $N \times N$ system
# when $N < d$ (the $d \times d$ one otherwise; no explicit inverse) and casts the result back to
# the model's dtype. Why the *last subject token*: CLIP's text encoder is causal, so that token is
# the first where the encoder has seen the whole subject; the tokens before it have not. The tokens
# after it (end-of-text, padding) have seen it too, and on `toy` they carry the style as well
# (chapter "The model organism", section 5).

# %% [markdown]
# ## The edit's prompts
#
# Each prompt file has one edit block per concept (`data/prompts/`, `edits:`). For style on the real
# models these are the four prompt variants of the authors' code, all mapped to "a painting"; on
# the organism, four scenes in van gogh style (each shape and colour once) mapped to the same scene
# "in the style of a painting". The subject column names the words whose last token gives the row.

# %%
# NBVAL_CHECK_OUTPUT
block = load_edit(source, concept)
pd.DataFrame({"original (row X_orig)": block.originals, "subject": block.subjects,
              "target (row X_target)": block.targets, "target subject": block.target_subjects})

# %% [markdown]
# ## Computing the edit
#
# `compute_edit` encodes the prompts, takes the rows at the subject tokens and solves for every key
# and value matrix of the window. The pipeline is not changed yet: an `Edit` holds only the new
# matrices and a fingerprint of the weights they replace.

# %%
edit = compute_edit(pipe, layers, block.originals, block.targets, block.subjects, block.target_subjects, lam=LAM)

# %%
# NBVAL_CHECK_OUTPUT
print("edited layers:", edit.layers)
print("rows per matrix (prompts):", edit.meta["n_rows"])
print(f"matrices replaced: {len(edit.weights)}")
for name, weight in edit.weights.items():
    print(f"  {name}  {tuple(weight.shape)}")

# %%
print(f"closed-form solves: {1000 * edit.edit_seconds:.1f} ms for {len(edit.weights)} matrices "
      f"(text encoding {edit.meta['encode_seconds']:.2f} s)")

# %% [markdown]
# At SD-XL's size the solve stays small. `benchmarks/locoedit_full_size.py` times it on SD-XL's
# full-size UNet (real shapes, random weights; not run here because it builds the 10 GB UNet) for
# the style window with 8 random 2048-wide rows (no prompts are encoded); its committed record:

# %%
# NBVAL_CHECK_OUTPUT
bench = json.loads((Path(loco_lib.__file__).parent.parent / "benchmarks/results/locoedit_full_size-sdxl-cpu.json").read_text())
print(f"{bench['model']}, layers {bench['layers']}, {bench['n_prompts']} prompts: {bench['matrices']} matrices updated in "
      f"{bench['seconds']:.1f} s on {bench['cpu_count']} CPU cores ({bench['dtype']}), loco {bench['loco_commit']}, {bench['date']}")

# %% [markdown]
# Fine-tuning editors such as ESD (Gandikota et al., 2023, https://arxiv.org/abs/2303.07345) reach
# their edit by gradient steps on the model instead of one solve.
#
# Does the new weight do what the objective asks? For each matrix: the fit term
# $\lVert X_{\text{orig}} W - X_{\text{target}} \hat W \rVert_F^2$ at the old weight and at the new
# one (`loco_lib.locoedit.fit_table`: `objective` on the rows from `kv_rows`), and how far the
# weight moved.

# %%
# NBVAL_CHECK_OUTPUT
fit = fit_table(pipe, edit, block.originals, block.targets, block.subjects, block.target_subjects)
fit.assign(**{"fit before": fit["fit before"].map("{:.3g}".format), "fit left": fit["fit left"].map("{:.2%}".format),
              "weight change": fit["weight change"].map("{:.1%}".format)}).drop(columns="fit after")

# %% [markdown]
# The fit term drops to almost nothing. The change has rank at most 4, the number of rows: on the
# organism, whose text states are 64 wide, that is 4 of 64 directions, and the weights move by the
# relative norms of the table's `weight change`; SD-1.5's matrices in layers 8-9 read 768-wide states, so there it is 4 of 768 directions
# (loco has not measured SD-1.5's weight change).
#
# The role of $\lambda$ (App. H) in one table: the fraction of the fit term left after the edit and
# the mean relative weight change, for the paper's value and two larger ones. A larger $\lambda$
# keeps the weight nearer $\hat W$ and leaves more of the fit term unmet (the table); this page
# generates no images at the larger values.

# %%
# NBVAL_CHECK_OUTPUT
lams = lambda_table(pipe, edit.layers, block.originals, block.targets, block.subjects, block.target_subjects,
                    lams=(LAM, 1.0, 100.0))
lams.assign(**{"lambda": lams["lambda"].map("{:g}".format), "fit left": lams["fit left"].map("{:.2%}".format),
               "weight change": lams["weight change"].map("{:.1%}".format)})

# %% [markdown]
# ## Before and after
#
# Two groups of prompts, both generated with the same seeds by the original model and by the
# edited one:
#
# * **held-in**: the edit block's own prompts, whose rows the edit was fitted on;
# * **held-out**: other prompts of the same concept from the LocoGen pairs ("A house in the style
#   of Van Gogh"). Their subject token reads a different context, so the edit reaches them only
#   if it generalizes.

# %%
pairs = load_pairs(source, concept=concept)
seen = {p.lower() for p in block.originals}
held_out = pairs.select([i for i, p in enumerate(pairs.originals) if p.lower() not in seen][:N_PROMPTS])

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({"held-out original T": held_out.originals, "target T'": held_out.targets})

# %% [markdown]
# Every prompt runs once per seed, with the original model, with the edit of the window, and with
# the same rows edited into *every* cross-attention layer (the App. F baseline, below).
# `loco_lib.evaluate.compare` applies each edit only while its images are generated (`Edit.applied`)
# and scores every image.

# %%
edit_all = compute_edit(pipe, "all", block.originals, block.targets, block.subjects, block.target_subjects, lam=LAM)
n_in, n_out = len(block), len(held_out)
results = compare(pipe, block.originals + held_out.originals, block.targets + held_out.targets,
                  {"original": None, "localized": edit, "all layers": edit_all}, seeds=SEEDS,
                  groups=["held-in"] * n_in + ["held-out"] * n_out, scorer=scorer, steps=STEPS, guidance=GUIDANCE)
original = results.generations["original"]
print(f"{3 * len(original)} images, {original.seconds_per_image:.2f} s per image ({original.settings['steps']} steps)")

# %% [markdown]
# Below each pair of images, the change the edit made: the absolute pixel difference, averaged over
# the colour channels and drawn in grey on one scale for the whole figure (white = the largest
# change, given in the title). On the organism, in these images (seed 0), the strokes of the
# background disappear and the object stays.

# %%
wrap = lambda text: textwrap.fill(text, 22)
lo, hi = edit.layers[0], edit.layers[-1]
if len(edit.layers) == 1:
    window = f"layer {lo}"
elif edit.layers == list(range(lo, hi + 1)):
    window = f"layers {lo}-{hi}"
else:
    window = "layers " + " ".join(map(str, edit.layers))
for title, start, n, texts in (("held-in", 0, n_in, block.originals), ("held-out", n_in, n_out, held_out.originals)):
    before, after = results.images("original", start, n), results.images("localized", start, n)
    (diff,), top = change_maps(before, after)
    fig = image_grid(before + after + diff, titles=[wrap(p) for p in texts] + [""] * (2 * n),
                     row_labels=["original model", f"edited ({window})", "change"], ncols=n, size=2.0,
                     suptitle=f"{title} prompts (seed {SEEDS[0]}); change: white = {top:.0f} of 255")

# %% [markdown]
# ## CLIP-score before and after
#
# Each image is scored against its original prompt T and against the target T'. For style and
# objects the edit should lower the score against T (the attribute is gone); for facts it should
# raise the score against T' (the image now shows the updated fact), which is how the paper reads
# its Fig. 8. The last column is the mean absolute pixel change (0-255) from the original model's
# image with the same seed.

# %%
# NBVAL_CHECK_OUTPUT
results.mean("prompt").drop(columns="all layers", level=1).round(1)

# %% [markdown]
# The table above reads `SEEDS` only, with the model's own CLIP-score. On an organism the same edit
# is also kept with the scorer's readout of every image on `SPREAD_SEEDS` (chapter 1, section 3,
# measures it with the same call and reads the same file): van gogh's edit at the style window and
# the president's at the facts window, each at the window that measurement picks itself, with the
# after-fraction's 90 % bootstrap interval over the images and each seed's own.

# %%
# NBVAL_CHECK_OUTPUT
from loco_lib import per_image
from loco_lib.organism.kept import measure
from loco_lib.organism.model import organism_kind
from loco_lib.organism.stability import headlines

which = {"style": "style", "facts": "facts"}.get(ATTRIBUTE)
if organism_kind(MODEL) and which:
    spread = measure("headlines", MODEL, headlines, MODEL, pipe, scorer, seeds=SPREAD_SEEDS, steps=STEPS, progress=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        display(per_image.edit_seeds({MODEL: spread}, which).round(2))
else:
    print(f"no seed-by-seed readouts of this edit: {MODEL} is not a model organism or {ATTRIBUTE!r} has no kept edit")

# %% [markdown]
# On `toy`, 31 of the 32 held-out van gogh images lose the style after the edit (after 0.03; one
# image of seed 2 keeps it), and every image of the other styles and of the style-free prompts
# keeps its style, shape and colour on every seed.

# %% [markdown]
# ## Editing every layer instead (App. F)
#
# The same rows and the same closed form, applied to the key and value matrices of all the
# cross-attention layers: this is how earlier closed-form editors (TIME, UCE) work. The paper finds
# that for objects and facts the edit of every layer sometimes gives wrong images where the edit of
# the LocoGen window does not (App. F, Fig. 54).

# %%
# NBVAL_CHECK_OUTPUT
print(f"localized edit: {len(edit.layers)} layers, {len(edit.weights)} matrices")
print(f"all-layer edit: {len(edit_all.layers)} layers, {len(edit_all.weights)} matrices")

# %%
before = results.images("original", n_in, n_out)
after_loc, after_all = results.images("localized", n_in, n_out), results.images("all layers", n_in, n_out)
(diff_loc, diff_all), top = change_maps(before, after_loc, after_all)
fig = image_grid(after_loc + after_all + diff_loc + diff_all,
                 titles=[wrap(p) for p in held_out.originals] + [""] * (3 * n_out),
                 row_labels=[f"edited ({window})", "edited (all layers)", f"change ({window})", "change (all layers)"],
                 ncols=n_out, size=2.0,
                 suptitle=f"held-out prompts: localized vs all-layer edit (seed {SEEDS[0]})\n"
                          f"both change rows on one scale: white = {top:.0f} of 255")

# %%
# NBVAL_CHECK_OUTPUT
results.mean("group").round(1)

# %% [markdown]
# ## Unrelated prompts (App. L, Table 1)
#
# An edit should not hurt prompts that never mention the concept. The paper scores 320 prompts
# "from MS-COCO with 80 objects and 4 locations" (App. L) with and without the edit; on a real model
# loco scores a seeded sample of `N_PROMPTS` of its reconstruction of them (the paper names neither
# the objects nor the wording: loco's choice, `data/prompts/robustness.yaml`), each against its own
# prompt. The organism's world has no MS-COCO
# classes: its prompt file lists its own controls (the same scenes in the other styles and
# without style).

# %%
# NBVAL_CHECK_OUTPUT
controls = load_controls(source)  # only the organism's prompt files have controls
generic = random.Random(0).sample([p for group in controls.values() for p in group] or load_robustness(), N_PROMPTS)
print("\n".join(generic))

# %%
unrelated = compare(pipe, generic, None, {"original": None, "localized": edit, "all layers": edit_all}, seeds=SEEDS,
                    scorer=scorer, steps=STEPS, guidance=GUIDANCE)
# NBVAL_CHECK_OUTPUT
unrelated.mean("prompt", total=True).droplevel("group").round(1)

# %%
before = unrelated.images("original")
(diff_loc, diff_all), top = change_maps(before, unrelated.images("localized"), unrelated.images("all layers"))
fig = image_grid(before + diff_loc + diff_all, titles=[wrap(p) for p in generic] + [""] * (2 * len(generic)),
                 row_labels=["original model", f"change ({window})", "change (all layers)"], ncols=len(generic),
                 size=2.0, suptitle=f"unrelated prompts (seed {SEEDS[0]})\n"
                                    f"both change rows on one scale: white = {top:.0f} of 255")

# %% [markdown]
# The paper's Table 1 (App. L, 320 prompts; the text names neither the model nor the CLIP
# checkpoint): the unedited model scores 30.04; the style-edited model 29.99 with LocoEdit (29.61
# with DiffQuickFix, which edits the text encoder); the object-edited model 29.40 (29.32 with
# DiffQuickFix).
#
# On the organism the readouts below say whether the prompts of this sample (printed with them)
# survive the edit (the edit moves the keys and values of four prompt rows; what else moves depends on how
# the unrelated prompts' text states lie relative to those rows, which loco measures here only
# through the images). On a real model loco has not
# measured this (no weights here); Table 1 is the paper's measurement.

# %%
# NBVAL_CHECK_OUTPUT
if hasattr(scorer, "accuracy"):
    display(pd.concat({f"held-out {concept}": results.readouts("held-out"), "unrelated": unrelated.readouts()},
                      names=["prompts"]).round(2))
else:
    print(f"{scorer.name} has no attribute readouts (only the model organism's scorer does)")

# %% [markdown]
# ## Save, load, revert
#
# An edit is a small safetensors file: the new matrices, the fingerprint of the weights they
# replace and the metadata (model, prompts, lambda). `Edit.load` reads it back; `apply` refuses
# weights that differ from the ones the edit was computed from (another model, or an edit already
# in place), and `revert` puts the saved originals back bit for bit. Below, a checksum of the
# whole UNet state before, during and after.

# %%
folder = os.path.dirname(EDIT_FILE)
if folder:
    os.makedirs(folder, exist_ok=True)
path = edit.save(EDIT_FILE)
print(f"{path}: {os.path.getsize(path) / 1e6:.2f} MB")

# %%
# NBVAL_CHECK_OUTPUT
clean_sum = weights_checksum(pipe.unet)
loaded = Edit.load(path)
print("loaded:", loaded.model, "layers", loaded.layers, "lambda", loaded.lam)
loaded.apply(pipe)
print("applied:", loaded.is_applied(pipe))
print("UNet changed:", weights_checksum(pipe.unet) != clean_sum)
print("same matrices as the edit in memory:",
      all(torch.equal(pipe.unet.get_parameter(n).detach().cpu(), edit.weights[n]) for n in loaded.weights))
try:
    loaded.apply(pipe)
except loco_lib.LocoError as err:
    print("applying twice: LocoError:", err)
reloaded_images = loco_lib.generate(pipe, [p for p in held_out.originals for _ in SEEDS], seeds=SEEDS * n_out,
                                    steps=STEPS, guidance=GUIDANCE)
print("same images as before saving:",
      all(np.array_equal(np.asarray(a), np.asarray(b))
          for a, b in zip(reloaded_images.images, results.generations["localized"].images[n_in * len(SEEDS):])))
loaded.revert(pipe)
print("reverted; UNet restored bit for bit:", weights_checksum(pipe.unet) == clean_sum)

# %% [markdown]
# ## What the paper reports
#
# * **SD-1.5, SD-2.1, OpenJourney, SD-XL** (Sec. 6.2, Fig. 6 and 8): editing the LocoGen window
#   removes artistic styles, changes trademarked objects and updates facts (App. C's targets: R2D2
#   to "robot", the President of the United States to Joe Biden). For style the CLIP-score drop is
#   largest on SD-1.5 and OpenJourney and smaller on SD-2.1 and SD-XL; facts update about equally
#   well on all four. Against DiffQuickFix, Concept Ablation and ESD on SD-1.5 (App. I, Fig. 57) it
#   is on par for style and slightly worse for objects, and better for facts than DiffQuickFix
#   (Concept Ablation and ESD do not edit facts there).
# * **All layers vs the window** (App. F): for objects and facts, editing all layers sometimes gives
#   wrong images where the localized edit does not.
# * **Unrelated prompts** (App. L): Table 1 above.
# * **DeepFloyd IF fails** (Sec. 6.2, App. M, Fig. 61): LocoGen still finds windows, but the
#   edited model gives non-semantic images. The paper's hypothesis: IF's text encoder is T5, whose
#   self-attention is bidirectional (Fig. 62), so tokens after the subject carry information about
#   the attribute, remapping the last subject token alone leaves it in place, and remapping every
#   token destroys too much. On the model organisms bidirectional attention alone does not break
#   the edit (the chapters "The model organism", section 5, and "DeepFloyd IF and T5"), neither
#   with 68 padding positions after the subject nor in an IF-topology organism whose attention
#   layers carry the style (both in "DeepFloyd IF and T5"). `loco_lib` computes the
#   IF edit through IF's text projection and each layer's GroupNorm so that the failure can be
#   reproduced on the real model.
#
# ## Running it on a real model
#
# In Colab (the Colab button at the top), set the parameters and run all cells:
#
# * `MODEL = "sd15"` (layers 8-9), `"sd14"` or `"openjourney"`;
# * `MODEL = "sd21"` (layers 8-10 for style) or `"sdxl"` (layers 45-47), the largest of them
#   (where the paper states two window sizes, loco takes Fig. 5's; the chapter "LocoGen" lists both);
# * `ATTRIBUTE = "objects"` with `CONCEPT = "snoopy"`, or `ATTRIBUTE = "facts"` with
#   `CONCEPT = "british monarch"`; `LAYERS = "all"` gives the App. F baseline as the main edit;
# * `STEPS = 50` is what the authors' public code generates with (`loco_edit.py` of
#   github.com/samyadeepbasu/LocoGen calls the pipeline with its default, 50 steps; its
#   `NUM_DIFFUSION_STEPS = 50` is not passed; the paper states none); `SEEDS` and `N_PROMPTS` are
#   loco's choice; `EDIT_FILE` on Google Drive keeps the edit for later.
#
# The same from a terminal:
#
# ```bash
# loco edit sd15 --attribute style --concept "van gogh" --layers 8,9 --out vangogh.safetensors
# loco generate sd15 --prompt "a house in the style of van gogh" --edit vangogh.safetensors --out edited.png
# ```
