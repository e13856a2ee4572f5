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
# # DeepFloyd IF and T5: a controlled 2x2 experiment
#
# The paper localizes and edits knowledge in four Stable Diffusion models and one more, DeepFloyd
# IF, where the story changes (Sec. 5.2, Sec. 6.2, App. M):
#
# * LocoGen still finds controlling layers on IF, but **prompt-dependently**: for facts,
#   "The President of the United States" is controlled from layer 12 and "The British Monarch"
#   from layer 6, with m = 3 (Sec. 5.2, Fig. 7);
# * **LocoEdit fails** on IF: the edited model gives non-semantic images (App. M, Fig. 61);
# * the paper's explanation: IF's text encoder is **T5**, whose self-attention is bidirectional, so
#   the attribute's information also sits in tokens *after* the subject (Sec. 6.2, App. M; Fig. 62
#   shows T5's last-layer attention for "a house in the style of van gogh", which the paper calls
#   non-causal), where an edit of the subject's last token cannot reach it.
#
# IF differs from SD in more than its encoder. Its UNet reads text through **added-K/V attention**:
# the text is projected (`encoder_hid_proj`), normalized, and its keys and values are concatenated
# with the image's own inside each attention layer; the T5 output is also pooled into the time
# embedding. So two factors are confounded on the real model. loco's organisms separate them: four
# models trained the same way on the same world (same data, seed, training steps and sampler),
# differing only in the text encoder and in the UNet's topology (SD-1.5's, or IF-I's block types with
# added-K/V attention and pooled text).
#
# | | UNet with cross-attention (SD) | UNet with added K/V (IF) |
# |---|---|---|
# | causal encoder (CLIP-style) | `toy` | `toy-if-clip` |
# | bidirectional encoder (T5) | `toy-t5` | `toy-if` |
#
# The heavy measurements of each organism (sample accuracy, LocoGen for four attributes, LocoEdit,
# the token swap; chapter 1's protocol, 2 seeds per prompt) are recorded in `data/organism/` by
# `loco report MODEL --seeds 0,1 --out ...`, and each artist's windows in
# `data/organism/two-by-two/` by `loco report MODEL --artists --out ...`; the text-encoder traces
# below run live. The last part
# runs the real-model path (IF's per-prompt windows, T5's and CLIP's attention maps, IF's LocoEdit)
# on the tiny twins here and on the real models in Colab.

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
ORGANISMS = ["toy", "toy-t5", "toy-if-clip", "toy-if"]  # the 2x2 design
TRACE_PROMPTS = 4  # style prompts per organism in the text-encoder traces (chapter 2's)
SEEDS = [0]  # seeds of the live runs
SPREAD_SEEDS = [0, 1, 2, 3]  # seeds of the seed-by-seed section (chapter 1's; loco's choice)
IF_MODEL = "tiny-if"  # the real-model path: "deepfloyd-if" in Colab (a 24 GB GPU; accept its licence on the hub first)
CLIP_MODEL = "tiny-sd15"  # the causal encoder beside it: "sd15" in Colab
IF_PROMPTS = 4  # style prompts per artist for IF's per-prompt windows
IF_M = 2  # LocoGen window size on IF (loco's choice on the twin; the paper's m for DeepFloyd is 3, App. G)
IF_STEPS = 10  # sampling steps on IF_MODEL (loco's choice for the twin, whose numbers test the code path; None: the model's default, 100 for DeepFloyd IF)
STEPS = None  # None: each model's default
GUIDANCE = None

# %%
import json

import pandas as pd

import loco_lib
from loco_lib import organism, per_image, trace
from loco_lib.clip_score import get_scorer
from loco_lib.evaluate import compare
from loco_lib.locoedit import compute_edit
from loco_lib.locogen import locogen
from loco_lib.organism.kept import measure
from loco_lib.plots import image_grid, plot_attention_maps
from loco_lib.prompts import default_prompts, load_artists, load_edit, load_pairs
from loco_lib.text import attention_map
from loco_lib.tokens import subject_token_index

