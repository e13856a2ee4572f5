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
# # Reproduce the paper
#
# Every chapter of this book is a notebook that `loco reproduce` executes with papermill into a run
# folder, after which the book is built from those executions:
#
# ```bash
# loco reproduce --profile smoke                 # the chapters' defaults: the model organisms, on a CPU (what `make book` runs)
# loco reproduce --profile paper --model sd15    # the chapters on a real model with the paper's settings (a CUDA GPU)
# loco reproduce --profile paper --model sdxl --chapters 03,04 --out runs/sdxl
# ```
#
# A rerun keeps every chapter whose inputs (its source, its parameters, the library's code, the
# prompt data) are unchanged, so an interrupted run resumes; a chapter that fails stops the run
# with one line naming the chapter and the cell, and its partial execution is kept beside the
# finished ones. This page is itself executed as part of the run and reads the run's records.

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
MODEL = "sd15"  # the real model the paper profile's table below is written for
RUN_DIR = None  # the run folder whose records are shown (set by `loco reproduce`; None: _build in the repository)

# %%
import json

import pandas as pd

from loco_lib import reproduce

# %% [markdown]
# ## Which chapter makes which figure
#
# Each figure and table of the paper, the chapter that makes it, the parameters to set (in Colab:
# the chapter's parameters cell) and the command that runs it on a real model:

# %%
# NBVAL_CHECK_OUTPUT
with pd.option_context("display.max_colwidth", None, "display.width", 250):
    display(reproduce.figures_table())

# %% [markdown]
# ## What the profiles set
#
# The `paper` profile gives every chapter the real model and the settings the paper or the authors'
# public code state, plus a few of loco's choices that keep a run affordable, each marked as such
# where it is set (`loco_lib.reproduce`; e.g. chapter 02's prompts and seeds); every other setting
# stays the chapter's own. Chapter 05 runs its own `N_PROMPTS`, not all of an artist's App. K.1
# prompts (`--param` sets it); its `SEEDS`, 0-3, are the seeds the authors' `clip-sim.py` averages
# over. The chapter "The model organism" is not part of it; chapter 06's 2x2 design runs on the
# organisms as in the book, and only its real-model part gets real weights: IF
# (`IF_MODEL = "deepfloyd-if"`) and SD-1.5 beside it (`CLIP_MODEL = "sd15"`).

# %%
# NBVAL_CHECK_OUTPUT
with pd.option_context("display.max_colwidth", None, "display.width", 250):
    display(pd.DataFrame({chapter: {"parameters": json.dumps(params)}
                          for chapter, params in reproduce.plan("paper", MODEL).items()}).T)

# %% [markdown]
# ### Model by model
#
# What `--profile paper --model M` gives each real model. The paper states DDIM (Sec. 5.1) and no
# steps, guidance or image size; the 50 steps and guidance 7.5 of the SD models are the authors'
# code's; SD-XL's and DeepFloyd IF's samplers, steps and guidance are their pipelines' defaults,
# which depart from Sec. 5.1's DDIM (loco's choice; the `where` column says which is which). The
# image sizes are the models' native sizes (the `size (px)` column; loco's choice: the paper states
# none, and the authors' code generates SD-2.1 at 512 px, not its 768). The window sizes m are chapter 03's `M` per `ATTRIBUTE`: where the
# paper states two values, one rule (`loco_lib.paper.WINDOW_RULE`, printed below) picks one and the
# other is one `--param` away. Chapter 04's, 05's and 07's windows are the whole windows of
# `loco_lib.paper.LOCATIONS`. Chapter 06 runs only with `--model deepfloyd-if`, where its IF part
# gets IF's m and its pipeline's 100 steps.

# %%
# NBVAL_CHECK_OUTPUT
from loco_lib import paper

print("window size rule:", paper.WINDOW_RULE)
with pd.option_context("display.max_colwidth", None, "display.width", 250):
    display(reproduce.paper_settings_table())

