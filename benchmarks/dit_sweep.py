"""The LocoGen sweep engine on diffusion transformers (issue 24): against a naive loop of pipeline
calls, and against the denoiser's own batched throughput.

    python benchmarks/dit_sweep.py [MODEL ...] [--repeats R] [--json FILE]   (default: tiny-pixart toy-dit)

For each model: N = 4 style prompts, windows of m = 2 over all its blocks plus the clean and the
fully altered runs, 1 seed, the model's default guidance, 10 steps, on the CPU.

* naive: one ``loco_lib.generate`` call per layer set (the 4 prompts batched in it);
* engine: ``loco_lib.sweep.run_sweep`` (no cache), its denoiser rows counted by the engine;
* replay: the bare transformer (no hooks) called again on the very inputs of every call the
  engine made (same rows, after the engine's row sharing): the time the denoiser alone needs for
  the engine's work. ``engine share`` = replay / engine is the part of the engine's wall time spent
  in the denoiser; the rest is the engine's own (hooks, scheduler, text encoding, VAE decoding);
* best: the transformer alone at batch sizes 1, 2, 4, ... up to the engine's largest call, on
  inputs of the sweep's shapes; ``fraction of denoiser`` = the engine's rows per second over the
  best of these.

Naive, engine, replay and best run ``--repeats`` times in turn (default 3; this machine's speed
drifts by tens of per cent between runs): the times printed are each one's fastest run, the ratios
(wall ratio, engine share, fraction) the median over the repeats of the ratio within each repeat. Prints per model the images' largest difference
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


def denoiser_best(pipe, rows_max: int, reps: int = 3) -> tuple[float, int]:
    """(rows per second, at batch size) of the denoiser alone, best over batch sizes 1, 2, 4, ... up
    to ``rows_max``, each its fastest of ``reps`` calls."""
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


class CallLog:
    """Keeps the inputs of every call of the denoiser (as its ``forward`` gets them, after loco's
    pre-hooks have shared rows), to replay them on the bare model."""

    def __init__(self, model):
        self.model, self.calls, self.forward = model, [], model.forward

    def __enter__(self):
        def logged(*args, **kwargs):
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


def bench(name: str, repeats: int = 3) -> dict:
    pipe = load(name, progress=False)
    model = denoiser(pipe)
    n = len(cross_attention_layers(pipe))
    sets = [[]] + windows(n, M) + [list(range(n))]
    generate(pipe, ORIG[0], steps=2, progress=False)  # PixArt's pipeline fails at 1 step with a DPM-Solver scheduler
    kw = dict(seeds=SEED, steps=STEPS, output_type="np", progress=False)
    naive_walls, engine_walls, replay_walls, bests = [], [], [], []
    for _ in range(repeats):
        naive = {}
        with CallLog(model) as naive_log:
            t = time.perf_counter()
            for layers in sets:
                out = generate(pipe, ORIG, **kw) if not layers else generate(pipe, ORIG, alt_prompts=TARG, layers=layers, **kw)
                for i, img in enumerate(out.images):
                    naive[Job(i, tuple(layers), SEED)] = img
            naive_walls.append(time.perf_counter() - t)
        with CallLog(model) as log:
            t = time.perf_counter()
            res = run_sweep(pipe, ORIG, TARG, sets, [SEED], steps=STEPS, keep_arrays=True, progress=False)
            engine_walls.append(time.perf_counter() - t)
        replay_walls.append(log.replay())
        largest = max(a[0].shape[0] for a, _ in log.calls)
        bests.append(denoiser_best(pipe, largest))
    naive_wall, engine_wall, replay_wall = min(naive_walls), min(engine_walls), min(replay_walls)
    rate, at = max(bests)
    diff = max(float(np.abs(res.arrays[j] - naive[j]).max()) for j in naive)
    rows, calls = res.counter["rows"], res.counter["calls"]
    # ratios within one repeat (measured minutes apart at most), their median over the repeats
    med = lambda xs: float(np.median(xs))  # noqa: E731
    ratio = med([a / b for a, b in zip(naive_walls, engine_walls)])
    share = med([a / b for a, b in zip(replay_walls, engine_walls)])
    fraction = med([rows / e / r for e, (r, _) in zip(engine_walls, bests)])
    out = {"model": name, "blocks": n, "layer sets": len(sets), "images": len(naive), "steps": STEPS,
           "threads": torch.get_num_threads(), "repeats": repeats, "naive s": naive_wall, "engine s": engine_wall,
           "wall ratio": ratio, "max abs diff": diff, "engine rows": rows, "engine calls": calls,
           "naive rows": sum(a[0].shape[0] for a, _ in naive_log.calls), "naive calls": len(naive_log.calls),
           "largest call": largest, "replay s": replay_wall, "engine share": share,
           "engine rows/s": rows / engine_wall, "denoiser best rows/s": rate, "at batch": at,
           "fraction of denoiser": fraction,
           "per repeat": {"naive s": naive_walls, "engine s": engine_walls, "replay s": replay_walls,
                          "best rows/s": [r for r, _ in bests]}}
    print(f"{name}: {len(naive)} images ({len(sets)} layer sets x {len(ORIG)} prompts), {n} blocks, {STEPS} steps, "
          f"{out['threads']} threads; times: fastest of {repeats} repeats, ratios: median of the repeats' own")
    print(f"  naive {naive_wall:.2f} s, engine {engine_wall:.2f} s: wall ratio {out['wall ratio']:.2f}; "
          f"max abs pixel difference {diff:.2e}")
    print(f"  naive {out['naive rows']} denoiser rows in {out['naive calls']} calls")
    print(f"  engine {rows} denoiser rows in {calls} calls (largest {largest}): the bare denoiser needs {replay_wall:.2f} s "
          f"for them: engine share {out['engine share']:.2f}")
    print(f"  engine {out['engine rows/s']:.1f} rows/s; denoiser alone {rate:.1f} rows/s at batch {at} (best of all): "
          f"fraction {out['fraction of denoiser']:.2f}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=["tiny-pixart", "toy-dit"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import loco_lib.organism  # noqa: F401 (registers toy-dit)

    results = [bench(m, args.repeats) for m in args.models]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