reports = {name: organism.recorded_report(name, seeds=2) for name in ORGANISMS}
artists = {name: json.loads((organism.two_by_two_dir() / f"{name}-artists.json").read_text()) for name in ORGANISMS}

# %% [markdown]
# ## Four organisms, one recipe
#
# Each was trained with `python -m loco_lib.organism.training` from seed 0 for the same number of
# steps (`training.json` in its folder under `models/`). The UNets have the same widths and depth;
# the IF one has IF-I's block types and reads text through added K/V.

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({name: {"text encoder": t["kind"], "UNet": t["unet"], "training steps": t["steps"],
                     "final loss": round(t["final_loss"], 4)}
              for name, t in ((n, organism.training_info(n)) for n in ORGANISMS)}).T

# %%
info = {n: organism.training_info(n) for n in ORGANISMS}
print("training time: " + ", ".join(f"{n} {info[n]['wall_seconds'] / 60:.0f} min "
                                                   f"({info[n]['threads']} thread{'s' * (info[n]['threads'] > 1)})"
                                                   for n in ORGANISMS))
print("recorded reports:", {n: f"{len(r.seeds)} seeds, loco {r.recorded['loco_commit']}" for n, r in reports.items()})

# %% [markdown]
# Whether today's code would measure these records again: `current` when none of the files the
# measurement runs (`loco_lib.organism.measuring_code()`) nor the weights changed since the commit
# that measured it, comments and docstrings aside; `stale` names the files that did, so the record
# is stale against that commit and its numbers are those of that commit's code (re-record one with
# `loco report NAME --seeds 0,1 --out FILE`, or `loco report NAME --artists --out FILE`).

# %%
organism.status_table(sorted(organism.two_by_two_dir().glob("*.json")) +
                      [organism.recorded_dir() / f"{n}-2seeds.json" for n in ("toy", "toy-t5")])

# %% [markdown]
# ## The 2x2 table
#
# The report rows are measurements of chapter 1's protocol (`loco_lib.organism.report`), the artist
# rows come from `loco_lib.organism.protocol.artist_windows` and the text-trace rows from chapter
# 2's trace; all are read off by the organism's scorer:
#
# * **sample accuracy**: the fraction of images showing the shape, colour and style asked for;
# * **LocoGen windows**: the window of 2 layers that Algorithm 1 picks for each attribute, with how
#   far it moves the attribute's readout from the clean image (0) to every layer altered (1);
# * **LocoEdit** of van gogh at the style window: the style readout before -> after, on held-out
#   van gogh prompts, on the other styles and on style-free prompts;
# * **token swap** (loco's test of App. M's hypothesis): van gogh prompts generated with the text states at some token
#   positions taken from the style-free prompt: the subject's tokens, the tokens after it, both, or
#   all; the readout is the fraction of images still in van gogh style;
# * **each artist's window**: LocoGen run on each style's prompts alone (1 seed), and the windows
#   its prompts pick one by one;
# * **text trace**: restoring one text-encoder state at a time into a run whose subject tokens are
#   corrupted (chapter 2), at the subject's last token, on `TRACE_PROMPTS` prompts with
#   `SPREAD_SEEDS`, chapter 2's 4 prompts x 4 seeds (the traces of `toy` and `toy-t5` are chapter 2's
#   own kept files: the same call). An image whose corruption does not corrupt is left out and
#   counted (chapter 2); the strongest state's restored fraction comes with its 90% bootstrap
#   interval over the images that corrupt and how many of them it alone restores to half the gap.

# %%
text_traces = {}
for name in ORGANISMS:
    pipe = loco_lib.load(name)
    pairs = load_pairs(default_prompts("style", name), limit=TRACE_PROMPTS)
    text_traces[name] = measure("text-trace-last", name, trace.trace, pipe, pairs, where="text", encoder=1, tokens="last",
                                seeds=SPREAD_SEEDS, steps=STEPS, guidance=GUIDANCE, factor=trace.NOISE_FACTOR,
                                scorer=get_scorer(None, name), cache_dir=trace.default_cache_dir())
    del pipe

# %%
# NBVAL_CHECK_OUTPUT
table = organism.two_by_two(reports, text_traces, artists)
table

