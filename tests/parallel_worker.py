"""One small LocoGen sweep, causal trace and evaluation on the toy organism, run by tests/test_parallel.py
in one process (``python tests/parallel_worker.py OUT CACHE``) and in two (``torchrun --nproc_per_node 2``).
Every process writes what it computed itself to ``OUT.rank<r>.json``; the first also writes every
image's sha256 and score to ``OUT``."""
import hashlib
import json
import os
import sys
import time

import torch

import loco_lib
from loco_lib import parallel, trace
from loco_lib.clip_score import get_scorer
from loco_lib.evaluate import evaluate
from loco_lib.sweep import run_sweep

torch.set_num_threads(1)
STEPS = 4  # fewer than the organism's 15: what is split does not depend on the steps
out, cache = sys.argv[1], sys.argv[2]
pipe = loco_lib.load("toy", progress=False)
scorer = get_scorer(None, "toy")


def sha(img) -> str:
    return hashlib.sha256(img.tobytes()).hexdigest()[:16]


if int(os.environ.get("RANK", "0")) == 1:
    time.sleep(4)  # the second process starts late, as it may on a busy machine: the shares must not depend on it
sweep = run_sweep(pipe, ["a red circle", "a blue square"], ["a green circle", "a yellow square"],
                  [[], [0, 1], [4, 5], [8, 9], [12, 13]], seeds=[0, 1], scorer=scorer, cache_dir=f"{cache}/sweep",
                  batch_size=3, steps=STEPS, progress=False)
traced = trace.trace(pipe, ["a red circle in the style of monet"], ["red circle"], where="unet", kinds="attention",
                     window=2, seeds=[0, 1], scorer=scorer, cache_dir=f"{cache}/trace", batch_size=4, steps=STEPS,
                     progress=False)
ev = evaluate(pipe, ["a red circle", "a blue square", "a green cross"], seeds=[0, 1], scorer=scorer, batch_size=2,
              steps=STEPS, progress=False)

world = parallel.world()
mine = {"sweep": [str(j) for j in sweep.computed], "trace": [str(r) for r in traced.computed]}
with open(f"{out}.rank{world.index}.json", "w") as f:
    json.dump(mine, f)
if world.main:
    record = {
        "processes": world.count,
        "sweep": {str(j): [sha(img), sweep.scores[j]] for j, img in sweep.images.items()},
        "trace": {str(r): [sha(img), traced.scores[r]] for r, img in traced.images.items()},
        "evaluate": {"images": [sha(img) for img in ev.images], "clip_score": ev.clip_score, "accuracy": ev.accuracy},
    }
    with open(out, "w") as f:
        json.dump(record, f, sort_keys=True)
