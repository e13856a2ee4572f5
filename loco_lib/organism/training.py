"""Train the model organism (``toy`` / ``toy-t5``) from a seed: resumable, with a progress bar.

    python -m loco_lib.organism.training --kind clip --steps 3000 --out models/toy
    python -m loco_lib.organism.training --kind t5   --steps 3000 --out models/toy-t5
    python -m loco_lib.organism.training --kind t5   --unet if --steps 3000 --out models/toy-if
    python -m loco_lib.organism.training --kind clip --unet if --steps 3000 --out models/toy-if-clip
    python -m loco_lib.organism.training --kind t5   --unet if --pooled-drop 0.5 --steps 3000 --out models/toy-if-xattn
    python -m loco_lib.organism.training --kind t5   --context 77 --init models/toy-t5 --lr 2e-4 --steps 600 --out models/toy-t5-long
    python -m loco_lib.organism.training --kind t5   --unet pixart --lr 5e-4 --warmup 200 --steps 4000 --out models/toy-dit

Recipe (loco's choice; the settings of the first probe that trained well): v-prediction on a cosine schedule
(``squaredcos_cap_v2``), AdamW lr 1e-3 with 100 warm-up steps, gradient clipping at 1.0, EMA 0.995,
batch 64, 10 % of captions dropped to "" for classifier-free guidance, UNet and text encoder trained
jointly. The DiT organism (``--unet pixart``, a PixArt-topology transformer) is trained the same way
with its padding mask, at lr 5e-4 with 200 warm-up steps for 4000 steps (loco's choice: a transformer
that is trained from scratch is usually given a lower rate than a UNet). Data is drawn fresh from the world every step (seeded by step, so a resumed run sees the
same batches). ``--pooled-drop p`` (IF topology only; 0 for every organism but ``toy-if-xattn``) zeroes
the pooled text path (``add_embedding``'s output) for a fraction p of each batch's samples, drawn from
the step's seed, so that the UNet cannot read the caption from that path alone and has to read it
through its attention layers too; the weights and the sampling path are unchanged. ``--context n``
(T5 only, whose positions are relative) pads every caption to n tokens instead of the organism's 12,
so that as in a real 77-token sequence most positions follow the subject; ``--init FOLDER`` starts
from a trained organism's weights (same kinds) instead of a fresh initialisation. A checkpoint (``checkpoint.pt``: weights, EMA, optimizer, step, losses) is written
every ``--save-every`` steps; rerunning the command resumes from it. At the end the EMA weights are
saved in diffusers / transformers format (``unet/``, ``text_encoder/``, ``tokenizer/``) with
``training.json`` (settings, wall time, loss curve).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..files import replaced
from . import model as toy
from .world import dataset


def _batch(step: int, batch: int, seed: int, drop: float, tok, kind: str, context: int = toy.MAX_TOKENS):
    images, captions, _ = dataset(batch, seed=seed * 1_000_003 + step)
    rng = np.random.default_rng(seed * 7_919 + step)
    captions = ["" if rng.random() < drop else c for c in captions]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    enc = tok(captions, padding="max_length", max_length=context, truncation=True, return_tensors="pt")
    return x, enc["input_ids"], enc["attention_mask"]


def _encode_text(text_encoder, ids, mask, kind: str):
    if kind == "t5":
        return text_encoder(ids, attention_mask=mask)[0]
    return text_encoder(ids)[0]  # like StableDiffusionPipeline for CLIP: no mask, causal attention


def train(kind: str = "clip", unet_kind: str = "sd", steps: int = 3000, out: str = "models/toy", seed: int = 0, batch: int = 64,
          lr: float = 1e-3, warmup: int = 100, ema_decay: float = 0.995, drop: float = 0.1, save_every: int = 250,
          progress: bool = True, pooled_drop: float = 0.0, context: int = toy.MAX_TOKENS, init: str | None = None) -> dict:
    if pooled_drop and unet_kind != "if":
        raise ValueError("pooled_drop needs the IF-topology UNet (unet_kind='if'): only it has a pooled text path")
    if not 0.0 <= pooled_drop <= 1.0:
        raise ValueError(f"pooled_drop is a fraction in [0, 1], not {pooled_drop}")
    if context != toy.MAX_TOKENS and kind != "t5":
        raise ValueError(f"context {context} needs the T5 encoder: the CLIP-style one has {toy.MAX_TOKENS} learned positions")
    if context < toy.MAX_TOKENS:
        raise ValueError(f"context {context} is shorter than the world's longest caption ({toy.MAX_TOKENS} tokens)")
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if init is not None:
        if toy.organism_kinds(str(init)) != (kind, unet_kind):
            raise ValueError(f"--init {init} is not a trained {kind}/{unet_kind} organism")
        pipe = toy.load_trained(str(init))
    else:
        pipe = toy.build(kind, seed=seed, unet_kind=unet_kind)
    pipe.tokenizer.model_max_length = context
    part = toy.denoiser_folder(unet_kind)  # "unet" or "transformer": the pipeline's denoiser and its folder
    unet, text, tok = getattr(pipe, part).train(), pipe.text_encoder.train(), pipe.tokenizer
    codec = pipe.vae
    noise_sched = toy.train_scheduler()
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ema = {"unet": copy.deepcopy(unet.state_dict()), "text": copy.deepcopy(text.state_dict())}
    start, losses, seconds = 0, [], 0.0
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        unet.load_state_dict(state["unet"])
        text.load_state_dict(state["text"])
        opt.load_state_dict(state["opt"])
        ema, start, losses, seconds = state["ema"], state["step"], state["losses"], state["seconds"]
        torch.set_rng_state(state["rng"])  # the same noise and timesteps as an uninterrupted run
    keep = None  # per-sample mask on the pooled text path (None: the path is always on)

    def _mask_pooled(module, args, output):
        return output if keep is None else output * keep[:, None]

    hook = unet.add_embedding.register_forward_hook(_mask_pooled) if pooled_drop else None
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"train {kind}/{unet_kind}", disable=not progress)
    t0 = time.perf_counter()
    for step in bar:
        x, ids, mask = _batch(step, batch, seed, drop, tok, kind, context)
        latents = codec.encode_images(x)
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch,))
        noisy = noise_sched.add_noise(latents, noise, t)
        target = noise_sched.get_velocity(latents, noise, t)
        cond = _encode_text(text, ids, mask, kind)
        if pooled_drop:
            rng = np.random.default_rng(seed * 104_729 + step)
            keep = torch.from_numpy((rng.random(batch) >= pooled_drop).astype(np.float32))
        pred = toy.denoise(unet, noisy, t, cond, mask)
        loss = torch.nn.functional.mse_loss(pred, target)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for name, module in (("unet", unet), ("text", text)):
                for k, v in module.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[name][k].mul_(ema_decay).add_(v, alpha=1 - ema_decay)
                    else:
                        ema[name][k].copy_(v)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if (step + 1) % save_every == 0 or step + 1 == steps:
            now = seconds + time.perf_counter() - t0
            with replaced(ckpt) as tmp:
                torch.save({"unet": unet.state_dict(), "text": text.state_dict(), "opt": opt.state_dict(), "ema": ema,
                            "step": step + 1, "losses": losses, "seconds": now, "rng": torch.get_rng_state()}, tmp)
    seconds = seconds + time.perf_counter() - t0 if steps > start else seconds
    if hook is not None:
        hook.remove()
    unet.load_state_dict(ema["unet"])
    text.load_state_dict(ema["text"])
    # fp16 on disk keeps each organism near 13 MB; loaded back as fp32
    unet.eval().to(torch.float16).save_pretrained(out / part)
    text.eval().to(torch.float16).save_pretrained(out / "text_encoder")
    tok.save_pretrained(out / "tokenizer")
    info = {"kind": kind, "unet": unet_kind, "steps": steps, "seed": seed, "batch": batch, "lr": lr, "warmup": warmup, "ema": ema_decay,
            "caption_dropout": drop, "pooled_dropout": pooled_drop, "context": context,
            "init": None if init is None else Path(init).name, "wall_seconds": seconds, "threads": torch.get_num_threads(),
            "final_loss": float(np.mean(losses[-100:])) if losses else math.nan,
            "loss_curve": [float(np.mean(losses[i : i + 50])) for i in range(0, len(losses), 50)]}
    (out / "training.json").write_text(json.dumps(info, indent=1))
    return info



def _recorded(model) -> dict:
    """An organism's ``training.json``; an empty dict for a model that is not an organism trained here
    (a real model, a twin) or has none."""
    if not isinstance(model, (str, Path)) or toy.organism_kinds(str(model)) is None:
        return {}
    path = toy.organism_folder(str(model)) / "training.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def trained_context(model) -> int | None:
    """The caption length an organism was trained at (``context`` of its ``training.json``, written
    by ``--context``) when it is not the organisms' 12 tokens; None otherwise (a shipped organism, a
    real model, a twin)."""
    context = _recorded(model).get("context")
    return int(context) if context is not None and int(context) != toy.MAX_TOKENS else None


def load_long_context(model, dtype=None):
    """An organism trained with ``--context n``, loaded with its tokenizer padding to n tokens as in
    training (:func:`loco_lib.load` gives every organism the 12-token context of the shipped ones)."""
    from ..errors import LocoError
    from ..models import load

    context = trained_context(model)
    if context is None:
        raise LocoError(f"{model!r} was not trained with a longer context (training --context)")
    pipe = load(str(model), dtype=dtype, progress=False)
    pipe.tokenizer.model_max_length = context
    return pipe


def trained_lr(model) -> float | None:
    """The learning rate an organism was trained at (``lr`` of its ``training.json``); None for a
    model that is not an organism trained here (a real model, a twin), or one trained before the
    rate was recorded."""
    lr = _recorded(model).get("lr")
    return float(lr) if lr is not None else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loco_lib.organism.training", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=["clip", "t5"], default="clip")
    ap.add_argument("--unet", choices=[d for d in toy.DENOISERS if d != "mmdit"], default="sd",
                    help="denoiser topology: SD-1.5's or DeepFloyd IF-I's UNet, or PixArt-alpha's transformer "
                         "(SD3's: python -m loco_lib.organism.mmdit)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--out", default="models/toy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--pooled-drop", type=float, default=0.0,
                    help="IF topology: fraction of samples whose pooled text path is zeroed in training (toy-if-xattn: 0.5)")
    ap.add_argument("--context", type=int, default=toy.MAX_TOKENS, help="caption length in tokens, padding included (T5 only)")
    ap.add_argument("--init", default=None, help="a trained organism's folder to start from (fine-tuning)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    info = train(args.kind, args.unet, args.steps, args.out, args.seed, args.batch, lr=args.lr, warmup=args.warmup, save_every=args.save_every, progress=not args.quiet,
                 pooled_drop=args.pooled_drop, context=args.context, init=args.init)
    print(f"trained {args.kind}/{args.unet} for {info['steps']} steps in {info['wall_seconds'] / 60:.1f} min; final loss {info['final_loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
