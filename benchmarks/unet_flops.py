"""The time of one full-size UNet call at each model's own resolution on this CPU, beside its counted
FLOPs: does the time follow the FLOPs from one architecture to the next (the assumption behind the
GPU estimate of ``loco reproduce --dry-run``, :mod:`loco_lib.budget`)?

    python benchmarks/unet_flops.py [--models sd15,sd21,sdxl,deepfloyd-if] [--out benchmarks/results/unet_flops-cpu.json]

Each model runs in a fresh process: its UNet with seeded random weights (float32), one call on one
row (the conditional branch of one image) at the model's resolution, timed ``--repeats`` times after
one untimed call. The FLOPs are :func:`loco_lib.budget.denoiser_flops` (meta device; tests/test_budget.py
checks that a real run counts the same). About 11 GB of memory for SD-XL and 18 GB for IF.
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

ROOT = Path(__file__).resolve().parent.parent


def run_model(model: str, repeats: int) -> dict:
    import torch

    from loco_lib import budget
    from loco_lib.architectures import architectures, arch_key, random_unet, unet_config

    size = architectures()[arch_key(model)]["resolution"]
    unet = random_unet(model)
    x, t, kwargs = budget._unet_inputs(unet_config(model), size, 1, device="cpu", dtype=torch.float32)
    t = t + 500
    with torch.no_grad():
        unet(x, t, **kwargs)  # untimed: kernel selection, first allocations
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            unet(x, t, **kwargs)
            times.append(time.perf_counter() - t0)
    return {"size": size, "rows": 1, "flops": budget.denoiser_flops(model),
            "seconds": times, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="sd15,sd21,sdxl,deepfloyd-if")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch

    record = {"dtype": "float32", "torch": torch.__version__, "cpu_count": os.cpu_count(),
              "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"), "results": {}}
    for model in args.models.split(","):
        code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                f"import unet_flops; print(json.dumps(unet_flops.run_model({model!r}, {args.repeats})))")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{model}: failed ({run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode})", flush=True)
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        record["results"][model] = r
        print(f"{model:12s} {r['size']:5d} px  {r['flops'] / 1e12:6.3f} TFLOP  {min(r['seconds']):7.1f} s  "
              f"{r['flops'] / min(r['seconds']) / 1e9:6.1f} GFLOP/s  peak {r['peak_rss_gb']:.1f} GB", flush=True)
    if args.out:
        from loco_lib.files import write_text

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(record, indent=1) + "\n")  # whole or not at all


if __name__ == "__main__":
    main()
