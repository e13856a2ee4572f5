"""The joint-attention organism ``toy-mmdit``: an SD3-topology transformer trained by loco on the
organism's world (issue 25; chapter "Joint attention" once it is trained).

* Denoiser: ``SD3Transformer2DModel`` with SD3's joint blocks at toy widths: 12 blocks of width 128
  (4 heads of 32), patches of 2x2 on the 16x16x12 pixel-unshuffled latent (64 image tokens), the
  text projected 64 -> 128 once and then a stream every block reads and (but the last) updates.
* Text, as SD3 lays it out: two CLIP-style causal encoders (word-level, 12 tokens, width 32, with
  a projection whose pooled outputs, concatenated, enter the time embedding) whose penultimate
  states are concatenated (64 wide), then a T5-style bidirectional encoder (width 64) whose 12
  tokens are appended on the sequence axis: 24 text tokens. In a fraction of training samples the
  T5 part is zeroed, which is what SD3's pipeline feeds a model loaded without T5
  (``text_encoder_3=None``), so the organism runs with or without T5.
* Objective (as SD3's pipelines sample): rectified flow, x_s = (1 - s) x_0 + s e, the model
  predicting e - x_0 at timestep 1000 s, s drawn logit-normally; sampled by diffusers'
  ``FlowMatchEulerDiscreteScheduler`` (shift 1, loco's choice for 32-pixel images).
* The text is encoded in training exactly as the pipeline encodes it (``encode_prompt``, with
  gradients), captions dropped to "" (the pipeline's negative prompt) for classifier-free guidance.

Sizes, the T5 drop rate, the learning rate and the step count are loco's choices.

    python -m loco_lib.organism.mmdit --steps 4000 --out models/toy-mmdit
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

from diffusers.configuration_utils import register_to_config

from ..files import replaced
from . import model as toy
from .world import SIZE, dataset

MMDIT_BLOCKS = 12
T5_DROP = 0.3  # fraction of training samples whose T5 part is zeroed (loco's choice)
TEXT = ("text_encoder", "text_encoder_2", "text_encoder_3")


class FlowCodec(toy.PixelShuffleCodec):
    """The organism's lossless codec with the ``shift_factor`` SD3's pipeline reads (0: none)."""

    @register_to_config
    def __init__(self, factor: int = toy.UNSHUFFLE, scaling_factor: float = 1.0, block_out_channels=(1, 1),
                 latent_channels: int = 12, shift_factor: float = 0.0):
        super().__init__(factor, scaling_factor, block_out_channels, latent_channels)


def _clip_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        max_position_embeddings=toy.MAX_TOKENS, hidden_act="quick_gelu", projection_dim=32,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ))


def transformer():
    from diffusers import SD3Transformer2DModel

    u = toy.UNSHUFFLE
    return SD3Transformer2DModel(
        sample_size=SIZE // u, patch_size=2, in_channels=3 * u**2, out_channels=3 * u**2, num_layers=MMDIT_BLOCKS,
        attention_head_dim=32, num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=128,
        pooled_projection_dim=64, pos_embed_max_size=SIZE // u,
    )


def scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)


def build(seed: int = 0):
    """A freshly initialised (untrained) ``toy-mmdit`` in a ``StableDiffusion3Pipeline``."""
    from diffusers import StableDiffusion3Pipeline

    clip_tok, t5_tok = toy.word_tokenizer("clip"), toy.word_tokenizer("t5")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = StableDiffusion3Pipeline(
            transformer=transformer(), scheduler=scheduler(), vae=FlowCodec(),
            text_encoder=_clip_encoder(len(clip_tok)), tokenizer=clip_tok,
            text_encoder_2=_clip_encoder(len(clip_tok)), tokenizer_2=toy.word_tokenizer("clip"),
            text_encoder_3=toy.text_encoder("t5", len(t5_tok)), tokenizer_3=t5_tok,
        )
    pipe.loco_text_length = toy.MAX_TOKENS  # the T5 part: 12 tokens, as the CLIP part
    return pipe


def load(folder, without_t5: bool = False):
    """A trained ``toy-mmdit`` from ``folder`` (fp32, eval mode); ``without_t5``: loaded as SD3 is
    without its T5 encoder (``text_encoder_3=None``: zeros in the T5 positions)."""
    from diffusers import SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    folder = Path(folder)
    pipe = build()
    pipe.register_modules(transformer=SD3Transformer2DModel.from_pretrained(folder / "transformer", dtype=torch.float32))
    for name, cls in zip(TEXT, (CLIPTextModelWithProjection, CLIPTextModelWithProjection, T5EncoderModel)):
        pipe.register_modules(**{name: cls.from_pretrained(folder / name, dtype=torch.float32)})
    if without_t5:
        pipe.register_modules(text_encoder_3=None, tokenizer_3=None)
    for comp in pipe.components.values():
        if isinstance(comp, torch.nn.Module):
            comp.eval()
    pipe.loco_defaults = dict(toy.SAMPLING)
    return pipe


def encode(pipe, captions: list[str], t5_keep: torch.Tensor | None = None):
    """``(text, pooled)`` as the pipeline computes them for ``captions`` (with gradients); the T5
    positions of the samples whose ``t5_keep`` is False are zeros, as for a pipeline without T5."""
    text, _, pooled, _ = pipe.encode_prompt(prompt=captions, prompt_2=None, prompt_3=None, device=torch.device("cpu"),
                                            num_images_per_prompt=1, do_classifier_free_guidance=False,
                                            max_sequence_length=toy.MAX_TOKENS)
    if t5_keep is not None:
        clip = pipe.tokenizer.model_max_length
        keep = torch.ones_like(text)
        keep[~t5_keep, clip:] = 0
        text = text * keep
    return text, pooled


def train(steps: int = 4000, out: str = "models/toy-mmdit", seed: int = 0, batch: int = 64, lr: float = 5e-4,
          warmup: int = 200, ema_decay: float = 0.995, drop: float = 0.1, t5_drop: float = T5_DROP,
          save_every: int = 250, progress: bool = True) -> dict:
    """Train ``toy-mmdit`` from a seed: resumable from ``out/checkpoint.pt`` (weights, EMA,
    optimizer, step, losses, random state), the organisms' recipe otherwise (AdamW, warm-up,
    clipping at 1, EMA, batch 64, 10 % of captions dropped, data drawn fresh from the world each step)."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = build(seed)
    modules = {"transformer": pipe.transformer, **{name: getattr(pipe, name) for name in TEXT}}
    for m in modules.values():
        m.train()
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ema = {name: copy.deepcopy(m.state_dict()) for name, m in modules.items()}
    start, losses, seconds = 0, [], 0.0
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        for name, m in modules.items():
            m.load_state_dict(state["weights"][name])
        opt.load_state_dict(state["opt"])
        ema, start, losses, seconds = state["ema"], state["step"], state["losses"], state["seconds"]
        torch.set_rng_state(state["rng"])
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="train toy-mmdit", disable=not progress)
    t0 = time.perf_counter()
    for step in bar:
        images, captions, _ = dataset(batch, seed=seed * 1_000_003 + step)
        rng = np.random.default_rng(seed * 7_919 + step)
        captions = ["" if rng.random() < drop else c for c in captions]
        t5_keep = torch.from_numpy(rng.random(batch) >= t5_drop)
        x0 = pipe.vae.encode_images(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0)
        noise = torch.randn_like(x0)
        s = torch.sigmoid(torch.randn(batch))  # logit-normal
        xs = (1 - s)[:, None, None, None] * x0 + s[:, None, None, None] * noise
        text, pooled = encode(pipe, captions, t5_keep)
        pred = pipe.transformer(hidden_states=xs, timestep=s * 1000, encoder_hidden_states=text,
                                pooled_projections=pooled, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred, noise - x0)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for name, m in modules.items():
                for k, v in m.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[name][k].mul_(ema_decay).add_(v, alpha=1 - ema_decay)
                    else:
                        ema[name][k].copy_(v)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if (step + 1) % save_every == 0 or step + 1 == steps:
            now = seconds + time.perf_counter() - t0
            with replaced(ckpt) as tmp:
                torch.save({"weights": {n: m.state_dict() for n, m in modules.items()}, "opt": opt.state_dict(),
                            "ema": ema, "step": step + 1, "losses": losses, "seconds": now,
                            "rng": torch.get_rng_state()}, tmp)
    seconds = seconds + time.perf_counter() - t0 if steps > start else seconds
    for name, m in modules.items():
        m.load_state_dict(ema[name])
        m.eval().to(torch.float16).save_pretrained(out / name)
    info = {"kind": "clip+t5", "unet": "mmdit", "steps": steps, "seed": seed, "batch": batch, "lr": lr, "warmup": warmup,
            "ema": ema_decay, "caption_dropout": drop, "t5_dropout": t5_drop, "objective": "rectified flow, logit-normal s",
            "wall_seconds": seconds, "threads": torch.get_num_threads(),
            "final_loss": float(np.mean(losses[-100:])) if losses else math.nan,
            "loss_curve": [float(np.mean(losses[i: i + 50])) for i in range(0, len(losses), 50)]}
    (out / "training.json").write_text(json.dumps(info, indent=1))
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loco_lib.organism.mmdit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--out", default="models/toy-mmdit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--t5-drop", type=float, default=T5_DROP)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    info = train(args.steps, args.out, args.seed, args.batch, lr=args.lr, warmup=args.warmup, t5_drop=args.t5_drop,
                 save_every=args.save_every, progress=not args.quiet)
    print(f"trained toy-mmdit for {info['steps']} steps in {info['wall_seconds'] / 60:.1f} min; final loss {info['final_loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