# %% [markdown]
# ## A plan before a GPU is rented
#
# `loco reproduce --profile paper --model M --dry-run` runs nothing and prints, per chapter, the
# denoiser work the chapter will do on the real model, what it costs, and an estimated time
# ({mod}`loco_lib.budget`):
#
# * **images and calls**: every image the chapter generates (a causal trace's clean run rides in
#   each of its calls and is counted there), in pipeline calls of the batch sizes loco uses on a
#   GPU, with empty caches; a UNet call is one denoising step of a pipeline call;
# * **UNet rows**: the UNet applied to one image at one step; classifier-free guidance makes two
#   per image and step (the conditional and unconditional branch). The sweeps evaluate rows that are
#   bit for bit identical once, which this count does not subtract;
# * **FLOPs**: counted, not estimated: the full-size UNet, built from the real config on the meta
#   device (no weights, no memory), runs one row at the model's own resolution under
#   `torch.utils.flop_counter.FlopCounterMode`; the VAE decoder is counted the same way per image;
#   a fine-tuning's backward pass (chapter 07's ESD-x and Concept Ablation) is counted as two
#   forward rows (`budget.BACKWARD_ROWS`, loco's assumption);
# * **time**: the FLOPs divided by a fraction `budget.EFFICIENCY` of the named GPU's dense fp16
#   tensor peak (`budget.GPU_PEAKS`, from the vendor's datasheet; `--gpu` picks it). The fraction is
#   loco's assumption, not a measurement: no GPU time has been measured for this book;
# * **memory**: the half-precision weights of the UNet, the text encoder(s) and the VAE (2 bytes
#   per parameter, counted on the meta device; the tables' GB are $2^{30}$ bytes); activations,
#   and for a fine-tuning its gradients and optimizer state, come on top.
#
# `tests/test_budget.py` checks the counts against what the library runs on the tiny twins (the
# pipeline calls and images of a trace, of `states_needed`, of a LocoGen sweep and a comparison, and
# of chapter 03's searches run one after the other) and the UNet calls of chapters 02 and 04-07
# against a count made independently from the chapters' code. The whole paper, its five models one
# run each:

# %%
# NBVAL_CHECK_OUTPUT
from loco_lib import budget

print(f"time at {budget.EFFICIENCY:.0%} of the A100's dense fp16 peak ({budget.GPU_PEAKS['A100'] / 1e12:.0f} TFLOP/s)")
with pd.option_context("display.width", 250, "display.max_columns", None):
    display(budget.paper_plan())

# %% [markdown]
# The chapters of `--model MODEL` (this page's parameter):

# %%
# NBVAL_CHECK_OUTPUT
plan = budget.dry_run("paper", MODEL)
print(f"{plan['TFLOP per row'].iloc[0]} TFLOP per UNet row; fp16 weights {plan['fp16 weights (GB)'].iloc[0]} GB")
plan.drop(columns=["TFLOP per row", "fp16 weights (GB)"])

# %% [markdown]
# Does the time follow the FLOPs from one architecture to the next? `benchmarks/unet_flops.py` times
# one call of each full-size UNet (random weights, float32, one row at the model's own resolution)
# on this book's CPU. If the time per FLOP is about the same for every model, the FLOP count
# carries from one model to another, which is what the estimate assumes on a GPU. The CPU's rate
# says nothing about a GPU's.

# %%
flops_record = reproduce.ROOT / "benchmarks" / "results" / "unet_flops-cpu.json"
if flops_record.exists():
    rec = json.loads(flops_record.read_text())
    print(f"measured {rec['date']}: {rec['dtype']}, torch {rec['torch']}, {rec['threads']} threads")
    with pd.option_context("display.width", 250, "display.max_columns", None):
        display(budget.cpu_rates(rec))
else:
    print("no record in this checkout: python benchmarks/unet_flops.py --out benchmarks/results/unet_flops-cpu.json")

# %% [markdown]
# The record holds two timed calls per model, after one untimed call, on a 2-thread CPU; the table
# reads the faster. Where the three Stable Diffusion UNets run at about the same rate, their times follow their FLOPs
# from one architecture to the next; where DeepFloyd IF's runs at a lower rate (the record above
# says whether it does), its FLOPs understate its time and its estimate is the least sure of the
# five. The record is float32 on a CPU; a GPU's rate is another measurement, not made here.

# %% [markdown]
# ## Hardware
#
# The real models need a CUDA GPU; loco's own builds run on CPUs only, so no time or memory on a
# GPU has been measured here. What has been measured is one LocoGen generation, one LocoEdit
# (computed, applied and reverted), one text-encoder trace and a neuron ranking (not the neuron
# edit's generation, nor chapter 07's baselines) on the full-size SD-1.5 and SD-XL architectures with random weights (`benchmarks/full_size.py`, each method in a fresh
# process, float32 on the CPU at 64 px for 2 steps; `make test-slow` runs the same steps). The
# parameter counts make the half-precision weight memory exact; whether the weights alone fit a
# GPU is read off them, while the activations at 512 or 1024 px, which come on top, are not in
# this record.

# %%
bench = reproduce.ROOT / "benchmarks" / "results" / "full_size-cpu.json"
if bench.exists():
    record = json.loads(bench.read_text())
    print(f"measured {record['date']}: {record['size']} px, {record['steps']} steps, {record['dtype']}, torch {record['torch']}, "
          f"{record['cpu_count']} CPU cores")
    display(reproduce.memory_table(record))
