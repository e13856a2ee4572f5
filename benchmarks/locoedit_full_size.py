"""LocoEdit's weight update at full size: every K and V projection of a window of the real UNet
(real shapes, random weights: loco_lib.architectures.random_unet), with random rows, so the time is
the closed form alone, writing the new weights included.

    python benchmarks/locoedit_full_size.py [--model sdxl] [--layers 45,46,47] [--prompts 8] [--device cpu] [--fp16]
                                            [--out benchmarks/results/locoedit_full_size-sdxl-cpu.json]

``--out`` writes the timing with the loco commit, torch version, CPU count and date (the LocoEdit
chapter prints the committed record).

It builds the full-size UNet (10 GB for SD-XL in float32), so run it where that fits.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from loco_lib.errors import LocoError
from loco_lib.layers import cross_attention_layers, parse_layers
from loco_lib.locoedit import LAMBDA, closed_form


@dataclass
class EditTiming:
    model: str
    layers: list[int]
    n_prompts: int
    seconds: float  # all closed-form K and V updates (written into the weights), wall time
    per_projection: dict[str, float]  # parameter name -> seconds
    shapes: dict[str, tuple]  # parameter name -> weight shape
    device: str
    dtype: str
    build_seconds: float  # building the random full-size UNet (not part of the edit)


def time_edit_full_size(model: str = "sdxl", layers=None, n_prompts: int = 8, device="cpu", dtype=torch.float32,
                        lam: float = LAMBDA, seed: int = 0) -> EditTiming:
    """Time LocoEdit's weight update on the full-size UNet of ``model`` (real shapes, random
    weights, :func:`loco_lib.architectures.random_unet`).

    ``layers``: default the paper's style window (SD-XL 45, 46, 47). The rows are random
    [n_prompts, kv_dim] matrices (2048-d for SD-XL), so the time is the closed form alone (no text
    encoder): the K and V update of every layer, including writing the new weight into the UNet.
    """
    from loco_lib.architectures import random_unet

    from loco_lib.models import quiet_libraries
    from loco_lib.paper import LOCATIONS, paper_window

    if model not in LOCATIONS and layers is None:
        raise LocoError(f"no default layers for {model!r}: give layers=[...]")

    t0 = time.perf_counter()
    with quiet_libraries():
        unet = random_unet(model, dtype=dtype, device=device)
    build = time.perf_counter() - t0
    all_layers = cross_attention_layers(unet)
    idx = parse_layers(paper_window(model, 'style') if layers is None else layers, len(all_layers))
    gen = torch.Generator("cpu").manual_seed(seed)
    per: dict[str, float] = {}
    shapes: dict[str, tuple] = {}
    total = 0.0
    with torch.no_grad():
        for i in idx:
            layer = all_layers[i]
            xo = torch.randn(n_prompts, layer.kv_dim, generator=gen).to(device, dtype)
            xt = torch.randn(n_prompts, layer.kv_dim, generator=gen).to(device, dtype)
            attn = unet.get_submodule(layer.name)
            for proj in (layer.key, layer.value):
                p = getattr(attn, proj).weight
                sync = torch.cuda.synchronize if p.device.type == "cuda" else (lambda: None)
                sync()
                t = time.perf_counter()
                p.copy_(closed_form(p, xo, xt, lam))
                sync()
                dt = time.perf_counter() - t
                name = f"{layer.name}.{proj}.weight"
                per[name] = dt
                shapes[name] = tuple(p.shape)
                total += dt
    del unet
    return EditTiming(model=model, layers=idx, n_prompts=n_prompts, seconds=total, per_projection=per, shapes=shapes,
                      device=str(device), dtype=str(dtype).replace("torch.", ""), build_seconds=build)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sdxl")
    ap.add_argument("--layers", default=None, help="e.g. 45,46,47 (default: the paper's style window)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--out", default=None, help="write the timing as JSON here")
    args = ap.parse_args()
    t = time_edit_full_size(args.model, args.layers, args.prompts, args.device, torch.float16 if args.fp16 else torch.float32)
    print(f"{t.model}: layers {t.layers}, {t.n_prompts} prompts, {len(t.per_projection)} matrices: {t.seconds:.3f} s "
          f"on {t.device} ({t.dtype}); building the UNet took {t.build_seconds:.1f} s")
    if args.out:
        write_record(t, args.out)


def write_record(t: EditTiming, path) -> None:
    """``t`` as JSON at ``path`` (atomic), with where and when it was measured."""
    import datetime
    import json
    import os
    import platform
    import subprocess
    from pathlib import Path

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    data = {"model": t.model, "layers": t.layers, "n_prompts": t.n_prompts, "matrices": len(t.per_projection),
            "seconds": t.seconds, "per_projection": t.per_projection, "shapes": {k: list(v) for k, v in t.shapes.items()},
            "device": t.device, "dtype": t.dtype, "build_seconds": t.build_seconds,
            "loco_commit": commit, "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "machine": platform.machine(), "date": datetime.date.today().isoformat()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
