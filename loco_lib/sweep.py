"""The sweep engine behind LocoGen (paper Algorithm 1): many altered generations, batched, cached.

A LocoGen search generates, for every prompt pair (T_i, T'_i) and seed, one image per window of
layers, plus the clean image (no layer altered) and the fully altered one (every layer). The
engine

* encodes every prompt once and reuses the embeddings;
* puts the windows of one prompt and seed side by side in one pipeline call, each sample with its
  own layer set (per-sample altered inputs), so one UNet call serves many windows;
* evaluates bitwise-identical UNet rows once. At the first step every job with the same seed
  starts from the same noise z_T, and the unconditional input (the empty prompt) does not depend on
  the prompt, so all their unconditional rows are identical and computed once per seed.
  After the first step each window's latent has moved, and the unconditional prediction
  eps(z_t, t) must be recomputed per window: the paper's altered model combines
  eps(z_t, c, c', t) with eps(z_t, t) *on the same z_t* (Sec. 5.1.1). Reusing one unconditional
  branch for all windows would change the images (``tests/test_sweep.py`` shows by how much);
* adapts the batch size to memory (halves it on an out-of-memory error and goes on);
* caches every finished image (PNG) and its score (JSON) on disk, keyed by model, prompts, layers,
  seed, steps, guidance, size and batch size (batch composition moves images by float rounding), so
  an interrupted sweep (a Colab disconnect) resumes and recomputes nothing that was finished. A
  damaged entry (a truncated PNG or JSON) is reported in a warning and computed again.

Images equal those of a naive loop of one pipeline call per window up to float rounding (batch
composition changes summation order; <= 1e-5 on CPU in fp32, tested).
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from . import parallel, runlog, settings
from .errors import LocoError, LocoWarning
from .files import replaced, write_json
from .generate import progress_bars, sample_batch
from .families.registry import denoiser
from .models import pipeline_family, progress_default
from .text import encode

CACHE_FORMAT = 2  # 2: the batch size is part of the key


@dataclass(frozen=True)
class Job:
    prompt_index: int
    layers: tuple  # the altered layer set ( () = clean )
    seed: int


@dataclass
class SweepResult:
    images: dict  # Job -> PIL image
    scores: dict  # Job -> float (when a scorer was given)
    arrays: dict = field(default_factory=dict)  # Job -> float array in [0, 1], for freshly computed jobs
    computed: list = field(default_factory=list)  # jobs this process generated now (the rest: the cache, other processes)
    counter: dict = field(default_factory=dict)  # UNet calls / rows evaluated in this run
    seconds: float = 0.0


def model_id(pipe) -> str:
    """A stable identifier of the model for cache keys (short name, hub id or folder)."""
    name = getattr(pipe, "loco_name", None)
    if name:
        return str(name)
    return str(getattr(pipe, "name_or_path", None) or denoiser(pipe).config.get("_name_or_path", "") or type(pipe).__name__)


def _key(meta: dict) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:24]


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class SweepCache:
    """A folder of finished jobs: ``<key>.png`` and ``<key>.json`` (settings and scores)."""

    def __init__(self, folder):
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LocoError(f"cannot use cache folder {str(folder)!r}: {exc.strerror or exc}") from None

    def has(self, key: str) -> bool:
        return self.folder is not None and (self.folder / f"{key}.png").exists() and (self.folder / f"{key}.json").exists()

    def load(self, key: str):
        """``(image, meta)`` of a finished entry; None when it is missing or damaged (then a
        one-line warning names the damaged file, and the caller computes the entry again)."""
        if not self.has(key):
            return None
        path = self.folder / f"{key}.png"
        try:
            img = Image.open(path)
            img.load()
            path = self.folder / f"{key}.json"
            meta = json.loads(path.read_text())
            scores = meta.get("scores", {}) if isinstance(meta, dict) else None
            if not isinstance(scores, dict) or not all(isinstance(v, dict) for v in scores.values()):
                raise ValueError("not a cache record")
        except (OSError, ValueError, SyntaxError) as exc:
            warnings.warn(f"damaged cache entry {str(path)!r} ({type(exc).__name__}): computing it again", LocoWarning,
                          stacklevel=3)
            return None
        return img, meta

    def save(self, key: str, image: Image.Image, meta: dict) -> None:
        if self.folder is None:
            return
        # whole files only, the image first: an entry counts once both are in place
        with replaced(self.folder / f"{key}.json") as tmp_json, replaced(self.folder / f"{key}.png") as tmp_png:
            image.save(tmp_png, format="PNG")
            tmp_json.write_text(json.dumps(meta, sort_keys=True))

    def update_meta(self, key: str, meta: dict) -> None:
        if self.folder is None:
            return
        write_json(self.folder / f"{key}.json", meta, sort_keys=True)


def run_sweep(
    pipe,
    originals,
    targets,
    layer_sets,
    seeds=(0,),
    *,
    steps: int | None = None,
    guidance: float | None = None,
    size: int | None = None,
    swap_text_paths: bool = False,
    negative_prompt: str = "",
    scorer=None,
    score_against: str = "original",
    cache_dir=None,
    batch_size: int | None = None,
    share_identical_rows: bool = True,
    progress: bool | None = None,
    keep_arrays: bool = False,
) -> SweepResult:
    """Generate prompt i with layer set L altered to target i, for every i, L and seed.

    ``layer_sets``: a list of layer-index lists (``[]`` = clean run). ``scorer``: a
    :class:`~loco_lib.clip_score.ClipScorer`; each image is scored against its original prompt
    (``score_against="original"``) or its target (``"target"``). ``batch_size``: samples per
    pipeline call (default 32 on CPU, 16 on GPU; halved automatically on out-of-memory); the
    requested size is part of the cache key.
    """
    pipeline_family(pipe)  # refuses unsupported pipelines
    originals = settings.prompts(pipe, originals, "original prompt")
    targets = settings.prompts(pipe, targets, "target prompt")
    if len(originals) != len(targets):
        raise LocoError(f"{len(originals)} original prompts but {len(targets)} targets")
    if score_against not in ("original", "target"):
        raise LocoError(f"score_against must be 'original' or 'target', not {score_against!r}")
    steps = settings.steps(pipe, steps)
    guidance = settings.guidance(pipe, guidance)
    size = settings.size(size)
    seeds = settings.seeds(seeds)
    from .layers import cross_attention_layers, format_layers, parse_layers

    n_layers = len(cross_attention_layers(pipe))
    layer_sets = [tuple(parse_layers(list(ls), n_layers)) for ls in layer_sets]
    progress = progress_default() if progress is None else progress
    on_gpu = str(denoiser(pipe).device).startswith("cuda")
    batch = settings.batch_size(batch_size, 16 if on_gpu else 32)

    cache = SweepCache(cache_dir)
    scorer_id = getattr(scorer, "name", None) or (type(scorer).__name__ if scorer is not None else None)
    base = {"format": CACHE_FORMAT, "model": model_id(pipe), "steps": steps, "guidance": guidance, "size": size,
            "swap_text_paths": swap_text_paths, "negative": negative_prompt, "scheduler": type(pipe.scheduler).__name__,
            "batch_size": batch}
    if denoiser(pipe).dtype != torch.float32:  # half precision gives other images; float32 keys stay as they were
        base["dtype"] = str(denoiser(pipe).dtype).replace("torch.", "")

    def meta_of(job: Job) -> dict:
        return {**base, "original": originals[job.prompt_index], "target": targets[job.prompt_index],
                "layers": list(job.layers), "seed": job.seed}

    # jobs ordered so that the windows of one prompt and seed sit next to each other in a batch
    jobs = [Job(i, ls, s) for i in range(len(originals)) for s in seeds for ls in layer_sets]
    keys = {job: _key(meta_of(job)) for job in jobs}
    result = SweepResult(images={}, scores={})
    pending = []
    for job in jobs:
        entry = cache.load(keys[job])
        if entry is not None:
            img, meta = entry
            result.images[job] = img
            if scorer_id is not None and scorer_id in meta.get("scores", {}).get(score_against, {}):
                result.scores[job] = meta["scores"][score_against][scorer_id]
        else:
            pending.append(job)

    # several processes (accelerate launch): each takes every n-th batch of the pending jobs, in the batches
    # one process would make (so the images are the same), and saves what it finished; then all gather.
    # No process writes before every one has read the cache: they all deal out the same pending list.
    world = parallel.world()
    parallel.barrier()
    progress = progress and world.main
    start = time.perf_counter()
    if pending:
        cond_all = encode(pipe, originals, negative_prompt)
        alt_all = encode(pipe, targets, negative_prompt)
        mine = [pending[i] for idx in world.share(parallel.batches(len(pending), batch)) for i in idx]
        bar = tqdm(total=len(mine), desc="sweep (images)", disable=not progress, leave=False)
        with progress_bars(pipe, False):
            i = 0
            while i < len(mine):
                chunk = mine[i : i + batch]
                idx = [j.prompt_index for j in chunk]
                try:
                    arrays = sample_batch(
                        pipe, cond_all.select(idx), [j.seed for j in chunk], steps=steps, guidance=guidance, size=size,
                        alt=alt_all.select(idx), layers=[list(j.layers) for j in chunk],
                        swap_text_paths=swap_text_paths, output_type="np",
                        share_identical_rows=share_identical_rows, counter=result.counter,
                    )
                except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                    if not _is_oom(exc) or len(chunk) == 1:
                        raise
                    batch = max(1, len(chunk) // 2)  # adapt to memory and retry the same jobs
                    if on_gpu:
                        torch.cuda.empty_cache()
                    bar.set_postfix(batch=batch)
                    continue
                for job, arr in zip(chunk, arrays):
                    img = Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8))
                    result.images[job] = img
                    if keep_arrays:
                        result.arrays[job] = arr
                    cache.save(keys[job], img, {**meta_of(job), "scores": {}})
                    result.computed.append(job)
                bar.update(len(chunk))
                i += len(chunk)
        bar.close()
        if world.count > 1:
            for job, img, arr in parallel.gather([(j, result.images[j], result.arrays.get(j)) for j in result.computed]):
                result.images[job] = img
                if keep_arrays:
                    result.arrays[job] = arr
    result.seconds = time.perf_counter() - start

    if scorer is not None:
        todo = [job for job in jobs if job not in result.scores]
        texts = originals if score_against == "original" else targets
        scored = []
        for k in world.share(range(0, len(todo), 64)):
            part = todo[k : k + 64]
            vals = scorer.score([result.images[j] for j in part], [texts[j.prompt_index] for j in part]).tolist()
            for job, v in zip(part, vals):
                result.scores[job] = float(v)
                scored.append((job, float(v)))
                if cache.folder is not None:
                    entry = cache.load(keys[job])
                    meta = entry[1] if entry is not None else {**meta_of(job), "scores": {}}
                    meta.setdefault("scores", {}).setdefault(score_against, {})[scorer_id] = float(v)
                    cache.update_meta(keys[job], meta)
        if world.count > 1:
            result.scores.update(parallel.gather(scored))
        if runlog.destination() is not None and world.main:
            revision, metric_rev = runlog.model_revision(pipe), runlog.metric_revision(scorer)
            runlog.write({"source": f"sweep (vs {score_against})", "model": model_id(pipe), "model_revision": revision,
                          "prompt": originals[j.prompt_index], "target": targets[j.prompt_index], "seed": j.seed,
                          "layers_or_edit": f"layers {format_layers(list(j.layers))}" if j.layers else "clean",
                          "metric": scorer_id, "metric_revision": metric_rev, "score": result.scores[j],
                          "image_sha256": runlog.image_sha256(result.images[j])} for j in jobs)
    return result
