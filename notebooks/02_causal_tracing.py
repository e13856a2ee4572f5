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
# # Causal tracing: where does the model need the subject?
#
# The paper opens (Sec. 4) by revisiting the causal tracing of Basu et al. 2023,
# ["Localizing and Editing Knowledge in Text-to-Image Generative Models"](https://arxiv.org/abs/2310.13730),
# which follows ROME's ([Meng et al. 2022](https://github.com/kmeng01/rome),
# `experiments/causal_trace.py`). Three runs per prompt and seed:
#
# 1. **clean**: the prompt as it is;
# 2. **corrupted**: Gaussian noise added to the token embeddings of the subject ("van gogh" in "a red
#    circle in the style of van gogh"), 3 times a standard deviation of the token embeddings (ROME's
#    factor; loco takes the standard deviation over the whole embedding table, ROME over the
#    embeddings of subject tokens);
# 3. **restored**: the corrupted run with one internal state put back to its clean value.
#
# A state that brings the clean image back carries what the model needs to know about the subject.
# The *effect* is the CLIP-score of the restored image against the prompt, read as the fraction of
# the clean-corrupted gap it restores (0 = as corrupted, 1 = as clean).
#
# The paper's findings (Sec. 4, Figs. 2, 3, 11-13): in the UNet the knowledge is *distributed*
# (densely for SD-1.5 and SD-2.1, sparsely for SD-XL, where "only 5% of the total layers are
# causal"; no strong causal state for DeepFloyd IF); in the text encoder one *unique* causal state
# exists only when a CLIP text encoder is used alone (SD-1.5, SD-2.1), not for SD-XL's two encoders
# nor DeepFloyd's T5 (Basu et al. 2023 locate it at the first self-attention layer, at the last
# subject token). That unique state
# is what Basu et al.'s edit, DiffQuickFix, rewrites (end of this page); the paper's LocoGen (next
# chapter) measures direct effects instead.
#
# This page runs on the model organisms `toy` (CLIP-style causal text encoder) and `toy-t5`
# (bidirectional T5 encoder), where every number below is measured. In Colab set `MODEL = "sd15"`
# (and `OTHER_MODEL = "sdxl"` or `"deepfloyd-if"`) for the real models.
#
# loco's choices, where the papers leave a setting open: the corruption is drawn from a CPU
# generator seeded with the image seed (plus a fixed offset), so a trace is reproducible; the
# restore acts on the conditional branch of classifier-free guidance only (the unconditional branch
# never reads the prompt); a UNet state is restored at every denoising step unless a band of steps
# is asked for; the restored fraction is a ratio of means over the prompts and seeds whose
# corruption corrupts (read image by image below, `loco_lib.per_image`); the UNet's states
# are loco's granularity unless `UNET_STATES = "paper"` (the paper profile) asks for the paper's
# (below).

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
OTHER_MODEL = "toy-t5"  # a second model for the text-encoder comparison (None: skip)
ATTRIBUTE = "style"  # style, objects or facts: its bundled prompts and their subjects
N_PROMPTS = 4  # prompts from the model's prompt file
SEEDS = [0, 1, 2, 3]
STEPS = None  # None: the default of the model (50 for SD, 15 for toy)
GUIDANCE = None  # None: the default of the model
NOISE = 3.0  # standard deviations of the token-embedding table (ROME's 3)
BANDS = 3  # bands of denoising steps for the step-resolved UNet trace
UNET_STATES = "loco"  # "loco": ResNets, transformer blocks and their cross-attention; "paper": ResNets and each transformer block's self-attention, cross-attention and feed-forward
ENCODERS = None  # text encoders of MODEL to trace: None = every one (SD-XL: 1, 2, and both together)
PANEL = None  # App. A's single-prompt panel (Figs. 11-13), [prompt, subject]; None: the first prompt of the model's objects file
SCORER = None  # None: the model's own (CLIP ViT-L-14 for real models, toy-scorer for the organisms)
CACHE_DIR = None  # None: _build/trace-cache in the repository; in Colab a Google Drive folder survives a disconnect

