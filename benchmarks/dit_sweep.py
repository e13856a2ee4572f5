"""The LocoGen sweep engine on diffusion transformers (issue 24): against a naive loop of pipeline
calls, and against the denoiser's own best batched throughput.

    python benchmarks/dit_sweep.py [MODEL ...]     (default: tiny-pixart toy-dit)

For each model: N = 4 style prompts, windows of m = 2 over all its blocks plus the clean and the
fully altered runs, 1 seed, the model's default guidance, 10 steps, on the CPU.

* naive: one ``loco_lib.generate`` call per layer set (the 4 prompts batched in it);
* engine: ``loco_lib.sweep.run_sweep`` (no cache), its denoiser rows counted by the engine;
* denoiser: the transformer alone, called on inputs of the sweep's shapes (latents, caption, mask,
  timestep) at batch sizes 1, 2, 4, ... up to the engine's largest call; its best rows per second.

Prints per model the images' largest difference (engine vs naive), the wall ratio naive / engine,
and the engine's denoiser rows per second as a fraction of the denoiser's best. With ``--json
FILE`` the numbers are written there.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from loco_lib import generate, load
from loco_lib.families.registry import denoiser
from loco_lib.layers import cross_attention_layers
from loco_lib.locogen import windows
from loco_lib.sweep import Job, run_sweep
from loco_lib.text import encode

ORIG = ["a red circle in the style of van gogh", "a blue square in the style of van gogh",
        "a green triangle in the style of van gogh", "a yellow cross in the style of van gogh"]
TARG = [p.replace(" in the style of van gogh", "") for p in ORIG]
STEPS, M, SEED = 10, 2, 0


def denoiser_best(pipe, rows_max: int, reps: int = 3) -> tuple[float, int]:
    """(rows per second, at batch size) of the denoiser alone, best over batch sizes 1, 2, 4, ..."""
    model = denoiser(pipe)
    c = encode(pipe, ORIG[:1])
    side = model.config.sample_size
    x1 = torch.randn(1, model.config.in_channels, side, side)
    best = (0.0, 0)
    b = 1
    while True:
        x = x1.expand(b, -1, -1, -1).contiguous()
        text = c.embeds.expand(b, -1, -1).contiguous()
        mask = c.mask.expand(b, -1).contiguous() if c.mask is not None else None
        t = torch.full((b,), 500)
        kw = dict(encoder_hidden_states=text, encoder_attention_mask=mask, timestep=t)
        if "added_cond_kwargs" in model.forward.__code__.co_varnames:
            kw["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
        with torch.no_grad():
            model(x, **kw)  # warm-up
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                model(x, **kw)
                times.append(time.perf_counter() - t0)
        rate = b / min(times)
        if rate > best[0]:
            best = (rate, b)
        if b >= rows_max:
            return best
        b = min(2 * b, rows_max)


def bench(name: str) -> dict:
    pipe = load(name, progress=False)
    n = len(cross_attention_layers(pipe))
    sets = [[]] + windows(n, M) + [list(range(n))]
    generate(pipe, ORIG[0], steps=2, progress=False)  # PixArt's pipeline fails at 1 step with a DPM-Solver scheduler
    kw = dict(seeds=SEED, steps=STEPS, output_type="np", progress=False)
    naive = {}
    t = time.perf_counter()
    for layers in sets:
        out = generate(pipe, ORIG, **kw) if not layers else generate(pipe, ORIG, alt_prompts=TARG, layers=layers, **kw)
        for i, img in enumerate(out.images):
            naive[Job(i, tuple(layers), SEED)] = img
    naive_wall = time.perf_counter() - t
    t = time.perf_counter()
    res = run_sweep(pipe, ORIG, TARG, sets, [SEED], steps=STEPS, keep_arrays=True, progress=False)
    engine_wall = time.perf_counter() - t
    diff = max(float(np.abs(res.arrays[j] - naive[j]).max()) for j in naive)
    rows, calls = res.counter["rows"], res.counter["calls"]
    largest = int(np.ceil(rows / calls)) * 2
    rate, at = denoiser_best(pipe, max(largest, 8))
    out = {"model": name, "blocks": n, "layer sets": len(sets), "images": len(naive), "steps": STEPS,
           "threads": torch.get_num_threads(), "naive s": naive_wall, "engine s": engine_wall,
           "wall ratio": naive_wall / engine_wall, "max abs diff": diff, "engine rows": rows, "engine calls": calls,
           "engine rows/s": rows / engine_wall, "denoiser best rows/s": rate, "at batch": at,
           "fraction of denoiser": rows / engine_wall / rate}
    print(f"{name}: {len(naive)} images ({len(sets)} layer sets x {len(ORIG)} prompts), {n} blocks, {STEPS} steps, "
          f"{out['threads']} threads")
    print(f"  naive {naive_wall:.2f} s, engine {engine_wall:.2f} s: wall ratio {out['wall ratio']:.2f}; "
          f"max abs pixel difference {diff:.2e}")
    print(f"  engine {rows} denoiser rows in {calls} calls: {out['engine rows/s']:.1f} rows/s; denoiser alone "
          f"{rate:.1f} rows/s at batch {at}: fraction {out['fraction of denoiser']:.2f}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=["tiny-pixart", "toy-dit"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import loco_lib.organism  # noqa: F401 (registers toy-dit)

    results = [bench(m) for m in args.models]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
