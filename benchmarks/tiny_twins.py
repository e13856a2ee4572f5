"""Time each tiny twin: build (seconds) and one 4-step image (seconds per image), on this machine.

    python benchmarks/tiny_twins.py [--repeats 3]

Prints one line per twin with the median of the repeats (the first build also pays for imports
and the CLIP vocabulary, so it is reported separately).
"""
import argparse
import statistics
import time

import torch

from loco_lib.generate import generate
from loco_lib.models import TINY, build_tiny, load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    t = time.perf_counter()
    build_tiny("tiny-sd15")
    print(f"first build (imports, vocabulary): {time.perf_counter() - t:.2f} s")
    for name in TINY:
        builds, gens = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            pipe = load(name, device="cpu", progress=False)
            builds.append(time.perf_counter() - t)
            generate(pipe, "warm up", steps=1, progress=False)
            out = generate(pipe, "a house in the style of van gogh", steps=4, seeds=0, progress=False)
            gens.append(out.seconds_per_image)
        print(f"{name:10s} build {statistics.median(builds):.3f} s   4-step image {statistics.median(gens):.3f} s"
              f"   ({out.images[0].size[0]} px)")


if __name__ == "__main__":
    main()
