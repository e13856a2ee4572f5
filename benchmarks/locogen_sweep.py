"""Naive loop vs the sweep engine for one LocoGen search (issue 3 benchmark).

tiny-sd15, its 16 cross-attention layers, windows of m = 2 (15 windows) plus the clean and fully
altered references, N = 4 style prompts, 1 seed, 10 steps, on the CPU.

* naive: one pipeline call per window (the 4 prompts batched in it), as a plain loop would do;
* engine: ``loco_lib.sweep.run_sweep`` (windows batched, identical UNet rows shared, no cache).

UNet sample-evaluations are counted by a hook on the UNet for the naive loop and by the engine's
own counter (what the UNet really evaluated after sharing). Both runs produce the same images
(max abs difference printed). Ends with: ``evaluations ratio X.XX, wall ratio Y.YY`` (naive / engine).
"""
import time

import numpy as np
import torch

from loco_lib import generate, load
from loco_lib.locogen import windows
from loco_lib.sweep import Job, run_sweep

ORIG = ["a house in the style of van gogh", "a bridge in the style of van gogh",
        "a tree in the style of van gogh", "a cat in the style of van gogh"]
TARG = [p.replace("van gogh", "a painting") for p in ORIG]
STEPS, M, SEED = 10, 2, 0


def main():
    pipe = load("tiny-sd15", device="cpu", progress=False)
    n_layers = 16
    sets = [[]] + windows(n_layers, M) + [list(range(n_layers))]
    generate(pipe, "warm up", steps=1, progress=False)

    rows = {"n": 0}
    hook = pipe.unet.register_forward_pre_hook(
        lambda m, a, kw: rows.__setitem__("n", rows["n"] + kw["encoder_hidden_states"].shape[0]), with_kwargs=True)
    naive_images = {}
    t = time.perf_counter()
    for layers in sets:
        kw = dict(seeds=SEED, steps=STEPS, output_type="np", progress=False)
        out = (generate(pipe, ORIG, **kw) if not layers
               else generate(pipe, ORIG, alt_prompts=TARG, layers=layers, **kw))
        for i, img in enumerate(out.images):
            naive_images[Job(i, tuple(layers), SEED)] = img
    naive_wall = time.perf_counter() - t
    hook.remove()
    naive_evals = rows["n"]

    t = time.perf_counter()
    res = run_sweep(pipe, ORIG, TARG, sets, [SEED], steps=STEPS, keep_arrays=True, progress=False)
    engine_wall = time.perf_counter() - t
    engine_evals = res.counter["rows"]
    diff = max(float(np.abs(res.arrays[j] - naive_images[j]).max()) for j in naive_images)

    print(f"jobs: {len(naive_images)} images ({len(sets)} layer sets x {len(ORIG)} prompts), {STEPS} steps, "
          f"torch threads {torch.get_num_threads()}")
    print(f"naive : {naive_evals} UNet sample-evaluations in {len(sets) * STEPS} UNet calls, {naive_wall:.2f} s")
    print(f"engine: {engine_evals} UNet sample-evaluations in {res.counter['calls']} UNet calls, {engine_wall:.2f} s "
          f"({res.counter['uncond_rows']} unconditional)")
    print(f"max abs pixel difference engine vs naive: {diff:.2e}")
    print(f"evaluations ratio {naive_evals / engine_evals:.2f}, wall ratio {naive_wall / engine_wall:.2f}")


if __name__ == "__main__":
    main()
