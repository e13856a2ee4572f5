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

The cache, the batches that halve on out-of-memory, the processes' shares and the scores are the
job engine's (:mod:`loco_lib.jobs`), shared with causal tracing; this module says what a LocoGen
job is and how a batch of them is generated.

Images equal those of a naive loop of one pipeline call per window up to float rounding (batch
composition changes summation order; <= 1e-5 on CPU in fp32, tested).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from . import parallel, runlog, settings
from .errors import LocoError
from .generate import progress_bars, sample_batch
from .jobs import Jobs, SweepCache, is_oom as _is_oom, key as _key  # noqa: F401 (SweepCache, _is_oom, _key: their home was here)
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
    joint_text: str = "attention",
) -> SweepResult:
    """Generate prompt i with layer set L altered to target i, for every i, L and seed.

    ``layer_sets``: a list of layer-index lists (``[]`` = clean run). ``scorer``: a
    :class:`~loco_lib.clip_score.ClipScorer`; each image is scored against its original prompt
    (``score_against="original"``) or its target (``"target"``). ``batch_size``: samples per
    pipeline call (default 32 on CPU, 16 on GPU; halved automatically on out-of-memory); the
    requested size is part of the cache key. ``joint_text``: what an altered block of a joint-attention
    transformer takes from T''s run (:func:`loco_lib.generate.generate`).
    """
    pipeline_family(pipe)  # refuses unsupported pipelines
    from .altered import check_joint_text
    from .families.registry import denoiser_family

    check_joint_text(denoiser_family(pipe), joint_text)
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

    scorer_id = getattr(scorer, "name", None) or (type(scorer).__name__ if scorer is not None else None)
    base = {"format": CACHE_FORMAT, "model": model_id(pipe), "steps": steps, "guidance": guidance, "size": size,
            "swap_text_paths": swap_text_paths, "negative": negative_prompt, "scheduler": type(pipe.scheduler).__name__,
            "batch_size": batch}
    if joint_text != "attention":  # the default leaves the keys as they were
        base["joint_text"] = joint_text
    if denoiser(pipe).dtype != torch.float32:  # half precision gives other images; float32 keys stay as they were
        base["dtype"] = str(denoiser(pipe).dtype).replace("torch.", "")

    def meta_of(job: Job) -> dict:
        return {**base, "original": originals[job.prompt_index], "target": targets[job.prompt_index],
                "layers": list(job.layers), "seed": job.seed}

    # jobs ordered so that the windows of one prompt and seed sit next to each other in a batch
    jobs = [Job(i, ls, s) for i in range(len(originals)) for s in seeds for ls in layer_sets]
    engine = Jobs(cache_dir, {job: meta_of(job) for job in jobs}, slot=score_against)
    result = SweepResult(images=engine.images, scores=engine.scores, arrays=engine.arrays, computed=engine.computed)
    pending = engine.read(jobs, scorer_id)

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

        def compute(chunk):
            idx = [j.prompt_index for j in chunk]
            arrays = sample_batch(
                pipe, cond_all.select(idx), [j.seed for j in chunk], steps=steps, guidance=guidance, size=size,
                alt=alt_all.select(idx), layers=[list(j.layers) for j in chunk], swap_text_paths=swap_text_paths,
                output_type="np", share_identical_rows=share_identical_rows, counter=result.counter,
                joint_text=joint_text,
            )
            return list(zip(chunk, arrays))

        mine = [pending[i] for idx in world.share(parallel.batches(len(pending), batch)) for i in idx]
        bar = tqdm(total=len(mine), desc="sweep (images)", disable=not progress, leave=False)
        with progress_bars(pipe, False):
            engine.run(mine, batch, compute, on_gpu=on_gpu, bar=bar, keep_arrays=keep_arrays)
        bar.close()
        engine.gather(keep_arrays)
    result.seconds = time.perf_counter() - start

    if scorer is not None:
        texts = originals if score_against == "original" else targets
        engine.score(jobs, scorer, scorer_id, lambda job: texts[job.prompt_index])
        if runlog.destination() is not None and world.main:
            revision, metric_rev = runlog.model_revision(pipe), runlog.metric_revision(scorer)
            runlog.write({"source": f"sweep (vs {score_against})", "model": model_id(pipe), "model_revision": revision,
                          "prompt": originals[j.prompt_index], "target": targets[j.prompt_index], "seed": j.seed,
                          "layers_or_edit": f"layers {format_layers(list(j.layers))}" if j.layers else "clean",
                          "metric": scorer_id, "metric_revision": metric_rev, "score": result.scores[j],
                          "image_sha256": runlog.image_sha256(result.images[j])} for j in jobs)
    return result
