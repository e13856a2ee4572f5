"""The LocoGen sweep engine on diffusion transformers (issues 24 and 25): against a naive loop of
pipeline calls, and against the denoiser's own batched throughput. On the joint-attention models
(SD3, FLUX) each altered job's T' runs as a donor sample in the same call; both the engine and the
naive loop carry their donors, and the counts include them.

    python benchmarks/dit_sweep.py [MODEL ...] [--full-size MODEL ...] [--repeats R] [--json FILE]
                                   [--steps S] [--best-sizes 8,16,32,64]
    (default: tiny-pixart toy-dit)

For each model: N = 4 style prompts, windows of m = 2 over all its blocks plus the clean and the
fully altered runs, 1 seed, the model's default guidance, 10 steps, on the CPU. ``--full-size pixart-alpha``: the real architecture with random weights in
bfloat16 (:func:`loco_lib.architectures.random_pipeline`), 1 prompt and 2 steps to fit the CPU.

* naive: one ``loco_lib.generate`` call per layer set (the 4 prompts batched in it);
* engine: ``loco_lib.sweep.run_sweep`` (no cache), its denoiser rows counted by the engine;
* replay: the bare transformer (no hooks) called again on the very inputs of every call the
  engine made (same rows, after the engine's row sharing): the time the denoiser alone needs for
  the engine's work. ``engine share`` = replay / engine is the part of the engine's wall time spent
  in the denoiser; the rest is the engine's own (hooks, scheduler, text encoding, VAE decoding);
* best: the bare transformer on the engine's own rows (every row of every call it made: latent,
  text, mask, timestep), cut into calls of 8, 16, 32, 64 rows (``--best-sizes``) and of the
  engine's largest call, each pass timed whole; ``fraction of denoiser`` = the engine's rows per second over the fastest pass.

Naive, engine, replay and best run ``--repeats`` times in turn (default 3; this machine's speed
drifts by tens of per cent between runs): the times printed are each one's fastest run, the ratios
(wall ratio, engine share, fraction) the median over the repeats of the ratio within each repeat,
and engine share and fraction also from the fastest runs alone. Prints per model the images' largest difference
(engine vs naive), the wall ratio naive / engine and both fractions; ``--json FILE`` writes them.
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


def _rows(value, n: int):
    """``value`` with its batch dimension of ``n`` rows (a 0-d timestep repeated per row)."""
    if torch.is_tensor(value) and value.dim() == 0:
        return value.expand(n)
    return value


def denoiser_best(log: "CallLog", sizes) -> tuple[float, int]:
    """(rows per second, at batch size) of the bare denoiser on the engine's own rows: every row of
    every logged call (its latent, text, mask, timestep, pooled text), cut into calls of each size in
    ``sizes``; the whole pass is timed once per size; the best size wins."""
    args, kwargs = [], {}
    first = log.calls[0][1]
    per_row = {k for k, v in first.items()  # FLUX's txt_ids / img_ids have no batch dimension: kept as they are
               if torch.is_tensor(v) and (v.dim() == 0 or v.shape[0] == log.calls[0][0][0].shape[0])}
    for a, kw in log.calls:
        n = a[0].shape[0]
        args.append(a[0])
        for k in per_row:
            kwargs.setdefault(k, []).append(_rows(kw[k], n))
    x = torch.cat(args)
    tensors = {k: torch.cat(v) for k, v in kwargs.items()}
    fixed = {k: v for k, v in first.items() if k not in per_row}
    best = (0.0, 0)
    with torch.no_grad():
        for b in sizes:
            t = time.perf_counter()
            for i in range(0, len(x), b):
                log.forward(x[i:i + b], **{k: v[i:i + b] for k, v in tensors.items()}, **fixed)
            rate = len(x) / (time.perf_counter() - t)
            if rate > best[0]:
                best = (rate, b)
    return best


class CallLog:
    """Keeps the inputs of every call of the denoiser (as its ``forward`` gets them, after loco's
    pre-hooks have shared rows), to replay them on the bare model."""

    def __init__(self, model):
        self.model, self.calls, self.forward = model, [], model.forward

    def __enter__(self):
        def logged(*args, **kwargs):
            if not args:  # SD3 and FLUX pipelines name the latent: kept positional, as PixArt's pass it
                args = (kwargs.pop("hidden_states"),)
            self.calls.append((args, kwargs))
            return self.forward(*args, **kwargs)

        self.model.forward = logged
        return self

    def __exit__(self, *exc):
        del self.model.forward  # the class's forward again

    def replay(self) -> float:
        """Seconds the bare denoiser takes for the logged calls."""
        t = time.perf_counter()
        with torch.no_grad():
            for args, kwargs in self.calls:
                self.forward(*args, **kwargs)
        return time.perf_counter() - t


def bench(name: str, repeats: int = 3, full_size: bool = False, steps: int = STEPS, best_sizes=(8, 16, 32, 64)) -> dict:
    if full_size:  # the real architecture with random weights (bfloat16): 1 prompt, 2 steps
        from loco_lib.architectures import random_pipeline

        pipe, orig, targ, steps = random_pipeline(name), ORIG[:1], TARG[:1], 2
    else:
        pipe, orig, targ = load(name, progress=False), ORIG, TARG
    model = denoiser(pipe)
    n = len(cross_attention_layers(pipe))
    sets = [[]] + windows(n, M) + [list(range(n))]
    generate(pipe, orig[0], steps=2, progress=False)  # PixArt's pipeline fails at 1 step with a DPM-Solver scheduler
    kw = dict(seeds=SEED, steps=steps, output_type="np", progress=False)
    naive_walls, engine_walls, replay_walls, bests = [], [], [], []
    for _ in range(repeats):
        naive = {}
        with CallLog(model) as naive_log:
            t = time.perf_counter()
            for layers in sets:
                out = generate(pipe, orig, **kw) if not layers else generate(pipe, orig, alt_prompts=targ, layers=layers, **kw)
                for i, img in enumerate(out.images):
                    naive[Job(i, tuple(layers), SEED)] = img
            naive_walls.append(time.perf_counter() - t)
        with CallLog(model) as log:
            t = time.perf_counter()
            res = run_sweep(pipe, orig, targ, sets, [SEED], steps=steps, keep_arrays=True, progress=False)
            engine_walls.append(time.perf_counter() - t)
        replay_walls.append(log.replay())
        largest = max(a[0].shape[0] for a, _ in log.calls)
        bests.append(denoiser_best(log, sorted({b for b in best_sizes if b < largest} | {largest})))
    naive_wall, engine_wall, replay_wall = min(naive_walls), min(engine_walls), min(replay_walls)
    rate, at = max(bests)
    diff = max(float(np.abs(res.arrays[j] - naive[j]).max()) for j in naive)
    rows, calls = res.counter["rows"], res.counter["calls"]
    # ratios within one repeat (measured minutes apart at most), their median over the repeats
    med = lambda xs: float(np.median(xs))  # noqa: E731
    ratio = med([a / b for a, b in zip(naive_walls, engine_walls)])
    share = med([a / b for a, b in zip(replay_walls, engine_walls)])
    fraction = med([rows / e / r for e, (r, _) in zip(engine_walls, bests)])
    out = {"model": name + (" (full size, random, bf16)" if full_size else ""), "blocks": n, "layer sets": len(sets),
           "images": len(naive), "steps": steps, "best sizes": sorted({b for b in best_sizes if b < largest} | {largest}),
           "threads": torch.get_num_threads(), "repeats": repeats, "naive s": naive_wall, "engine s": engine_wall,
           "wall ratio": ratio, "max abs diff": diff, "engine rows": rows, "engine calls": calls,
           "naive rows": sum(a[0].shape[0] for a, _ in naive_log.calls), "naive calls": len(naive_log.calls),
           "largest call": largest, "replay s": replay_wall, "engine share": share,
           "engine rows/s": rows / engine_wall, "denoiser best rows/s": rate, "at batch": at,
           "fraction of denoiser": fraction,
           "fraction, fastest runs": rows / engine_wall / rate, "engine share, fastest runs": replay_wall / engine_wall,
           "per repeat": {"naive s": naive_walls, "engine s": engine_walls, "replay s": replay_walls,
                          "best rows/s": [r for r, _ in bests]}}
    print(f"{out['model']}: {len(naive)} images ({len(sets)} layer sets x {len(orig)} prompts), {n} blocks, {steps} steps, "
          f"{out['threads']} threads; times: fastest of {repeats} repeats, ratios: median of the repeats' own")
    print(f"  naive {naive_wall:.2f} s, engine {engine_wall:.2f} s: wall ratio {out['wall ratio']:.2f}; "
          f"max abs pixel difference {diff:.2e}")
    print(f"  naive {out['naive rows']} denoiser rows in {out['naive calls']} calls")
    print(f"  engine {rows} denoiser rows in {calls} calls (largest {largest}): the bare denoiser needs {replay_wall:.2f} s "
          f"for them: engine share {out['engine share']:.2f}")
    print(f"  engine {out['engine rows/s']:.1f} rows/s; denoiser alone {rate:.1f} rows/s at batch {at} (best of all): "
          f"fraction {out['fraction of denoiser']:.2f}")
    print(f"  fastest runs only: engine share {out['engine share, fastest runs']:.2f}, "
          f"fraction {out['fraction, fastest runs']:.2f}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=["tiny-pixart", "toy-dit"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--full-size", nargs="*", default=[], metavar="MODEL",
                    help="also these real architectures with random weights in bfloat16 (1 prompt, 2 steps)")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"sampling steps (default {STEPS})")
    ap.add_argument("--best-sizes", default="8,16,32,64",
                    help="the call sizes of the denoiser's best besides the engine's largest call (default 8,16,32,64; "
                         "fewer on twins with long texts, whose every pass replays all the engine's rows)")
    args = ap.parse_args(argv)
    sizes = tuple(int(b) for b in args.best_sizes.split(",") if b.strip())
    import loco_lib.organism  # noqa: F401 (registers toy-dit)

    results = []
    for m, full in [(m, False) for m in args.models] + [(m, True) for m in args.full_size]:
        results.append(bench(m, args.repeats, full_size=full, steps=args.steps, best_sizes=sizes))
        if args.json:  # after each model: a long run stopped later keeps what it measured
            with open(args.json, "w") as fh:
                json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
