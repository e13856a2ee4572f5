"""Every method on the full-size architectures with random weights, at 64 px for 2 steps: one LocoGen
window, one LocoEdit (computed, applied, reverted), one text-encoder trace, neuron ranking; the
time and the peak memory of each, each method in a fresh process so that the peaks do not mix.

    python benchmarks/full_size.py [--models sd15,sdxl] [--out benchmarks/results/full_size-cpu.json]
    python benchmarks/full_size.py --models pixart-alpha,sana --out benchmarks/results/full_size_dit-cpu.json
    python benchmarks/full_size.py --models sd3 --out benchmarks/results/full_size_sd3-cpu.json

The record holds parameter counts (so the half-precision weight memory is exact: 2 bytes per
parameter) and the CPU peaks measured here (64 px; the UNets in float32, the DiTs in bfloat16, as
``random_pipeline`` builds them: PixArt's T5-XXL is 19 GB in float32); tests/test_full_size.py runs
the same steps (`make test-slow`). About 15 GB of memory for SD-XL. SD3-Medium's LocoEdit and neurons
record their rows along runs of the same 2 steps at 64 px.
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
DTYPES = {m: "bfloat16" for m in ("pixart-alpha", "pixart-alpha-512", "pixart-sigma", "sana", "sana-600m", "sd3", "sd35-medium",
                                  "sd35-large")}  # random_pipeline's
RUNS = dict(steps=STEPS, size=SIZE)  # a joint-attention model's rows along runs (LocoEdit, neurons): the runs measured here


def style_window(model: str, pipe) -> list[int]:
    """The paper's style window of a UNet model (Sec. 5.2); for a DiT (no paper window) loco's
    choice: the two middle blocks."""
    from loco_lib.architectures import architectures, arch_key
    from loco_lib.layers import cross_attention_layers
    from loco_lib.paper import paper_window

    if "unet" in architectures()[arch_key(model)]:
        return paper_window(model, "style")
    n = len(cross_attention_layers(pipe))
    return [n // 2 - 1, n // 2]


def run_method(model: str, method: str, pipe=None) -> dict:
    """Run ``method`` once on the random full-size pipeline of ``model`` (built here unless given);
    returns seconds and what the run checked."""
    import numpy as np

    import loco_lib
    from loco_lib.architectures import random_pipeline
    from loco_lib.clip_score import ClipScorer
    from loco_lib.families.registry import denoiser

    t0 = time.perf_counter()
    pipe = random_pipeline(model) if pipe is None else pipe
    out = {"build_seconds": time.perf_counter() - t0,
           "parameters": {n: sum(p.numel() for p in c.parameters()) for n, c in pipe.components.items()
                          if isinstance(c, torch.nn.Module)}}
    window = style_window(model, pipe)
    t0 = time.perf_counter()
    if method == "locogen":
        res = loco_lib.generate(pipe, PROMPT, alt_prompts=TARGET, layers=window, seeds=0, steps=STEPS, size=SIZE,
                                progress=False)
        out["image"] = list(np.asarray(res.images[0]).shape)
    elif method == "locoedit":
        from loco_lib.edit_file import weights_checksum
        from loco_lib.locoedit import compute_edit

        clean = weights_checksum(denoiser(pipe))
        edit = compute_edit(pipe, window, [PROMPT, "a tree in the style of van gogh"], ["a painting", "a painting"],
                            subjects=SUBJECT, runs=RUNS)
        edit.apply(pipe)
        img = loco_lib.generate(pipe, PROMPT, seeds=0, steps=STEPS, size=SIZE, progress=False).images[0]
        edit.revert(pipe)
        out.update(matrices=len(edit.weights), image=list(np.asarray(img).shape),
                   restored=weights_checksum(denoiser(pipe)) == clean)
    elif method == "trace":
        from loco_lib.trace import trace

        res = trace(pipe, [PROMPT], SUBJECT, where="text", sets=[[0]], seeds=[0], steps=STEPS, size=SIZE,
                    scorer=ClipScorer.tiny(), progress=False)
        out["runs"] = len(res.scores)
    elif method == "neurons":
        from loco_lib.neurons import rank_neurons

        r = rank_neurons(pipe, window, [PROMPT, "a tree in the style of van gogh", "a cat in the style of van gogh"],
                         ["a house", "a tree", "a cat"], SUBJECT, None, runs=RUNS)
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
    models = args.models.split(",")
    dtypes = {DTYPES.get(m, "float32") for m in models}
    if len(dtypes) > 1:
        raise SystemExit("one record holds one dtype: measure the UNets (float32) and the DiTs (bfloat16) apart")
    record = {"size": SIZE, "steps": STEPS, "dtype": dtypes.pop(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d"), "results": {}}
    for model in models:
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