# %%
import time

import pandas as pd

import loco_lib
from loco_lib import diffquickfix, per_image, trace
from loco_lib.architectures import meta_unet
from loco_lib.clip_score import get_scorer
from loco_lib.evaluate import compare
from loco_lib.organism.kept import comparison_tables, measure
from loco_lib.plots import image_grid
from loco_lib.prompts import default_prompts, edit_concepts, load_controls, load_edit

pipe = loco_lib.load(MODEL)
scorer = get_scorer(SCORER, MODEL)
source = default_prompts(ATTRIBUTE, MODEL)
prompts = loco_lib.load_pairs(source, limit=N_PROMPTS)
cache = CACHE_DIR or trace.default_cache_dir()
settings = dict(seeds=SEEDS, steps=STEPS, guidance=GUIDANCE, factor=NOISE, scorer=scorer, cache_dir=cache)
print(f"{MODEL}: scorer {scorer.name}")

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({"prompt": prompts.originals, "subject (corrupted)": prompts.subjects})

# %% [markdown]
# ## The UNet
#
# `loco_lib.trace.unet_states` lists the UNet's states in the order its forward runs them, at one
# of two granularities (`UNET_STATES`). loco's: each ResNet block, each transformer block and,
# inside it, its cross-attention. The paper's: each ResNet block and, inside every transformer
# block, its self-attention, cross-attention and feed-forward. The paper does not define its states,
# so calling the second definition "the paper's" is loco's choice: it is the finest reading of the
# transformer blocks, 70 states for SD-2.1 (22 ResNets + 16 x 3) and 227 for SD-XL (17 + 70 x 3), as
# the full-size configs below give (on DeepFloyd IF the attention modules read the text themselves
# through added K/V and are one state each), and the authors' public code
# ([DiffQuickFixRelease](https://github.com/adobe-research/DiffQuickFixRelease),
# [LocoGen](https://github.com/samyadeepbasu/LocoGen)) holds no UNet tracing that would say how it
# was counted. SD-1.5, like the organism, has SD-2.1's topology.

# %%
# NBVAL_CHECK_OUTPUT
display(trace.granularity_counts({MODEL: pipe.unet, **{m: meta_unet(m) for m in ("sd15", "sd21", "sdxl", "deepfloyd-if")}}))
states = trace.unet_states(pipe.unet, trace.UNET_GRANULARITY[UNET_STATES])
print(f"{MODEL}, {UNET_STATES} states: {len(states)}:", pd.Series([s.kind for s in states]).value_counts().to_dict())

# %% [markdown]
# One trace restores each state alone at every step. The clean run rides along as the first
# sample of every batch and each restored run copies its state from there
# (`loco_lib.hooks.FromSample`), so nothing is stored between runs and the restored runs of a prompt
# and seed share UNet batches of up to `batch_size` runs (default 32 on CPU, 16 on a GPU, the clean
# run included).
#
# On an organism the finished traces of this page, their scores without their images, are kept with
# the repository (`loco_lib.organism.kept`: `data/organism/cache/chapters/`, keyed by the weights,
# the code and the settings), as are the number of states needed and the DiffQuickFix/LocoEdit
# tables below, so the book reads them while none of those has changed. The few images a figure
# shows are generated again. On a real model every trace runs.

# %%
unet_trace = measure("unet-trace", MODEL, trace.trace, pipe, prompts, where="unet",
                     kinds=trace.UNET_GRANULARITY[UNET_STATES], **settings)
print(f"{len(unet_trace.scores)} runs: {len(unet_trace.prompts)} prompts x {len(unet_trace.seeds)} seeds x "
      f"({len(unet_trace.sets)} restored states + clean + corrupted)")
fig = trace.plot_trace(unet_trace)

