"""Generation with classifier-free guidance, seeds and altered inputs (paper Eq. 1 and Sec. 5.1.1).

Seeds drive CPU generators, so a seed means the same initial noise on every device (a CPU run in CI
and a GPU run in Colab start from the same z_T). One pipeline call per batch; the pipeline's own
tqdm bar shows the denoising steps and an outer bar the batches.
"""
from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from . import parallel, settings
from .families import registry as families
from .altered import _is_per_sample
from .errors import LocoError
from .models import progress_default
from .settings import DEFAULTS, defaults, pipeline_family  # noqa: F401 (DEFAULTS, defaults: their home was here)
from .text import encode

@dataclass
class Generation:
    images: list  # PIL images (or arrays with output_type="np")
    prompts: list[str]
    seeds: list[int]
    seconds: float
    settings: dict = field(default_factory=dict)

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(1, len(self.images))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def generate(
    pipe,
    prompts=None,
    *,
    prompt=None,
    alt_prompts=None,
    layers=None,
    seeds=0,
    steps: int | None = None,
    guidance: float | None = None,
    size: int | None = None,
    swap_text_paths: bool = False,
    negative_prompt: str = "",
    batch_size: int | None = 8,
    output_type: str = "pil",
    progress: bool | None = None,
    joint_text: str = "attention",
) -> Generation:
    """Generate one image per prompt; optionally alter ``layers`` to ``alt_prompts``.

    ``prompt`` is another name for ``prompts`` (diffusers' spelling). ``seeds``: one int for all
    prompts (same noise for each) or one per prompt. ``layers``: one layer spec for all samples or
    one per sample (see :func:`loco_lib.altered.altered_inputs`). ``joint_text``: in a joint-attention
    transformer, what an altered block takes from T''s run (``"attention"``: its attention's text
    input; ``"stream"``: the text stream entering it; :mod:`loco_lib.families.sd3`).
    """
    family = pipeline_family(pipe)
    progress = progress_default() if progress is None else progress
    if prompts is not None and prompt is not None:
        raise LocoError("give the prompts once: prompts=... or prompt=..., not both")
    prompts = settings.prompts(pipe, prompt if prompts is None else prompts)
    n = len(prompts)
    seeds = settings.seeds_per_prompt(seeds, n)
    steps = settings.steps(pipe, steps)
    guidance = settings.guidance(pipe, guidance)
    batch_size = settings.batch_size(batch_size, 8)
    size = settings.size(size)
    if hasattr(layers, "tolist"):  # numpy / torch indices
        layers = layers.tolist()
    altering = alt_prompts is not None and (swap_text_paths or (layers is not None and layers != [] and layers != ""))
    if altering:
        alt_prompts = settings.prompts(pipe, alt_prompts, "alt prompt")
        if len(alt_prompts) == 1 and n > 1:
            alt_prompts = alt_prompts * n
        if len(alt_prompts) != n:
            raise LocoError(f"{len(alt_prompts)} alt prompts given for {n} prompts")
    elif layers not in (None, [], "") and alt_prompts is None:
        raise LocoError("layers to alter were given but no alt prompt")
    elif alt_prompts is not None and layers is None:
        raise LocoError("an alt prompt was given but no layers to alter (layers=[8, 9], 'all', ...)")
    from .altered import check_joint_text

    check_joint_text(families.denoiser_family(pipe), joint_text)
    per_sample = _is_per_sample(layers)
    if per_sample and len(layers) != n:
        raise LocoError(f"{len(layers)} layer sets given for {n} prompts")

    cond = encode(pipe, prompts, negative_prompt)
    alt = encode(pipe, alt_prompts, negative_prompt) if altering else None

    # several processes (accelerate launch): each makes its share of the batches, then all gather them
    world = parallel.world()
    chunks = world.share(enumerate(parallel.batches(n, batch_size)))
    progress = progress and world.main
    done: list = []
    start = time.perf_counter()
    with progress_bars(pipe, progress):
        for k, idx in tqdm(chunks, desc="batches", disable=not progress or len(chunks) == 1, leave=False):
            chunk_layers = ([layers[i] for i in idx] if per_sample else layers) if altering else None
            done.append((k, sample_batch(
                pipe, cond.select(idx), [seeds[i] for i in idx], steps=steps, guidance=guidance, size=size,
                alt=alt.select(idx) if altering else None, layers=chunk_layers, swap_text_paths=swap_text_paths,
                output_type=output_type, joint_text=joint_text,
            )))
    images = [im for _, part in sorted(parallel.gather(done), key=lambda kv: kv[0]) for im in part]
    seconds = time.perf_counter() - start
    used = {"steps": steps, "guidance": guidance, "size": size, "layers": layers, "alt_prompts": alt_prompts, "swap_text_paths": swap_text_paths}
    return Generation(images=images, prompts=prompts, seeds=seeds, seconds=seconds, settings=used)