# %% [markdown]
# The text traces image by image: each organism's strongest state, its fraction of each image's own
# gap (NaN: an image whose corruption does not corrupt).

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({f"{name}: {tr.set_name(tr.ranking()[0])}": per_image.trace_by_image(tr, tr.ranking()[:1]).iloc[0]
              for name, tr in text_traces.items()}).filter(like="prompt ", axis=0).astype(float).round(2)

# %% [markdown]
# Where the styles sit, organism by organism: how far each window moves the style readout of each
# artist's prompts (1 = as far as altering every layer).

# %%
fig = organism.plot_artist_windows(artists)

# %% [markdown]
# A window's "readout moved" is `n/a` where altering *every* cross-attention layer does not move
# the readout at all (the clean and the all-layers images read the same), so no fraction can be
# formed. The IF UNet has a second way to read text: `add_embedding` pools the text states into
# the time embedding, which every ResNet block receives, and LocoGen's altered inputs reach only
# the attention layers. Giving the style-free prompt to that pooled path alone, with no attention
# layer altered (`swap_text_paths=True`; the row "pooled text only" below), shows what it carries:

# %%
pooled = {}
for name in ("toy-if-clip", "toy-if"):
    pipe = loco_lib.load(name)
    _, t = measure("pooled-text", name, organism.locogen_readouts, pipe, get_scorer(None, name),
                   load_pairs(default_prompts("style", name)), "style", 2, seeds=SEEDS, steps=STEPS, swap_text_paths=True)
    pooled[name] = t.set_index("layers")["style"]
    del pipe

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame(pooled).loc[["clean", "all"]].rename(index={"clean": "pooled text only", "all": "pooled text and every layer"}).round(2)

# %% [markdown]
# ## Reading the table
#
# The cells below state, from the table's numbers, what each factor does. They are computed, not
# written by hand, so that a retrained organism cannot leave a stale sentence behind.

# %%
# NBVAL_CHECK_OUTPUT
for line in organism.two_by_two_findings(reports, artists):
    print("*", line)

# %% [markdown]
# What this says, read from the outputs above:
#
# * On both SD-topology organisms LocoEdit removes van gogh (1.00 -> 0.00) and keeps the other
#   styles and the style-free prompts, with either encoder. On both IF-topology organisms it does
#   not (1.00 -> 1.00), and neither a window of cross-attention layers nor all of them moves the
#   style (`n/a`): the pooled text path alone carries it, since giving only that path the
#   style-free prompt removes the style from every image (0.00 above). On the organism the factor
#   that breaks the closed-form edit is the UNet's second text path, not T5's bidirectionality.
# * So the 2x2 tests whether an edit of the attention layers can reach a style the UNet reads
#   through its pooled path alone: it cannot, and it fails by changing nothing. It does not test
#   the paper's failure mode: on the real IF windows do move the style (Fig. 40, App. B.5: van gogh
#   from layer 12, monet from 16) and the edit gives non-semantic images (App. M, Fig. 61). In the IF organisms above the
#   attention layers carry no style to edit; the next section measures one whose attention does.
# * The organism does not reproduce IF's LocoGen result: on the real IF, Fig. 40 reports windows
#   that do change the style; on the 2x2's IF organisms no window does (`toy-if-xattn`, below, has one). Their windows in the table,
#   picked by CLIP-score among windows that all leave the style in place, carry no meaning, and
#   neither do their per-prompt counts.
# * The token swap: with T5 (`toy-t5`, `toy-if`) swapping the subject's tokens alone removes the
#   style (0.00) and swapping only the tokens after it keeps it (1.00), the opposite of the leak
#   App. M proposes, on this world. With the causal encoder and the SD UNet (`toy`) neither alone
#   is enough: the style goes only when both are swapped.
# * Localization depends on the prompt on the SD organisms too: each artist's prompts pick 2 to 4
#   distinct windows, and the artists' windows are not all the same (`toy`: 0-1, 1-2, 11-12).
# * The text traces (4 prompts x 4 seeds): with the causal encoder the first layer's
#   self-attention output alone restores more than half of the gap, in both UNets (`toy`: 0.84
#   [0.79, 0.90], on the 5 of 16 images its corruption corrupts; `toy-if-clip`: 0.65 [0.52, 0.78],
#   in 14 of 16 images); with T5 no state does on average, in either UNet, and the strongest, the
#   first block's MLP output, restores half the gap in about half of the images (`toy-t5`: 0.44,
#   8 of 16; `toy-if`: 0.35, 7 of 16). So chapter 2's contrast between the encoders (the paper's
#   Sec. 4 and Fig. 3: a unique causal state in SD's CLIP, none in IF's T5) holds whichever UNet
#   reads them. One seed would not have shown it: on seed 0, `toy-if-clip`'s first two
#   prompts restore 0.14 and 0.08 (the per-image table), so a trace of those two prompts on seed 0
#   alone would read a state that restores almost nothing.