# %%
# NBVAL_CHECK_OUTPUT
pd.Series(unet_trace.summary())

# %% [markdown]
# ### Image by image
#
# An image whose corruption lowers its CLIP-score by less than `trace.GAP_FLOOR` of its clean score
# (5%, loco's choice) was not corrupted: it has no gap to restore and carries no evidence about which
# state restores the subject. The trace itself leaves such images out of every mean and fraction it
# reports and counts them (`left out` in the summary above). The restored fraction is still a ratio
# of means over the images that corrupt, which can hide images that disagree. `loco_lib.per_image`
# reads the same scores image by image: each image's own clean-corrupted gap, flagged as the trace
# flags it; each strong state's fraction of each image's gap; and
# a 90% bootstrap interval of the ratio of means over the images that corrupt. loco calls a
# conclusion about a state stable when that interval lies on one side of the line it is read
# against (half of the gap), and reports it as unresolved otherwise; that rule set this page's 4
# prompts x 4 seeds on the organisms (with 2 x 2, `toy`'s UNet trace rested on 2 images).

# %%
# NBVAL_CHECK_OUTPUT
gaps = per_image.trace_gaps(unet_trace)
print(f"{int(gaps['corrupts'].sum())} of {len(gaps)} images corrupt (gap >= {unet_trace.floor:.0%} of the clean score)")
gaps.drop(columns="prompt").round(1)

# %%
# NBVAL_CHECK_OUTPUT
by_image = per_image.trace_by_image(unet_trace)
fig = per_image.plot_by_image({f"{MODEL}, UNet": by_image})
by_image[["restored", "low", "high", "images >= 50%"]].astype({"restored": float, "low": float, "high": float}).round(2)

# %% [markdown]
# On `toy` the corruption corrupts 5 of the 16 images: every prompt on seed 0 and one on seed 1
# (the gaps above). On the other 11 the noised subject changes the CLIP-score by less than 5% of the
# clean one (five of them score slightly higher corrupted), so those images carry no evidence about which state restores the subject: the summary
# above leaves them out (`left out`), and `toy`'s UNet trace rests on 5 images. In each of the 5,
# each of the five strongest states alone restores more than half of the gap, and every one of
# their intervals lies above the half line (the table): the distributed picture holds image by
# image.

# %% [markdown]
# How to read it. `images` counts prompts x seeds and `left out` those whose corruption did not
# corrupt; every other number of the summary is over the rest: `clean` and `corrupted` are their
# mean scores, and `restore >= 50%` counts the states that *alone* bring back at least half of the
# gap between the corrupted and the clean score. On `toy` several states
# can each restore most of the clean image, which is the paper's picture of distributed knowledge
# (Fig. 11's caption: "these layers can independently restore a corrupted model"); the table and the
# bars show where they sit: in the first down block and the last up block, the two blocks that work
# at full resolution, and none in the middle of the UNet. The paper reports dense causal states for
# SD-1.5 and SD-2.1 and about 5% of layers for SD-XL (Sec. 4); its figures do not say at which
# threshold a layer counts as causal, so loco reports the counts at two.
#
# The strongest states, with the images of the first prompt and seed:

# %%
# NBVAL_CHECK_OUTPUT
unet_trace.table().sort_values("restored", ascending=False).head(8)[["label", "name", "score", "restored"]].round(
    {"score": 1, "restored": 2})

# %%
top = unet_trace.ranking()[:4]
shown_args = dict(where="unet", sets=[unet_trace.sets[k] for k in top], **{**settings, "seeds": SEEDS[:1]})
shown = trace.trace(pipe, prompts.originals[:1], prompts.subjects[:1], **shown_args)  # the figure's runs
runs = [trace.Run(0, SEEDS[0], None), trace.Run(0, SEEDS[0], ())] + [trace.Run(0, SEEDS[0], st) for st in shown.sets]
fig = image_grid([shown.images[r] for r in runs],
                 titles=["clean", "corrupted"] + [f"restore {shown.states[st[0]].label}" for st in shown.sets],
                 size=1.8, suptitle=prompts.originals[0])

