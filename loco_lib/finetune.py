"""App. I's fine-tuning baselines, ESD-x and Concept Ablation, as loco edits.

App. I (Fig. 57) compares LocoEdit with DiffQuickFix, Concept Ablation (Kumari et al., ICCV 2023,
https://arxiv.org/abs/2303.13516) and ESD (Gandikota et al., ICCV 2023,
https://arxiv.org/abs/2303.07345). Where LocoEdit solves for a few K/V matrices in closed form, both
train weights of the denoiser by gradient descent, step by step:

* **ESD-x** trains every parameter of the cross-attention modules (SD and SD-XL: the ``attn2``
  query, key, value and output projections; DeepFloyd IF: its attention modules, which read the
  image and the text together; PixArt and SANA: each block's ``attn2``). At a point ``x_t`` of the model's own sampling run for the concept
  ``c``, the trained model's prediction for ``c`` is pulled to the frozen model's negatively guided
  one: ``eps*(x_t, "", t) - eta * (eps*(x_t, c, t) - eps*(x_t, "", t))`` (``eta``: ESD's negative
  guidance, 1).
* **Concept Ablation** (its model-based variant, cross-attention keys and values) trains the K/V
  projections of every cross-attention layer so that the prediction for a target prompt ``c*``
  (one naming the concept) becomes the frozen model's prediction for its anchor ``a`` (the same
  without the concept; for a style, "a painting"): ``eps(x_t, c*, t) -> eps*(x_t, a, t)``.

Both take ``x_t`` from a sampling run of the pipeline itself (recorded through :mod:`loco_lib.hooks`
at a random step, then the run is stopped), which is what ESD does; Concept Ablation noises images
it generated first, so loco's anchor points are the anchor's own run at a random step (loco's
choice, one code path for every family). Every step's randomness derives from ``(seed, step)``, so
a run resumed from its checkpoint (``checkpoint=``: the trained weights, the optimizer's state and
the step, written atomically every ``save_every`` steps) ends with the weights an uninterrupted run
ends with. The result is an :class:`~loco_lib.edit_file.Edit`: saved, loaded, applied and reverted
like LocoEdit's; the pipeline itself is left as it was.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from . import settings
from .edit_file import Edit, _fingerprint, _model_name
from .errors import LocoError
from .families.registry import denoiser, pipeline_family
from .hooks import Patch, Record, hooks, unet_input
from .layers import cross_attention_layers

ESD_LR, ESD_STEPS, ESD_ETA = 1e-5, 1000, 1.0  # ESD's paper: lr 1e-5, 1000 iterations, negative guidance 1
CA_LR, CA_STEPS = 2e-6, 400  # loco's choice (one prompt pair per step; not checked against Concept Ablation's settings)
SAMPLE_STEPS = None  # the sampling run x_t is taken from: the model's own steps (SD: 50, ESD's DDIM steps)
# Stable Diffusion v1's own training learning rate (its model card, https://huggingface.co/CompVis/stable-diffusion-v1-4:
# 0.0001 after warm-up): the scale the two rates above were set for.
SD_TRAINING_LR = 1e-4


def learning_rate(method: str, trained_at: float | None = None) -> float:
    """``method``'s learning rate: ESD's paper's 1e-5, Concept Ablation's 2e-6 (loco's choice), both
    set for Stable Diffusion; for a model that was itself trained at another rate ``trained_at``
    (the organisms: 1e-3), scaled by ``trained_at / SD_TRAINING_LR`` (loco's rule: the same step
    relative to the model's own training)."""
    base = {"esd": ESD_LR, "concept-ablation": CA_LR}.get(method)
    if base is None:
        raise LocoError(f"unknown fine-tuning method {method!r}: use esd or concept-ablation")
    if trained_at is None:
        return base
    if isinstance(trained_at, bool) or not (isinstance(trained_at, (int, float)) and trained_at > 0):
        raise LocoError(f"the model's training learning rate must be a positive number, got {trained_at!r}")
    return float(f"{base * float(trained_at) / SD_TRAINING_LR:.6g}")  # 1e-4, not 1.0000000000000002e-4: a key holds it


class _Stop(Exception):
    """Ends a sampling run once the point it was run for is recorded."""


def _stop(rows, call):
    raise _Stop


def trajectory_point(pipe, prompt: str, seed: int, step: int, *, steps: int | None = SAMPLE_STEPS, guidance: float | None = None):
    """The UNet's inputs at denoising step ``step`` of the pipeline's own run for ``prompt``
    (``seed``: its CPU generator): ``(sample, timestep, encoder_hidden_states, added)`` with the
    guidance batch's two rows ``[uncond, cond]`` (``added``: SD-XL's pooled text and time ids, else
    None). The run stops right after."""
    from .generate import progress_bars
    from .text import encode

    family = pipeline_family(pipe)
    guidance = settings.guidance(pipe, guidance)
    steps = settings.steps(pipe, steps)
    if guidance <= 1:
        raise LocoError("ESD and Concept Ablation take the unconditional branch of a guided run: guidance must be > 1")
    sites = {"sample": unet_input(0), "hidden": unet_input("encoder_hidden_states")}
    sites.update({name: unet_input(arg) for name, arg in family.added_inputs.items()})  # SD-XL's pooled text, time ids
    records = [Record(s, branch="all", steps=[step], to_cpu=False) for s in sites.values()]
    cond = encode(pipe, [prompt])
    extra = family.call_kwargs()
    size = family.default_size(pipe)  # SANA: the transformer's size (its pipeline's own default is 1024 px)
    if size is not None:
        extra.update(height=size, width=size)
    with hooks(pipe, records=records, patches=[Patch(unet_input(0), _stop, branch="all", steps=[step + 1])],
               n_samples=1, guidance=True) as trace, progress_bars(pipe, False):  # the training's own bar is enough
        try:
            pipe(**family.pipeline_kwargs(cond), num_inference_steps=steps, guidance_scale=guidance,
                 generator=[torch.Generator("cpu").manual_seed(int(seed))], output_type=family.raw_output, **extra)
        except _Stop:
            pass
    got = {k: trace[s][0] for k, s in sites.items()}
    added = {name: got[name] for name in family.added_inputs} or None
    return got["sample"], pipe.scheduler.timesteps[step], got["hidden"], added


def _predict(unet, sample, t, hidden, added, params=None):
    """The denoiser's prediction (IF's first three of its six channels, PixArt's first half), optionally
    with the parameters ``params`` in place of its own (the frozen model: :func:`torch.func.functional_call`);
    its family knows how the denoiser is called."""
    from .families.registry import denoiser_family

    return denoiser_family(unet).predict(unet, sample, t, hidden, added, params)


def _rows(x, i):
    return None if x is None else ({k: v[i:i + 1] for k, v in x.items()} if isinstance(x, dict) else x[i:i + 1])


def trainable(pipe, method: str) -> dict[str, torch.nn.Parameter]:
    """The UNet parameters a method trains: ESD-x every parameter of the cross-attention modules,
    Concept Ablation their key and value projections."""
    from .families.registry import denoiser_family

    family = denoiser_family(pipe)
    if not family.trains:
        raise LocoError(f"ESD and Concept Ablation train UNet and cross-attention DiT denoisers; this model's denoiser "
                        f"({family.name}) is not supported yet")
    unet = denoiser(pipe)
    out = {}
    for layer in cross_attention_layers(unet):
        attn = unet.get_submodule(layer.name)
        if method == "esd":
            for name, p in attn.named_parameters():
                out[f"{layer.name}.{name}"] = p
        elif method == "concept-ablation":
            for proj in (layer.key, layer.value):
                for name, p in getattr(attn, proj).named_parameters():
                    out[f"{layer.name}.{proj}.{name}"] = p
        else:
            raise LocoError(f"unknown fine-tuning method {method!r}: use esd or concept-ablation")
    return out


def _step_draw(seed: int, i: int, steps: int) -> tuple[int, int]:
    """Step ``i``'s random sampling step and generator seed, from ``(seed, i)`` alone."""
    g = torch.Generator("cpu").manual_seed(int(seed) * 1_000_003 + int(i))
    return int(torch.randint(0, steps, (1,), generator=g)), int(torch.randint(0, 2**31 - 1, (1,), generator=g))


def _train(pipe, method: str, loss_of, *, recipe: dict, steps: int, lr: float, seed: int, sample_steps: int,
           checkpoint=None, save_every: int = 50, progress: bool | None = None, stop_after: int | None = None) -> Edit:
    from tqdm.auto import tqdm

    from .files import replaced
    from .models import progress_default

    steps = settings._whole(steps, "steps", "a whole number of training steps, e.g. 200")
    if steps < 1:
        raise LocoError(f"steps must be at least 1 (got {steps})")
    sample_steps = settings.steps(pipe, sample_steps, "sample_steps")
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and lr > 0):
        raise LocoError(f"the learning rate must be a positive number, got {lr!r}")
    params = trainable(pipe, method)
    unet = denoiser(pipe)
    frozen = {n: p.detach().clone() for n, p in params.items()}
    fingerprints = {n: _fingerprint(p) for n, p in params.items()}
    key = hashlib.sha256(json.dumps({**recipe, "fingerprints": fingerprints}, sort_keys=True).encode()).hexdigest()[:16]
    grads = {n: p.requires_grad for n, p in unet.named_parameters()}
    opt = torch.optim.Adam(params.values(), lr=lr)
    start, losses = 0, []
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("key") != key:
            raise LocoError(f"{path} is a checkpoint of another run (other model, concept or settings): remove it or "
                            "pass another path")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state["params"][n].to(p))
        opt.load_state_dict(state["optimizer"])
        start, losses = int(state["step"]), list(state["losses"])
    t0 = time.perf_counter()
    try:
        for p in unet.parameters():
            p.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
        progress = progress_default() if progress is None else progress
        bar = tqdm(range(start, steps), desc=f"{method} ({len(params)} tensors)", disable=not progress, leave=False)
        for i in bar:
            k, gen_seed = _step_draw(seed, i, sample_steps)
            loss = loss_of(k, gen_seed, frozen, i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
            done = i + 1
            if path is not None and (done % save_every == 0 or done == steps or done == stop_after):
                path.parent.mkdir(parents=True, exist_ok=True)
                with replaced(path) as tmp:
                    torch.save({"key": key, "step": done, "params": {n: p.detach().cpu() for n, p in params.items()},
                                "optimizer": opt.state_dict(), "losses": losses}, tmp)
            if stop_after is not None and done >= stop_after:  # the tests' interruption
                raise KeyboardInterrupt
        weights = {n: p.detach().to("cpu").clone() for n, p in params.items()}
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(frozen[n])  # the pipeline as it was; the edit holds the trained weights
        for n, p in unet.named_parameters():
            p.requires_grad_(grads[n])
    all_layers = cross_attention_layers(unet)
    meta = {"method": method, "model": _model_name(pipe), "family": settings.pipeline_family(pipe), **recipe,
            "steps": steps, "lr": float(lr), "seed": int(seed), "sample_steps": sample_steps, "losses": losses,
            "edit_seconds": time.perf_counter() - t0, "resumed_from": start, "n_rows": 1}
    return Edit(weights=weights, fingerprints=fingerprints, layers=list(range(len(all_layers))),
                layer_names={i: layer.name for i, layer in enumerate(all_layers)}, meta=meta)


def esd(pipe, concept: str, *, steps: int = ESD_STEPS, lr: float = ESD_LR, eta: float = ESD_ETA, seed: int = 0,
        sample_steps: int | None = SAMPLE_STEPS, guidance: float | None = None, checkpoint=None, save_every: int = 50,
        progress: bool | None = None, stop_after: int | None = None) -> Edit:
    """ESD-x: erase ``concept`` (a text, e.g. ``"van gogh"``) by fine-tuning the cross-attention
    modules for ``steps`` steps (module docstring)."""
    concept = settings.prompts(pipe, [concept], "concept")[0]
    unet = denoiser(pipe)

    def loss_of(k, gen_seed, frozen, i):
        x, t, hidden, added = trajectory_point(pipe, concept, gen_seed, k, steps=sample_steps, guidance=guidance)
        with torch.no_grad():
            both = _predict(unet, x, t, hidden, added, frozen)
            e0, ec = both[0:1], both[1:2]
            target = e0 - eta * (ec - e0)
        mine = _predict(unet, _rows(x, 1), t, _rows(hidden, 1), _rows(added, 1))
        return torch.nn.functional.mse_loss(mine.float(), target.float())

    return _train(pipe, "esd", loss_of, recipe={"concept": concept, "eta": float(eta), "guidance": guidance},
                  steps=steps, lr=lr, seed=seed, sample_steps=sample_steps, checkpoint=checkpoint, save_every=save_every,
                  progress=progress, stop_after=stop_after)


def concept_ablation(pipe, targets, anchors, *, steps: int = CA_STEPS, lr: float = CA_LR, seed: int = 0,
                     sample_steps: int | None = SAMPLE_STEPS, guidance: float | None = None, checkpoint=None,
                     save_every: int = 50, progress: bool | None = None, stop_after: int | None = None) -> Edit:
    """Concept Ablation: map each prompt of ``targets`` (e.g. ``"a painting in the style of van gogh"``)
    to what the frozen model makes of its anchor in ``anchors`` (``"a painting"``) by fine-tuning the
    cross-attention K/V projections (module docstring); step ``i`` trains on pair ``i mod n``."""
    from .text import encode

    targets = settings.prompts(pipe, [targets] if isinstance(targets, str) else list(targets), "Concept Ablation target")
    anchors = settings.prompts(pipe, [anchors] if isinstance(anchors, str) else list(anchors), "Concept Ablation anchor")
    if len(anchors) == 1 and len(targets) > 1:
        anchors = anchors * len(targets)
    if len(anchors) != len(targets):
        raise LocoError(f"{len(anchors)} anchors for {len(targets)} targets: give one, or one per target")
    same = [t for t, a in zip(targets, anchors) if t.strip().lower() == a.strip().lower()]
    if same:
        raise LocoError(f"the target {same[0]!r} and its anchor are the same text: nothing to ablate")
    unet = denoiser(pipe)
    mine_conds = [encode(pipe, [t]) for t in targets]

    def loss_of(k, gen_seed, frozen, i):
        j = i % len(targets)
        x, t, hidden, added = trajectory_point(pipe, anchors[j], gen_seed, k, steps=sample_steps, guidance=guidance)
        with torch.no_grad():
            goal = _predict(unet, _rows(x, 1), t, _rows(hidden, 1), _rows(added, 1), frozen)
        mine_cond = mine_conds[j]
        mine_added = None if added is None else pipeline_family(pipe).added_for(mine_cond, _rows(added, 1))
        mine = _predict(unet, _rows(x, 1), t, mine_cond.embeds.to(hidden), mine_added)
        return torch.nn.functional.mse_loss(mine.float(), goal.float())

    return _train(pipe, "concept-ablation", loss_of, recipe={"targets": targets, "anchors": anchors, "guidance": guidance},
                  steps=steps, lr=lr, seed=seed, sample_steps=sample_steps, checkpoint=checkpoint, save_every=save_every,
                  progress=progress, stop_after=stop_after)


def plot_losses(edits: dict, window: int = 50):
    """The training loss of each trained edit of ``edits`` (label -> Edit; closed-form edits and None
    are left out), as its running mean over ``window`` steps; None when no edit was trained."""
    import matplotlib.pyplot as plt
    import numpy as np

    runs = {label: e.meta["losses"] for label, e in edits.items() if e is not None and e.meta.get("losses")}
    if not runs:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 2.8), squeeze=False)
    for ax, (label, losses) in zip(axes[0], runs.items()):
        x = np.asarray(losses, dtype=float)
        w = max(1, min(window, len(x)))
        ax.plot(np.arange(w, len(x) + 1), np.convolve(x, np.ones(w) / w, mode="valid"))
        ax.set(title=f"{label}: {len(x)} steps", xlabel="step", ylabel=f"loss (mean of {w})")
    fig.tight_layout()
    return fig