# %% [markdown]
# ## An IF organism whose attention layers carry the style
#
# On `toy-if` the style passes through the pooled path alone, so the 2x2 cannot show how the
# closed-form edit fares where IF's attention layers do carry the style, as on the real IF (Sec.
# 5.2's windows). `toy-if-xattn` is trained with `toy-if`'s recipe (T5, the IF-topology UNet, seed
# 0, 3000 steps) except that the pooled text path (`add_embedding`'s output) is zeroed for each
# training sample with probability 0.5, on average half of each batch (`python -m loco_lib.organism.training --kind t5 --unet if --pooled-drop 0.5
# --steps 3000 --out models/toy-if-xattn`; loco's choice of 0.5), so that the UNet must also read
# the caption through its added-K/V attention. At sampling the pooled path is on, as in `toy-if`.
# Its report (the same protocol, 2 seeds per prompt) is recorded by `loco report
# models/toy-if-xattn --seeds 0,1 --out ...`:

# %%
xattn_report = organism.load_report(organism.two_by_two_dir() / "toy-if-xattn-2seeds.json")
xattn_artists = json.loads((organism.two_by_two_dir() / "toy-if-xattn-artists.json").read_text())
organism.status_table([organism.two_by_two_dir() / f"toy-if-xattn-{kind}.json" for kind in ("2seeds", "artists")])

# %%
# NBVAL_CHECK_OUTPUT
organism.two_by_two({"toy-if": reports["toy-if"], "toy-if-xattn": xattn_report},
                    artists={"toy-if": artists["toy-if"], "toy-if-xattn": xattn_artists})

# %%
fig = organism.plot_windows({"toy-if": reports["toy-if"], "toy-if-xattn": xattn_report})

# %% [markdown]
# Each artist's windows on `toy-if-xattn` (its artist record, `loco report models/toy-if-xattn
# --artists --out ...`, seed 0 only), beside `toy-if`'s:

# %%
fig = organism.plot_artist_windows({"toy-if": artists["toy-if"], "toy-if-xattn": xattn_artists})

# %% [markdown]
# On `toy-if-xattn` Algorithm 1 picks the same window, 14-15, for all three artists (the artist rows
# of the table above), but it does not control all three alike: it moves van gogh's and picasso's
# style the whole way (1.00) and monet's only a quarter of it (0.25). Prompt by prompt, van gogh's
# prompts pick one window, picasso's two (14-15 and the adjacent 13-14) and monet's three (its
# prompts' other windows, 0-1 and 7-8, lie where the curve above moves monet's style not at all).
# So the artist-to-artist difference that Sec. 5.2 and Fig. 40 report for DeepFloyd IF does not
# appear on this organism (one seed); a spread between adjacent windows does, for picasso.