# %% [markdown]
# ### How many states does it take?
#
# Restoring the k strongest states together, for growing k: the smallest k that brings back half
# and 90% of the gap. Restoring a late state overrides everything before it that reaches the output
# only through it, so the curve need not rise with k.

# %%
# NBVAL_CHECK_OUTPUT
needed = measure("states-needed", MODEL, trace.states_needed, pipe, unet_trace, cache_dir=cache, scorer=scorer)
print("states needed:", {f"{f:.0%}": k for f, k in needed.needed.items()}, f"of {needed.n_states}")
ax = needed.curve.plot(x="k", y="restored", marker="o", legend=False, figsize=(5, 2.6), logx=True)
ax.axhline(0.5, ls=":", c="0.5"); ax.axhline(0.9, ls=":", c="0.5")
ax.set_ylabel("fraction of the gap restored"); ax.set_xlabel("k strongest states restored together");

# %% [markdown]
# ### "Only 5% of the total layers are causal", both ways
#
# Sec. 4 finds SD-XL's UNet sparse: "only 5% of the total layers are causal". What that share is
# depends on what counts as a layer and on the fraction of the gap at which a state counts as
# causal; the paper states neither. The same prompts and seeds traced at the other granularity
# (its ResNet and cross-attention runs are the cached ones of the trace above), and the share of
# states that alone restore at least half and 90% of the gap:

# %%
other = "paper" if UNET_STATES == "loco" else "loco"
other_trace = measure(f"unet-trace-{other}", MODEL, trace.trace, pipe, prompts, where="unet",
                      kinds=trace.UNET_GRANULARITY[other], **settings)

# %%
# NBVAL_CHECK_OUTPUT
trace.causal_shares({UNET_STATES: unet_trace, other: other_trace}).round(3)

# %% [markdown]
# On `toy` (over the 5 images that corrupt), 9 of loco's 54 states (17%) and 9 of the paper's 70
# (13%) alone restore at least half of the gap on the style prompts, and 3 of loco's states (6%)
# and 1 of the paper's (1%) restore at least 90%. The share moves with the definition of a state and more with the threshold. Neither
# share tests the paper's 5%, which is SD-XL's: the organism has SD-1.5's topology, for which the
# paper reports dense causal states. On SD-XL the same table is one run away
# (`loco reproduce --profile paper --model sdxl --chapters 02`, or `MODEL = "sdxl"` in Colab).

# %% [markdown]
# ### App. A's panel: one prompt, every state
#
# Figs. 11-13 (App. A) trace one prompt of the objects attribute, "A cat in a beach" (Fig. 11), in
# the UNets of SD-2.1, SD-XL and DeepFloyd. The same panel: the prompt `PANEL` (the paper profile
# gives the paper's prompt, with "cat" as the subject, which the paper does not state: loco's
# choice; by default the first prompt of the model's objects file), the paper's granularity, the
# first seed, and the images of the four strongest states.

# %%
objects = loco_lib.load_pairs(default_prompts("objects", MODEL), limit=1)
panel_prompt, panel_subject = PANEL or (objects.originals[0], objects.subjects[0])
panel_args = dict(where="unet", kinds=trace.PAPER_UNET_KINDS, **{**settings, "seeds": SEEDS[:1]})
panel = measure("panel-trace", MODEL, trace.trace, pipe, [panel_prompt], [panel_subject], **panel_args)
fig = trace.plot_trace(panel, title=f"{MODEL}: '{panel_prompt}', subject '{panel_subject}', seed {SEEDS[0]}")

# %%
# NBVAL_CHECK_OUTPUT
display(pd.Series(panel.summary()))
panel.table().assign(**{"restore >= 50%": lambda t: t.restored >= 0.5, "restore >= 90%": lambda t: t.restored >= 0.9}).groupby(
    "kind")[["restore >= 50%", "restore >= 90%"]].sum().assign(states=panel.table().groupby("kind").size())

