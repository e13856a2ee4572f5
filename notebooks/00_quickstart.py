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
# # Quickstart: cross-attention layers and altered inputs
#
# A Stable Diffusion 1.x or 2.x UNet reads the prompt's token states only through its
# **cross-attention layers**. SD-XL and DeepFloyd IF also pool the text into the time embedding
# that every ResNet block receives (their UNet configs in `loco_lib/data/architectures.json` set
# `addition_embed_type` to `text_time` and `text`; chapter 6 shows what that second path carries
# on the organisms). LocoGen (Basu, Rezaei et al., ICML 2024, Sec. 5) asks which of them control a visual attribute
# such as an artist's style: feed a *different* prompt to a few layers and see whether the
# attribute disappears from the image.
#
# This page does the two basic steps on one model:
#
# 1. list the model's cross-attention layers in the order they run, numbered from 0 (App. D lists
#    the same order but numbers each layer's key and value projections separately, layer i's as
#    2i and 2i + 1; the index here is the layer's, as in Sec. 5.2's "layers 8-9");
# 2. generate the same seed three times: with the original prompt, with the original prompt except
#    that a small window of layers reads a target prompt (*altered input*, Sec. 5.1.1), and with
#    the target prompt everywhere.
#
# By default it runs on `toy`, loco's **model organism** (next chapter): a small model trained
# on a synthetic world of coloured shapes with artist-named textures, with the same 16
# cross-attention layers as Stable Diffusion 1.5, so the effect is visible on a CPU (a cell below
# prints the time per image on the machine that ran it). To
# see it on the real model, run this notebook in Colab on a GPU with `MODEL = "sd15"`;
# `MODEL = "tiny-sd15"` runs the offline random twin, which shows the mechanics only.

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
PROMPT = "a red circle in the style of van gogh"  # on a real model e.g. "a house in the style of van gogh"
TARGET_PROMPT = "a red circle in the style of a painting"
LAYERS = None  # None: the style window of this model (the paper's, or the one measured on toy) or a list like [8 9]
STEPS = None  # None: the default of the model (50 for SD, 15 for toy)
GUIDANCE = None  # None: the default of the model (7.5 for SD, 3 for toy)
SEED = 0

# %%
import loco_lib
from loco_lib.paper import default_window
from loco_lib.plots import image_grid, plot_layer_map

pipe = loco_lib.load(MODEL)
layers_to_alter = LAYERS if LAYERS is not None else default_window(MODEL, "style")
print(f"model {MODEL}: {type(pipe).__name__}, UNet {sum(p.numel() for p in pipe.unet.parameters()):,} parameters")

# %% [markdown]
# ## The cross-attention layers, in execution order
#
# Down blocks first, then the middle block, then the up blocks. (Listing modules in registration
# order, `unet.named_modules()`, would put the middle block last: diffusers registers it after the
# up blocks.) `resolution` is the side of
# the feature map the layer works on at the model's default image size.

# %%
# NBVAL_CHECK_OUTPUT
layers = loco_lib.cross_attention_layers(pipe.unet)
print(f"{len(layers)} cross-attention layers")
print(loco_lib.layer_table(layers)[["name", "block", "kv_dim", "resolution"]].to_string())

# %%
fig = plot_layer_map(layers, title=f"{MODEL}: {len(layers)} cross-attention layers")

# %% [markdown]
# ## Altered inputs
#
# All layers read the original prompt except the window below, which reads the target prompt.
# Classifier-free guidance is unchanged: only the conditional branch is altered.

# %%
# NBVAL_CHECK_OUTPUT
print("altered layers:", layers_to_alter)

# %%
common = dict(seeds=SEED, steps=STEPS, guidance=GUIDANCE)
original = loco_lib.generate(pipe, PROMPT, **common)
altered = loco_lib.generate(pipe, PROMPT, alt_prompts=TARGET_PROMPT, layers=layers_to_alter, **common)
target = loco_lib.generate(pipe, TARGET_PROMPT, **common)
print(f"{original.seconds_per_image:.2f} s per image ({original.settings['steps']} steps)")

# %%
fig = image_grid(
    [original[0], altered[0], target[0]],
    titles=[f"original\n{PROMPT}", f"layers {layers_to_alter} altered", f"target\n{TARGET_PROMPT}"],
    size=3.0,
)

# %% [markdown]
# How far did the altered window move the image? The mean absolute pixel difference (0-255 scale)
# to the original and to the target image, and between the two, for this prompt and seed.

# %%
# NBVAL_CHECK_OUTPUT
from loco_lib.plots import pixel_change

print(f"altered vs original: {pixel_change(original, altered)[0]:.1f}")
print(f"altered vs target:   {pixel_change(target, altered)[0]:.1f}")
print(f"original vs target:  {pixel_change(target, original)[0]:.1f}")

# %% [markdown]
# On the organism an attribute scorer (a small CLIP trained on its world) reads each image off:
# which shape, colour and style it shows, here for this one prompt and seed.

# %%
# NBVAL_CHECK_OUTPUT
from loco_lib.clip_score import get_scorer

scorer = get_scorer(None, MODEL)
if hasattr(scorer, "readout"):
    for label, image in (("original", original[0]), ("altered", altered[0]), ("target", target[0])):
        print(f"{label:9s}", scorer.readout([image])[0])

# %% [markdown]
# ## What the paper finds on the real models
#
# With `MODEL = "sd15"`, the paper localizes style to layers 8 and 9 (of 16) and objects and facts
# to a window starting at layer 6 (Sec. 5.2, Fig. 5); App. B's Figs. 14-16 show the images of the
# intervention on SD-1.5, layer by layer. SD-2.1 localizes style from layer 8, SD-XL from layer 45 of its 70
# layers, DeepFloyd IF at prompt-dependent layers (Sec. 5.2; the LocoGen chapter lists each window
# with where the paper states it). The LocoGen chapter searches for these windows with CLIP-score
# instead of taking them from the paper.