# %% [markdown]
# Read from the table and the curves: on `toy-if-xattn` altering every attention layer does move
# the style (its `readout moved` is a number, no longer `n/a`), and one window, the last two
# layers 14-15, moves it all the way on the van gogh prompts. LocoEdit at that window removes van gogh from the held-out
# prompts (1.00 -> 0.00) and keeps the other styles and the style-free prompts (1.00 -> 1.00). So
# where the IF-topology UNet reads the style through its attention layers, the closed-form edit
# works on the organism, T5 included: the paper's IF failure (non-semantic images, App. M, Fig. 61)
# does not appear here. The token swap differs from every other organism's: swapping the subject's
# tokens, the tokens after it, or both, keeps the style in every image; only swapping every
# position removes it. With this bidirectional encoder the style is also carried by tokens before
# the subject, which no swap of the subject and what follows reaches, yet the edit at the last
# subject token removes it (8 prompts x 2 seeds per swap, `n` in the recorded report; the same on
# each of four seeds in the section "Seed by seed" below; why the edit reaches what the swap does
# not is not measured here).

# %% [markdown]
# ## Room after the subject: a long-context T5 organism
#
# The organisms' captions are padded to 12 tokens, so only a few positions follow the subject (3
# after "van gogh" with T5, the token counts printed below), against 68 in a 77-token sequence. `toy-t5-long` is `toy-t5` fine-tuned for 600 steps
# at learning rate 2e-4 with every caption padded to 77 tokens (`python -m loco_lib.organism.training
# --kind t5 --context 77 --init models/toy-t5 --lr 2e-4 --warmup 50 --steps 600`; loco's choice of
# steps and rate), so that the positions after the subject have room to carry the style, as App. M
# proposes for T5. `loco report` measures it at its 77 tokens; its report (the same protocol, 2
# seeds per prompt) is recorded in `data/organism/two-by-two/` by `loco report models/toy-t5-long
# --seeds 0,1 --out ...`.

# %%
from loco_lib.organism.model import models_dir
from loco_lib.organism.training import load_long_context

long_report = organism.load_report(organism.two_by_two_dir() / "toy-t5-long-2seeds.json")
organism.status_table([organism.two_by_two_dir() / "toy-t5-long-2seeds.json"])

# %%
# NBVAL_CHECK_OUTPUT
long_pipe = load_long_context(models_dir() / "toy-t5-long")
example = load_pairs(default_prompts("style", "toy-t5")).originals[0]
for name, tok in (("toy-t5", loco_lib.load("toy-t5").tokenizer), ("toy-t5-long", long_pipe.tokenizer)):
    after = tok.model_max_length - 1 - subject_token_index(tok, example, "van gogh")
    print(f"{name}: {tok.model_max_length} token positions, {after} after the subject's last token in {example!r}")
curve = json.loads((models_dir() / "toy-t5-long" / "training.json").read_text())["loss_curve"]  # means over 50 steps
print(f"toy-t5-long's fine-tuning loss: {curve[0]:.4f} over its first 50 steps, {curve[-1]:.4f} over its last 50")
del long_pipe

# %%
# NBVAL_CHECK_OUTPUT
organism.two_by_two({"toy-t5": reports["toy-t5"], "toy-t5-long": long_report})

# %% [markdown]
# With 68 positions after the subject instead of 3 (the token counts printed above), `toy-t5-long` reads
# as `toy-t5` does (the table; 8 prompts x 2 seeds per token swap, `n` in the recorded report, and
# the same on each of four seeds below): swapping only the tokens
# after the subject keeps van gogh in every image (1.00) and swapping only the subject's removes
# it from every image (0.00), and LocoEdit at the subject's last token removes van gogh (0.00) and
# keeps the other styles (1.00), at the report's style window 0-1 (at the window four seeds pick
# it does not keep them: the section "Seed by seed" below). So on this organism the room after the subject does not make the
# positions there carry the style, and the leak App. M proposes does not appear. Two limits remain:
# the positions after the subject are end-of-text and padding, not content words (the organism's
# captions end with the style, as Fig. 62's prompt ends with its subject); and the fine-tuning was
# short and started from a model that already handled the longer padding (its loss over the first
# 50 steps, above, is no higher than over the last 50).