# %% [markdown]
# On `toy` the panel's prompt is an object, "a red circle" with the subject "circle", and its
# picture is dense, as the paper's Fig. 11 is for SD-2.1 (Fig. 12 calls SD-XL's "slightly sparse"): 23 of the 70 states alone
# restore at least half of the gap and 19 at least 90%, and every kind of state is among them (the
# table above; the bars show where they sit). The style prompts of the trace above give 9 such
# states of 70 (the `paper` row of the shares table), over the 5 of their 16 images whose
# corruption corrupts, against one image here: the count moves with the prompt and the attribute, and one image does not separate the two.

# %%
top = panel.ranking()[:4]  # generated again (or read from the trace cache): the kept trace holds no images
panel_images = trace.trace(pipe, [panel_prompt], [panel_subject], sets=[panel.sets[k] for k in top], **panel_args)
runs = [trace.Run(0, SEEDS[0], None), trace.Run(0, SEEDS[0], ())] + [trace.Run(0, SEEDS[0], st) for st in panel_images.sets]
fig = image_grid([panel_images.images[r] for r in runs],
                 titles=["clean", "corrupted"] + [f"restore {panel_images.states[st[0]].label}" for st in panel_images.sets],
                 size=1.8, suptitle=panel_prompt)

# %% [markdown]
# ### By denoising step
#
# The ResNet blocks restored in one band of steps only (first prompt and seed; step 0 is the
# noisiest).

# %%
banded = measure("banded-trace", MODEL, trace.trace, pipe, prompts.originals[:1], prompts.subjects[:1], where="unet",
                 kinds="resnet", bands=BANDS, **{**settings, "seeds": SEEDS[:1]})
fig = trace.plot_trace(banded)

# %%
# NBVAL_CHECK_OUTPUT
banded.table().groupby("band", sort=False)["restored"].agg(["max", "mean"]).round(2)

# %% [markdown]
# On the organism (the first prompt and seed, ResNet blocks only) no state restored in the first two
# bands of steps does much (the table's `max`); what the restored state carries matters in the last
# band. This is loco's measurement: the paper does not say at
# which steps its restores act (loco's full traces above restore at every step, one of the choices
# listed at the top of the page).
#
# ### Batched against one run per state
#
# ROME's loop runs one forward pass per restored state; loco's batch runs them side by side and
# evaluates identical UNet rows once. The same work both ways, on the cross-attention states of
# the first prompt and seed (fresh runs, no cache):

# %%
speed = {}
for batched in (True, False):
    t0 = time.perf_counter()
    r = trace.trace(pipe, prompts.originals[:1], prompts.subjects[:1], where="unet", kinds="cross-attention",
                    batched=batched, **{**settings, "seeds": SEEDS[:1], "cache_dir": None})
    speed["batched" if batched else "one run per state"] = {"UNet rows": r.counter["rows"], "UNet calls": r.counter["calls"],
                                                           "seconds": round(time.perf_counter() - t0, 1)}
speed = pd.DataFrame(speed).T
print(f"the loop takes {speed['seconds'].iloc[1] / speed['seconds'].iloc[0]:.1f}x the time of the batch")
speed

# %%
# NBVAL_CHECK_OUTPUT
print(f"the loop evaluates {speed['UNet rows'].iloc[1] / speed['UNet rows'].iloc[0]:.2f}x the UNet rows "
      f"in {speed['UNet calls'].iloc[1] / speed['UNet calls'].iloc[0]:.2f}x the UNet calls")
speed[["UNet rows", "UNet calls"]]

