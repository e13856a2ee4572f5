"""Causal tracing: loco's batched trace against ROME's loop of one run per state, on the CPU.

For each model (``toy``, ``tiny-sd15`` by default) and each place (UNet, text encoder): one prompt,
one seed, every state restored alone, the model's default steps (toy 15; the twins use 10 here),
no cache. Both ways give the same images (max abs difference printed, <= 1e-5 expected); the UNet
rows and calls come from the trace's own counter. Ends each line with ``rows ratio``, ``wall ratio``
(loop / batched).

    python benchmarks/trace_batched.py [--models toy tiny-sd15] [--threads 2]
"""
import argparse
import time

import numpy as np
import torch

from loco_lib import load, trace

CASES = {"toy": ("a red circle in the style of van gogh", "van gogh", None),
         "toy-t5": ("a red circle in the style of van gogh", "van gogh", None)}
DEFAULT = ("a photo of a cat in the style of van gogh", "cat", 10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["toy", "tiny-sd15"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        pipe = load(name, device="cpu", progress=False)
        prompt, subject, steps = CASES.get(name, DEFAULT)
        for where in ("unet", "text"):
            out = {}
            for batched in (True, False):
                t = time.perf_counter()
                r = trace.trace(pipe, prompt, subject, where=where, steps=steps, batched=batched, progress=False,
                                keep_arrays=True)
                out[batched] = (r, time.perf_counter() - t)
            (a, ta), (b, tb) = out[True], out[False]
            diff = max(float(np.abs(a.arrays[k] - b.arrays[k]).max()) for k in a.arrays)
            print(f"{name:10s} {where:5s} states {len(a.states):3d} | batched {ta:6.1f} s, {a.counter['rows']:5d} rows, "
                  f"{a.counter['calls']:4d} calls | loop {tb:6.1f} s, {b.counter['rows']:5d} rows, {b.counter['calls']:4d} calls "
                  f"| max diff {diff:.1e} | rows ratio {b.counter['rows'] / a.counter['rows']:.2f}, wall ratio {tb / ta:.2f}")


if __name__ == "__main__":
    main()