# %% [markdown]
# ## Seed by seed: the six organisms on four seeds
#
# The tables above read reports of 2 seeds per prompt, one fraction per window or edit group over
# all of their images. Chapter 1 measures `toy`'s and `toy-t5`'s LocoGen windows and their LocoEdit
# of van gogh again on `SPREAD_SEEDS`, keeping what the scorer reads in every image
# (`loco_lib.organism.stability.headlines`); the same measurement runs here on the four organisms
# of the 2x2 and the two beside them (`toy-if-xattn` and `toy-t5-long` by their folder's name,
# `loco_lib.organism.variants`). Each organism's windows are Algorithm 1's picks from these images,
# and its edit is made at the style window picked there. Each result is a kept measurement like
# chapter 1's; `toy`'s and `toy-t5`'s are the very files chapter 1 reads.

# %%
from loco_lib.organism import variants
from loco_lib.organism.stability import headlines

images = organism.default_cache_dir()  # LocoGen's images stay out of the repository
spread = {}
for name in ORGANISMS + list(variants.BESIDE):
    if name in variants.BESIDE:
        spread[name] = measure("headlines", variants.folder(name), variants.headlines, name, get_scorer(None, "toy"),
                               seeds=SPREAD_SEEDS, steps=STEPS, progress=False, cache_dir=f"{images}/{name}/headlines")
    else:
        spread[name] = measure("headlines", name, headlines, name, loco_lib.load(name, progress=False), get_scorer(None, name),
                               seeds=SPREAD_SEEDS, steps=STEPS, progress=False, cache_dir=f"{images}/{name}/headlines")

# %% [markdown]
# Every window headline, one row per organism and attribute: the window Algorithm 1 picks from all
# the images, how far it moves the attribute (1 = as far as every layer altered; NaN where altering
# every layer moves nothing), its 90 % bootstrap interval over the images, each seed's own pick with
# how far the overall window moves on that seed, and how many prompts pick the same window.

# %%
# NBVAL_CHECK_OUTPUT
with pd.option_context("display.width", 250, "display.max_columns", 20):
    display(per_image.window_headlines(spread).round(2))

# %%
fig = per_image.plot_window_seeds(spread)

# %% [markdown]
# LocoEdit of van gogh at each organism's style window above, read off every image: the fraction
# in each group whose style is the one its prompt asks for, before and after the edit, with the
# after-fraction's interval and each seed's own.

# %%
# NBVAL_CHECK_OUTPUT
with pd.option_context("display.width", 250, "display.max_columns", 20):
    display(per_image.edit_seeds(spread, "style").xs("style", level="readout").round(2))

# %% [markdown]
# App. M's token swap on the same four seeds (`loco_lib.organism.token_swaps`): the 8 van gogh
# prompts generated with the text states at some positions taken from their style-free prompts
# (the subject's tokens, the tokens after it, both, or all), the fraction of the 32 images still in
# van gogh style, its interval and each seed's own. Each organism's swaps are a kept measurement.

# %%
from loco_lib.organism.token_swaps import swap_images

swaps = {}
for name in ORGANISMS + list(variants.BESIDE):
    kept_as = variants.folder(name) if name in variants.BESIDE else name
    swaps[name] = measure("token-swaps", kept_as, swap_images, name, get_scorer(None, "toy" if name in variants.BESIDE else name),
                          seeds=SPREAD_SEEDS, steps=STEPS)

# %%
# NBVAL_CHECK_OUTPUT
with pd.option_context("display.width", 250, "display.max_columns", 20):
    display(per_image.swap_seeds(swaps).round(2))