# %% [markdown]
# The loop evaluates the clean run again beside every restored one and pays the per-call overhead
# once per state; the batch evaluates the clean run once per batch and shares the identical
# unconditional rows of the first step. `benchmarks/trace_batched.py` measures every state of the
# UNet and of the text encoder both ways.
#
# ## The text encoder
#
# `loco_lib.trace.encoder_states` lists each encoder layer's self-attention output and MLP
# output. A restore puts them back at the subject's last token (`tokens="last"`, Basu et al.'s
# reading) or at all its tokens. The same trace on `OTHER_MODEL` (here the T5 organism) tests the
# paper's claim that the unique state needs a CLIP encoder alone.
#
# SD-XL reads two encoders, and the corruption reaches the subject in both; a state restored in one
# encoder leaves what the UNet reads from the other corrupted. Every encoder of the model is traced
# (`ENCODERS`): for SD-XL each alone and `"both"`, where a restore puts back the same state (layer
# and kind, layers counted from the input) in the two encoders together, and past the shallower
# encoder's depth in the deeper one alone. `OTHER_MODEL` is traced in every encoder it has.

# %%
models = [MODEL] + ([OTHER_MODEL] if OTHER_MODEL else [])
pipes = {name: pipe if name == MODEL else loco_lib.load(name) for name in models}
scorers = {name: scorer if name == MODEL else get_scorer(SCORER, name) for name in models}
encoders = {name: list(ENCODERS) if ENCODERS and name == MODEL else trace.model_encoders(pipes[name]) for name in models}
text = {}
for name in models:
    pairs = loco_lib.load_pairs(default_prompts(ATTRIBUTE, name), limit=N_PROMPTS)
    for encoder in encoders[name]:
        for tokens in ("last", "subject"):
            kept_name = f"text-trace-{tokens}" + ("" if encoder == 1 else f"-encoder-{encoder}")
            text[name, encoder, tokens] = measure(kept_name, name, trace.trace, pipes[name], pairs, where="text",
                                                  encoder=encoder, tokens=tokens, **{**settings, "scorer": scorers[name]})
print({name: encoders[name] for name in models})

# %%
import matplotlib.pyplot as plt

rows = [(name, encoder) for name in models for encoder in encoders[name]]
fig, axes = plt.subplots(len(rows), 2, figsize=(9, 2.2 * len(rows)), squeeze=False)
for i, (name, encoder) in enumerate(rows):
    for j, tokens in enumerate(("last", "subject")):
        which = "" if len(encoders[name]) == 1 else f", encoder {encoder}"
        trace.plot_trace(text[name, encoder, tokens], ax=axes[i, j],
                         title=f"{name}{which}, {tokens} subject token{'s' if j else ''}")
fig.tight_layout()

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({f"{name}, {tokens}" if len(encoders[name]) == 1 else f"{name}, encoder {encoder}, {tokens}": r.summary()
              for (name, encoder, tokens), r in text.items()}).T

# %% [markdown]
# The same traces image by image (the three strongest states of each; an image whose corruption
# does not corrupt is left out and counted):

# %%
# NBVAL_CHECK_OUTPUT
text_label = {key: f"{key[0]}, {key[2]}" if len(encoders[key[0]]) == 1 else f"{key[0]}, encoder {key[1]}, {key[2]}" for key in text}
text_gaps = pd.DataFrame({text_label[key]: {"images": len(g), "corrupt": int(g["corrupts"].sum()), "smallest gap": g["gap"].min()}
                          for key, g in ((key, per_image.trace_gaps(r)) for key, r in text.items())}).T
display(text_gaps.round(1))
text_by_image = {text_label[key]: per_image.trace_by_image(r, r.ranking()[:3]) for key, r in text.items()}
fig = per_image.plot_by_image(text_by_image)
display(pd.DataFrame({f"{label}: {t.index[0].split('.', 1)[1]}": t.iloc[0][[c for c in t.columns if c.startswith("prompt ")]]
                      for label, t in text_by_image.items()}).astype(float).round(2))