else:
    print("no full-size record in this checkout: python benchmarks/full_size.py --out benchmarks/results/full_size-cpu.json")

# %% [markdown]
# Per chapter of the `paper` profile, the methods it runs on the real model, their half-precision
# weights and the smallest of these GPUs that holds them (`loco reproduce --profile paper` prints
# the same line for each chapter before it starts). SD-1.4 and OpenJourney have SD-1.5's
# architecture (`loco_lib/data/architectures.json`), so their rows are SD-1.5's. This is a lower
# bound: the activations at full resolution and the CLIP scorer's weights come on top, and so do
# chapter 07's fine-tunings (gradients, optimizer state), which the table does not cover.

# %%
# NBVAL_CHECK_OUTPUT
if bench.exists():
    display(reproduce.gpu_table(record))

# %% [markdown]
# ## More than one GPU
#
# On a machine with several GPUs, the long sweeps (LocoGen windows, causal traces, evaluations)
# split their jobs over one process per GPU ({mod}`loco_lib.parallel`). Process *r* of *n* takes
# every *n*-th batch of the jobs, in the batches one process would make (a trace: every *n*-th
# prompt and seed), so the images are the same; every process writes what it finished into the
# same resumable cache. Either run one
# command in several processes,
#
# ```bash
# accelerate launch --multi_gpu --num_processes 4 -m loco_lib locogen sd15 --attribute style --window 2 --cache runs/style
# ```
#
# (`--window` is `--m` spelled so that the launcher's own options do not take it), or a whole
# profile: `loco reproduce --profile paper --processes 4` first runs each chapter's code in four
# processes, which fills the caches of its sweeps and traces, then executes the chapter once with
# papermill, which reads them. Evaluations keep no cache, so in a whole profile they are computed
# in both passes and only the sweeps and traces gain. The split is tested with two CPU processes (`tests/test_parallel.py`: the same images bit
# for bit and the same scores as one process, a disjoint share per process, a rerun computes
# nothing); no run on several GPUs has been made here.

# %% [markdown]
# ## On another machine
#
# Another CPU computes other float bits: a wider vector unit or another thread count sums in
# another order. Three things keep this book reproducible off the machine that recorded it.
#
# * The kept measurements (`data/organism/cache`) are keyed only by committed bytes and chosen
#   arguments: the weight files, the measuring code, the prompts, seeds, steps and windows
#   (chapter 1's report parts, `data/organism/cache/<organism>/`: the weights, the scorer's
#   weights, the measuring code, seeds and steps, not the prompt files), an edit
#   by its recipe (method, layers, prompt rows, lambda, the fingerprints of the weights it
#   replaces), a trace by the key it was kept under. A fresh clone on another CPU (with the Python the README names) reads them all,
#   and `git status` stays clean; a kept file that must change is named in one line with the reason.
# * `make test` executes every chapter under a lower instruction set than the machine's
#   (`loco reproduce --foreign-cpu`), so the checked results always meet bits they were not
#   recorded with; the run's table under *Time* below shows the instruction set each chapter ran
#   under and how many kept measurements it read and measured through `organism.kept.measure`
#   (chapter 1's report parts are read by `organism.report` and not counted there; one it measured
#   again would show as a changed file of `data/organism/cache`, which `make test` fails on).
# * A checked result is compared as text and numbers: each number within a few times the spread
#   measured for it (the factor is printed below), plus its printed rounding. `tests/spread.py`
#   measures the spread by executing the book under several instruction sets and thread counts
#   with every kept measurement measured again; the table below summarises `tests/spread.md`,
#   which lists every checked cell and kept file.

# %%
spread = reproduce.spread_table()
print(f"tolerance: {spread.attrs['factor']} x the measured spread, plus a unit of the last decimal printed")
print("configurations:", *spread.attrs["configurations"], sep="\n  ")
spread

# %% [markdown]
# ## Time
#
# The run that built this page: each chapter's time, from the run folder's records
# (`<out>/src/notebooks/<chapter>.done.json`). On the `smoke` profile these are the organisms on the
# build machine's CPU cores.

# %%
records = reproduce.run_records(RUN_DIR or reproduce.ROOT / "_build")
records

# %%
import matplotlib.pyplot as plt

done = records.dropna(subset=["seconds"])
fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(done), 1) + 0.8))
ax.barh(done["chapter"], done["seconds"] / 60, color="tab:blue")
ax.invert_yaxis()
ax.set_xlabel("minutes (this run's records)")
ax.set_title(f"chapter times, profile {', '.join(sorted(set(done['profile'].dropna()))) or '-'}")
fig.tight_layout()