# %% [markdown]
# Read from the three tables and the figure (4 seeds x 8 prompts, 32 images per window, per token
# swap, per van gogh group and per style-free group, 64 for the other styles; 16 for the 4 fact
# prompts):
#
# * Wherever altering every layer moves the attribute, the window Algorithm 1 picks from the four
#   seeds moves it at least half of the way on each seed alone, on all six organisms, and its
#   interval stays at or above 0.5.
# * The style rows of `toy-if-clip` and `toy-if` are NaN on every seed: altering every layer leaves
#   the style in every image, as the clean run does, so a window's fraction of that move is not
#   defined. LocoEdit at the window they pick changes no fraction of the table on any seed (van
#   gogh kept in every image before and after). The 2x2's IF result is not an accident of two
#   seeds.
# * `toy-if-xattn`: every seed picks 14-15 for the style, and the edit there removes van gogh from
#   every image of every seed (0.00) while keeping the other styles and the style-free prompts
#   (1.00).
# * `toy-t5-long` does not keep its 2-seed report's conclusion. Over four seeds Algorithm 1 picks
#   12-13 for the style, where the report picked 0-1: seed 0 alone picks 0-1, seeds 1 to 3 pick
#   12-13, and on every seed the window 12-13 moves the style the whole way. LocoEdit at 12-13
#   still removes van gogh from every image, but keeps the other styles (monet and picasso) in only
#   0.31 of their images (0.12 to 0.50 on each seed alone), where the report's edit at 0-1 kept them
#   all. The prompts disagree as well: 4 of the 8 pick 12-13 on their own. On `toy-t5` too only 4
#   of the 8 pick the four seeds' window 0-1, and seeds 0 and 3 pick 1-2. So which window Algorithm 1
#   returns on these T5 organisms rests on the seeds and prompts it is given, and on `toy-t5-long`
#   the edit's side effect on the other styles depends on that choice (of the SD-topology
#   organisms, only `toy-t5-long` is edited at its late window here). The style panel of the figure
#   shows the two windows on all three SD-topology organisms: 0-1 and 12-13 each move the style the
#   whole way. Chapter 1 shows on `toy` what the late window does to the images (the window grid of
#   section 2, read in section 3).
# * The token swaps keep the reports' 0s and 1s on every seed: with T5 (`toy-t5`, `toy-t5-long`,
#   `toy-if`) swapping only the tokens after the subject keeps van gogh in every image and swapping
#   the subject's tokens removes it (on `toy-if` from all but one image, of seed 2); with CLIP and
#   the SD UNet (`toy`) neither set alone removes it, on any seed; on `toy-if-xattn` only swapping
#   every token does. `toy-if-clip` is the exception: its report's 0.31 and 0.31 (2 seeds) are 0.56
#   [0.41, 0.69] and 0.47 [0.31, 0.62] on four, from 0.25 to 1.00 seed by seed, so on that organism
#   neither token set alone decides the style, and how much each carries depends on the seed.

# %% [markdown]
# ## The real-model path: DeepFloyd IF beside a CLIP model
#
# On the real models the same questions are asked with the paper's prompts. Here they run on the
# tiny twins, random weights of the real topologies, so the numbers below test the code path, not
# the science, and they run with `IF_STEPS` sampling steps instead of the IF pipeline's default
# (loco's choice, to keep the book's build short; the line below that counts the cross-attention
# layers prints both); in Colab set `IF_MODEL = "deepfloyd-if"`, `CLIP_MODEL = "sd15"`,
# `IF_STEPS = None` and `IF_M = 3` (the paper's m for DeepFloyd, App. G).
#
# **Per-prompt windows** (Sec. 5.2): LocoGen on each artist's App. K.1 prompts, and the window every
# prompt picks on its own (`LocoGenResult.prompt_windows`), not only the mean.

# %%
if_pipe = loco_lib.load(IF_MODEL)
if_scorer = get_scorer(None, IF_MODEL)
rows = []
for artist in ("Van Gogh", "Monet"):
    res = locogen(if_pipe, load_artists(artist)[:IF_PROMPTS], "style", IF_M, SEEDS, scorer=if_scorer, steps=IF_STEPS,
                  guidance=GUIDANCE, progress=False)
    per = res.prompt_windows()
    per.insert(0, "artist", artist)
    rows.append(per)
    print(f"{artist}: window {res.best['layers']} over {len(per)} prompts")
per_prompt = pd.concat(rows, ignore_index=True)

# %%
# NBVAL_CHECK_OUTPUT
if_default_steps = loco_lib.settings.steps(if_pipe, None)
print(f"{IF_MODEL}: {len(loco_lib.cross_attention_layers(if_pipe.unet))} cross-attention layers; "
      f"{IF_STEPS or if_default_steps} sampling steps (its default: {if_default_steps}); {len(per_prompt)} prompts")

