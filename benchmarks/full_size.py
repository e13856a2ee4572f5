"""Every method on the full-size architectures with random weights, at 64 px for 2 steps: one LocoGen
window, one LocoEdit (computed, applied, reverted), one text-encoder trace, neuron ranking; the
time and the peak memory of each, each method in a fresh process so that the peaks do not mix.

    python benchmarks/full_size.py [--models sd15,sdxl] [--out benchmarks/results/full_size-cpu.json]

The record holds parameter counts (so the half-precision weight memory is exact: 2 bytes per
parameter) and the CPU peaks measured here (float32, 64 px); tests/test_full_size.py runs the same
steps (`make test-slow`). About 15 GB of memory for SD-XL.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

PROMPT, TARGET, SUBJECT = "a house in the style of van gogh", "a house in the style of a painting", "van gogh"
METHODS = ("build", "locogen", "locoedit", "trace", "neurons")
SIZE, STEPS = 64, 2


def run_method(model: str, method: str, pipe=None) -> dict:
    """Run ``method`` once on the random full-size pipeline of ``model`` (built here unless given);
    returns seconds and what the run checked."""
    import numpy as np

    import loco_lib
    from loco_lib.architectures import random_pipeline
    from loco_lib.clip_score import ClipScorer
    from loco_lib.paper import paper_window

    t0 = time.perf_counter()
    pipe = random_pipeline(model) if pipe is None else pipe
    out = {"build_seconds": time.perf_counter() - t0,
           "parameters": {n: sum(p.numel() for p in c.parameters()) for n, c in pipe.components.items()
                          if isinstance(c, torch.nn.Module)}}
    window = paper_window(model, "style")
    t0 = time.perf_counter()
    if method == "locogen":
        res = loco_lib.generate(pipe, PROMPT, alt_prompts=TARGET, layers=window, seeds=0, steps=STEPS, size=SIZE,
                                progress=False)
        out["image"] = list(np.asarray(res.images[0]).shape)
    elif method == "locoedit":
        from loco_lib.edit_file import weights_checksum
        from loco_lib.locoedit import compute_edit

        clean = weights_checksum(pipe.unet)
        edit = compute_edit(pipe, window, [PROMPT, "a tree in the style of van gogh"], ["a painting", "a painting"],
                            subjects=SUBJECT)
        edit.apply(pipe)
        img = loco_lib.generate(pipe, PROMPT, seeds=0, steps=STEPS, size=SIZE, progress=False).images[0]
        edit.revert(pipe)
        out.update(matrices=len(edit.weights), image=list(np.asarray(img).shape),
                   restored=weights_checksum(pipe.unet) == clean)
    elif method == "trace":
        from loco_lib.trace import trace

        res = trace(pipe, [PROMPT], SUBJECT, where="text", sets=[[0]], seeds=[0], steps=STEPS, size=SIZE,
                    scorer=ClipScorer.tiny(), progress=False)
        out["runs"] = len(res.scores)
    elif method == "neurons":
        from loco_lib.neurons import rank_neurons

        r = rank_neurons(pipe, window, [PROMPT, "a tree in the style of van gogh", "a cat in the style of van gogh"],
                         ["a house", "a tree", "a cat"], SUBJECT, None)
        out["ranked"] = len(r.z)
    out["seconds"] = time.perf_counter() - t0
    return out


def measure(model: str, method: str) -> dict:
    """``method`` in a fresh Python process; its result with the process's peak resident memory."""
    code = (f"import json, resource, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import full_size; "
            f"r = full_size.run_method({model!r}, {method!r}); "
            "r['peak_rss_gb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20; print(json.dumps(r))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{model} {method} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="sd15,sdxl")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    record = {"size": SIZE, "steps": STEPS, "dtype": "float32", "torch": torch.__version__, "cpu_count": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d"), "results": {}}
    for model in args.models.split(","):
        for method in METHODS:
            r = measure(model, method)
            record["results"].setdefault(model, {})[method] = r
            print(f"{model:5s} {method:8s} {r['seconds']:7.1f} s  peak {r['peak_rss_gb']:.1f} GB", flush=True)
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