@contextmanager
def progress_bars(pipe, progress: bool):
    """Show or hide the pipeline's step bar for a block, then restore the pipeline's own setting."""
    saved = dict(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(**{**saved, "disable": not progress, "leave": False})
    try:
        yield
    finally:
        pipe._progress_bar_config = saved


def sample_batch(pipe, cond, seeds, *, steps, guidance, size=None, alt=None, layers=None, swap_text_paths=False,
                 output_type="pil", share_identical_rows=False, counter=None, patches=(), joint_text="attention"):
    """One pipeline call for the samples of ``cond`` (one CPU-generator seed each), optionally altered.

    ``alt``/``layers``: the altered inputs (one layer spec, or one per sample). ``share_identical_rows``
    evaluates bitwise-identical UNet rows once (the sweep engine). ``counter``: a dict whose
    ``"rows"`` / ``"calls"`` entries count the UNet sample-evaluations and calls actually made.
    ``patches``: further :class:`~loco_lib.hooks.Patch` es for this call (one row per sample).
    """
    family = pipeline_family(pipe)
    family_of = families.pipeline_family(pipe)
    extra = family_of.call_kwargs()  # IF: clean_caption=False
    size = size if size is not None else family_of.default_size(pipe)
    if size is not None:
        extra.update(height=size, width=size)
    n, donors = len(seeds), None
    if alt is not None and families.denoiser_family(pipe).text_from_run:
        # joint attention: what a layer reads depends on the run, so each altered sample's T' is a
        # donor sample riding in the same call (one per distinct T' and seed), not a tensor
        cond, seeds, donors = with_donors(pipe, cond, alt, list(seeds), layers, swap_text_paths)
    gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    ctx = nullcontext()
    if alt is not None or share_identical_rows or counter is not None or patches:
        from .altered import altered_patches
        from .hooks import hooks

        if donors is not None and patches:
            raise LocoError("further patches cannot be combined with altered layers of a joint-attention transformer")
        mine = (altered_patches(pipe, alt, layers, swap_text_paths, donors=donors, joint_text=joint_text)
                if alt is not None else [])
        ctx = hooks(pipe, patches=[*mine, *patches], n_samples=len(seeds), guidance=family_of.guided_rows(pipe, guidance),
                    share_identical_rows=share_identical_rows and families.denoiser_family(pipe).shares_rows,
                    counter=counter)
    with ctx, torch.no_grad():
        out = pipe(**cond.pipeline_kwargs(family), num_inference_steps=steps, guidance_scale=guidance,
                   generator=gens, output_type=output_type, **extra)
    return list(out.images)[:n]


def with_donors(pipe, cond, alt, seeds: list, layers, swap_text_paths: bool):
    """``(cond, seeds, donors)`` for a call whose samples alter layers to ``alt`` in a joint-attention
    transformer: one donor sample per distinct (T' row, seed) among the samples that alter anything,
    appended after them; ``donors[i]`` is sample i's donor (None if it alters nothing)."""
    from .altered import layer_mask
    from .layers import cross_attention_layers

    n = len(seeds)
    alters = layer_mask(layers, n, len(cross_attention_layers(pipe))).any(1).tolist()
    extra, donors = [], []
    for i in range(n):
        if not (swap_text_paths or alters[i]):
            donors.append(None)
            continue
        same = next((k for k, j in enumerate(extra) if seeds[j] == seeds[i] and _same_row(alt, i, j)), None)
        if same is None:
            extra.append(i)
            same = len(extra) - 1
        donors.append(n + same)
    if not extra:
        return cond, seeds, donors
    return cond.joined(alt.select(extra)), seeds + [seeds[j] for j in extra], donors


def _same_row(cond, i: int, j: int) -> bool:
    """Rows ``i`` and ``j`` of a text condition are bitwise the same."""
    return all(t is None or torch.equal(t[i], t[j]) for t in (cond.embeds, cond.negative, cond.pooled,
                                                            cond.negative_pooled, cond.mask, cond.negative_mask))