# %%
# NBVAL_CHECK_OUTPUT
# LOCO_CHECK: meaning (on a random-weight twin the windows and fractions are noise: their text is checked, not their digits)
print(f"{per_prompt['window'].nunique()} distinct windows over {len(per_prompt)} prompts")
per_prompt[["artist", "prompt", "window", "fraction"]].round(2)

# %% [markdown]
# **T5's and CLIP's self-attention** (Fig. 62): the last encoder layer's attention, averaged over
# heads (loco's choice; Fig. 62 shows each head, and head 6), for one style prompt. CLIP's is
# causal: the artist's token (outlined) attends only to itself and the tokens before it, and no earlier token sees the artist. T5's is not: every token may attend to
# every other, the artist's included, which is the paper's reason that the attribute ends up in
# tokens after the subject.

# %%
clip_pipe = loco_lib.load(CLIP_MODEL)
prompt = "a house in the style of van gogh"
maps = {IF_MODEL: attention_map(if_pipe, prompt), CLIP_MODEL: attention_map(clip_pipe, prompt)}
marks = {IF_MODEL: subject_token_index(if_pipe, prompt, "van gogh"), CLIP_MODEL: subject_token_index(clip_pipe, prompt, "van gogh")}
fig = plot_attention_maps(maps, marks)

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame({name: {"tokens": len(m.tokens), "causal": m.causal,
                     "the artist's last token attends to later tokens": m.after(marks[name]) > 0}
              for name, m in maps.items()}).T

# %% [markdown]
# **LocoEdit on IF** with the protocol of the LocoEdit chapter: the style keys of the prompt file at
# the window Van Gogh's prompts gave most often above (of windows given equally often, the first in
# string order: pandas' `mode`), then held-out prompts before and after (`compare`). App. M reports
# non-semantic images on the real IF.

# %%
# NBVAL_CHECK_OUTPUT
# LOCO_CHECK: meaning (a random-weight twin's CLIP-scores: the table's rows and columns are checked, not its digits)
keys = load_edit("style", "van gogh")
if_window = per_prompt.loc[per_prompt["artist"] == "Van Gogh", "window"].mode().iloc[0]
if_edit = compute_edit(if_pipe, if_window, keys.originals, keys.targets, keys.subjects, keys.target_subjects)
held_out = load_artists("Van Gogh")[:IF_PROMPTS]
result = compare(if_pipe, held_out.originals, held_out.targets, {"original": None, "LocoEdit": if_edit}, seeds=SEEDS,
                 scorer=if_scorer, steps=IF_STEPS, guidance=GUIDANCE)
fig = image_grid(result.images("original") + result.images("LocoEdit"), row_labels=["original", f"edited ({if_window})"],
                 ncols=len(held_out), size=1.8)
result.mean("prompt").round(1)

# %% [markdown]
# ## What this page shows, and what it does not
#
# * The paper's observations on IF are in Sec. 4 (Figs. 2, 3; App. A, Fig. 13: no unique causal
#   state in IF's T5 nor a strong one in its UNet), Sec. 5.2, Fig. 7 and App. B.5, Fig. 40
#   (prompt-dependent windows), Sec. 6.2, App. M and Fig. 61 (the edit's non-semantic images) and
#   Fig. 62 (T5's attention).
# * The organisms test the paper's explanation in a world loco controls: the findings above say
#   which factor, if either, breaks the closed-form edit there. The organism's captions end with
#   the style ("a red circle in the style of monet"), so there are no content words after the
#   subject for a bidirectional encoder to leak into, only end-of-text and padding tokens; the
#   long-context organism gives those tokens room (68 positions) and shows no leak either. A world
#   with content words after the subject is where the leak the paper describes would have its best
#   chance to show; it is not built here.
# * The 2x2 table's report rows and the two organisms beside it read 2 seeds per prompt; the
#   seed-by-seed section measures their windows, the van gogh edit and the token swaps again on
#   four, and the text traces are 4 prompts x 4 seeds. The artist rows stay on 1 seed (seed 0);
#   chapter 1 measures `toy`'s artists again on four.
# * The twins' numbers above test that the real-model code runs; they carry no science.