pd.concat({label: t[["restored", "low", "high", "images >= 50%"]] for label, t in text_by_image.items()},
          names=["trace"]).astype({"restored": float, "low": float, "high": float}).round(2)

# %% [markdown]
# What the organisms show, image by image (the tables above). In `toy`, whose encoder is causal
# like CLIP, the corruption corrupts 5 of the 16 images, as in the UNet trace, and in each of them
# the first layer's self-attention output alone restores more than half of the gap, at the last
# subject token and at all of them; its interval lies above the half line: Basu et al.'s unique
# state in SD's CLIP, on the organism, and stable. The first layer's MLP output restores more than
# half at all subject tokens (interval above the line), but at the last token only in 3 of the 5
# images, with an interval across the line: unresolved. The second layer's MLP output restores a
# few percent on average, though on one of the 5 images more than half (`images >= 50%`).
#
# In `toy-t5`, whose encoder is bidirectional like DeepFloyd's T5, every image corrupts, no
# self-attention state restores more than a few percent, and the strongest state, the first block's
# MLP output, restores less than half of the gap on average, with an interval across the half
# line. The average hides two kinds of image: that state restores most of the gap in every prompt on
# seeds 1 and 3 and almost none on seeds 0 and 2 (the per-image table), so whether the T5 organism
# has a causal state depends on the seed, not on the prompt. (Chapter 6's 2x2 reads these same
# kept traces.) So the paper's claim holds on the organisms in this form:
# a self-attention state of the first layer localizes the subject in the causal encoder and none
# does in the bidirectional one; that the T5 organism has no causal state at all does not hold for
# half of its images. The organisms' subject "van gogh" is two tokens, so "last" and "subject"
# differ.

# %% [markdown]
# ## DiffQuickFix against LocoEdit
#
# DiffQuickFix (Basu et al. 2023; the paper's App. I baseline) edits the output projection of the
# text encoder's causal self-attention layer in closed form: at the last subject token, the original
# prompts' state there becomes the targets'. LocoEdit (Sec. 6) edits the K/V projections of the
# cross-attention window LocoGen finds. Both below are built from the same prompt rows (the
# attribute file's edit block) with the same lambda; DiffQuickFix at the self-attention layer the
# trace ranks strongest, LocoEdit at the window recorded for the model. Then both edited models and
# the original generate the same prompts with the first seed: the edited concept's held-out prompts,
# and the file's controls (what the edit must leave alone). On both models of the text-encoder
# comparison.

# %%
concept = edit_concepts(source)[0]
side_by_side, labels, edits_of, prompts_of = {}, {}, {}, {}
for name in models:
    src = default_prompts(ATTRIBUTE, name)
    block = load_edit(src, concept)
    layer = text[name, 1, "last"].strongest("self-attention").layer
    window = loco_lib.paper.default_window(name, ATTRIBUTE)
    edits = {"original": None,
             "LocoEdit": loco_lib.compute_edit(pipes[name], window, block.originals, block.targets, block.subjects,
                                               block.target_subjects),
             "DiffQuickFix": diffquickfix.compute_edit(pipes[name], block.originals, block.targets, block.subjects,
                                                       block.target_subjects, layer=layer)}
    labels[name], edits_of[name] = f"LocoEdit at UNet layers {loco_lib.format_layers(window)}, DiffQuickFix at text layer {layer}", edits
    groups = {f"{concept} (edited)": list(loco_lib.load_pairs(src, concept=concept).originals), **load_controls(src)}
    flat = prompts_of[name] = [p for g in groups.values() for p in g]
    side_by_side[name] = measure("dqf-locoedit", name, comparison_tables, pipes[name], flat, None, edits, seeds=SEEDS[:1],
                                 groups=[g for g, ps in groups.items() for _ in ps], scorer=scorers[name], steps=STEPS,
                                 guidance=GUIDANCE)
    for label, e in edits.items():
        if e is not None:
            print(f"{name}, {label}: solved in {e.edit_seconds * 1000:.1f} ms")

# %%
# NBVAL_CHECK_OUTPUT
for name in models:
    print(f"{name}: {labels[name]}; " + ", ".join(f"{label} from {e.meta['n_rows']} rows"
                                                 for label, e in edits_of[name].items() if e is not None))
print("prompts per group:", {g: len(ps) for g, ps in groups.items()})

# %%
# NBVAL_CHECK_OUTPUT
pd.concat({name: c["mean"] for name, c in side_by_side.items()}, names=["model"]).round(1)

# %% [markdown]
# With the organism's scorer, the readouts: the fraction of images that show what their prompt asks
# for. On the edited concept's prompts a successful edit lowers the style readout; on the controls
# it should stay where the original model is.

# %%
# NBVAL_CHECK_OUTPUT
if hasattr(scorer, "accuracy"):
    display(pd.concat({name: c["readouts"] for name, c in side_by_side.items()}, names=["model"]).round(2))
else:
    print(f"{scorer.name} has no attribute readouts (only the model organism's scorer does)")

# %% [markdown]
# On `toy` both edits remove the edited style from its held-out prompts and leave the other styles
# and the style-free prompts as the original model draws them (the readouts above, one seed); the
# paper's App. I (Fig. 57) finds LocoEdit comparable to DiffQuickFix and the other baselines for
# style, and better for facts.
# DiffQuickFix also changes some shapes of the edited prompts on `toy` (its shape readout).
#
# On `toy-t5` the two part ways: LocoEdit removes the style, DiffQuickFix at the T5 encoder's
# strongest self-attention layer leaves it. That is what the traces above predict: DiffQuickFix
# rewrites a self-attention state at the subject's last token, and in the T5 organism no
# self-attention state carries the subject (its strongest state is an MLP output, which restores
# most of the gap on half of the images). Sec. 4 finds no unique causal state in DeepFloyd's T5 (Fig. 3); LocoEdit's
# window comes from LocoGen and does not need one. Sec. 6.2 and App. M report that LocoEdit too
# fails on the real IF and attribute it to T5; on `toy-t5` it does not (chapter "DeepFloyd IF and
# T5" asks why).

# %%
n = min(4, len(prompts_of[MODEL]))  # the first prompts of the edited concept, generated again for the figure
first = compare(pipe, prompts_of[MODEL][:n], None, edits_of[MODEL], seeds=SEEDS[:1], scorer=scorer, steps=STEPS,
                guidance=GUIDANCE)
fig = image_grid([im for label in first.generations for im in first.images(label, 0, n)],
                 titles=[p.replace(" in the style of ", "\nin the style of ") for p in first.prompts[:n]]
                        + [""] * (n * (len(first.generations) - 1)),
                 row_labels=list(first.generations), ncols=n, size=1.8, suptitle=f"{MODEL}, seed {SEEDS[0]}: {labels[MODEL]}")

# %% [markdown]
# ## Resuming
#
# Every image and score of a trace is cached in `CACHE_DIR`; the same trace again generates nothing.
# Here, the trace of the strongest states' figure above:

# %%
# NBVAL_CHECK_OUTPUT
again = trace.trace(pipe, prompts.originals[:1], prompts.subjects[:1], **shown_args)
print(f"images generated on the second run: {len(again.computed)}; same scores: {again.scores == shown.scores}")

# %% [markdown]
# From the command line, traces like these (here 2 prompts x 2 seeds, and an SD-XL text trace; JSON with the clean and corrupted scores and one entry per
# state):
#
# ```
# loco trace toy --where unet --attribute style --limit 2 --seeds 0,1 --cache trace-cache --json
# loco trace sdxl --where text --encoder 2 --prompt "a house in the style of van gogh" --subject "van gogh" --json
# loco edit toy --method diffquickfix --attribute style --out dqf.safetensors
# loco evaluate toy --attribute style --edit dqf.safetensors --controls
# ```
