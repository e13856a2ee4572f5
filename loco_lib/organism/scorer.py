"""The organism's attribute scorer: a small CLIP trained contrastively on the synthetic world.

The paper measures every intervention with CLIP-score (Sec. 5.1.2, Sec. 6); on the model organism
the same measurement needs a CLIP that knows the world. :func:`train` fits a transformers
``CLIPModel`` (a 32-px ViT and a word-level text encoder) to rendered images and their captions,
so :class:`AttributeScorer` *is* a :class:`~loco_lib.clip_score.ClipScorer`: ``clip_score`` and
LocoGen run on it unchanged. It adds zero-shot readouts: an image's embedding is compared with the
embeddings of the 64 canonical captions ("a red circle in the style of monet", ..., "a red circle"),
the softmax over them is summed per attribute value, and the most probable shape, colour and style
are the readout. :meth:`AttributeScorer.accuracy` is the fraction of images whose readout matches
what their prompt asks for (aliases resolved, "a painting" = no style).

    python -m loco_lib.organism.scorer --steps 1500 --out models/toy-scorer
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..clip_score import ClipScorer, _image_processor_class, _to_pil
from ..errors import LocoError
from .world import COLOURS, NEUTRAL_STYLE, SHAPES, SIZE, STYLES, dataset, parse_caption

NAME = "toy-scorer"
ATTRS = ("shape", "colour", "style")
HELD_OUT_SEED = 424_242  # the rendered images the accuracy is reported on (training never draws it)
_TRAIN_SEED_BASE = 50_000_000


def classes() -> list[tuple[str, str, str | None]]:
    """Every (shape, colour, style) the world can show; style None = flat background."""
    return [(s, c, st) for s in SHAPES for c in COLOURS for st in (*STYLES, None)]


def class_captions(cls: tuple) -> list[str]:
    shape, colour, style = cls
    base = f"a {colour} {shape}"
    return [f"{base} in the style of {style}"] if style else [base, f"{base} in the style of {NEUTRAL_STYLE}"]


def build(seed: int = 0):
    """An untrained scorer: ``(CLIPModel, tokenizer, image processor)``."""
    from transformers import CLIPConfig, CLIPModel

    from .model import MAX_TOKENS, word_tokenizer

    tok = word_tokenizer("clip")
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=MAX_TOKENS, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                           image_size=SIZE, patch_size=4),
        projection_dim=64,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(cfg)
    proc = _image_processor_class()(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    return model, tok, proc


def _pixels(images_uint8: np.ndarray, proc) -> torch.Tensor:
    """What the image processor gives for SIZE x SIZE images (rescale + normalise; resize is the identity)."""
    x = torch.from_numpy(images_uint8).float().permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(proc.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(proc.image_std).view(1, 3, 1, 1)
    return (x - mean) / std


def _labels(scenes) -> list[tuple]:
    return [(s.shape, s.colour, s.style) for s in scenes]


def train(steps: int = 1500, out: str | Path = None, seed: int = 0, batch: int = 256, lr: float = 1e-3,
          noise: float = 0.06, eval_n: int = 2000, progress: bool = True) -> dict:
    """Contrastive training on fresh world renders each step; images with the same (shape, colour,
    style) are all positives of each other (soft targets), so repeated captions are not negatives.
    Gaussian pixel noise (std up to ``noise``) makes the readouts robust to imperfect samples."""
    from tqdm.auto import tqdm

    model, tok, proc = build(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    losses, t0 = [], time.perf_counter()
    for step in tqdm(range(steps), desc="train scorer", disable=not progress):
        images, captions, scenes = dataset(batch, seed=_TRAIN_SEED_BASE + seed * 100_003 + step)
        px = _pixels(images, proc)
        sigma = noise * torch.rand(batch, 1, 1, 1, generator=gen) / torch.tensor(proc.image_std).view(1, 3, 1, 1)
        px = px + sigma * torch.randn(px.shape, generator=gen)
        enc = tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
        out_ = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=px)
        labels = _labels(scenes)
        same = torch.tensor([[a == b for b in labels] for a in labels], dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        logits = out_.logits_per_image
        loss = 0.5 * (-(target * F.log_softmax(logits, 1)).sum(1).mean() - (target * F.log_softmax(logits.T, 1)).sum(1).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    wall = time.perf_counter() - t0
    model.eval()
    scorer = AttributeScorer(model, tokenizer=tok, image_processor=proc, device="cpu")
    acc = scorer.held_out_accuracy(n=eval_n)
    info = {"steps": steps, "seed": seed, "batch": batch, "lr": lr, "noise": noise, "wall_seconds": round(wall, 1),
            "final_loss": float(np.mean(losses[-50:])), "held_out_accuracy": acc,
            "loss_curve": [round(float(np.mean(losses[i:i + 50])), 4) for i in range(0, steps, 50)]}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tok.save_pretrained(out)
        proc.save_pretrained(out)
        (out / "training.json").write_text(json.dumps(info, indent=1))
    return info


class AttributeScorer(ClipScorer):
    """A :class:`ClipScorer` that also reads off which shape, colour and style an image shows."""

    _prototypes = None

    @torch.no_grad()
    def prototypes(self) -> torch.Tensor:
        """Unit-norm text embedding of each class in :func:`classes` (mean over its captions)."""
        if self._prototypes is None:
            embs = []
            for cls in classes():
                e = self.text_embeddings(class_captions(cls)).mean(0)
                embs.append(e / e.norm())
            self._prototypes = torch.stack(embs)
        return self._prototypes

    @torch.no_grad()
    def probabilities(self, images) -> dict[str, np.ndarray]:
        """Per attribute, ``[N, values]`` probabilities (zero-shot, summed over the other attributes)."""
        pil = _to_pil(images)
        bad = [im.size for im in pil if im.size != (SIZE, SIZE)]
        if bad:
            raise LocoError(f"the toy scorer reads {SIZE}x{SIZE} images of the organism's world, got {bad[0][0]}x{bad[0][1]}")
        img = self.image_embeddings(pil)
        scale = float(self.model.logit_scale.exp())
        p = torch.softmax(scale * img @ self.prototypes().T, dim=-1).numpy()  # [N, 64]
        out = {}
        for k, attr in enumerate(ATTRS):
            values = attribute_values(attr)
            cols = np.array([values.index(c[k]) for c in classes()])
            out[attr] = np.stack([p[:, cols == j].sum(1) for j in range(len(values))], axis=1)
        return out

    def readout(self, images) -> list[dict]:
        """For each image, ``{"shape", "colour", "style"}`` it shows (style None = flat)."""
        probs = self.probabilities(images)
        n = len(next(iter(probs.values())))
        return [{a: attribute_values(a)[int(probs[a][i].argmax())] for a in ATTRS} for i in range(n)]

    def accuracy(self, images, prompts) -> dict[str, float]:
        """Fraction of images whose readout matches the prompt, per attribute (prompt i for image i)."""
        reads = self.readout(images)
        prompts = [prompts] * len(reads) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(reads):
            raise LocoError(f"{len(reads)} images but {len(prompts)} prompts")
        wants = [parse_caption(p) for p in prompts]
        return {a: float(np.mean([r[a] == w[a] for r, w in zip(reads, wants)])) for a in ATTRS}

    def unlearning_judge(self) -> "ReadoutJudge":
        """The judge of :func:`loco_lib.unlearning.baselines` on the organism: the readouts."""
        return ReadoutJudge(self)

    def held_out_accuracy(self, n: int = 2000, seed: int = HELD_OUT_SEED) -> dict[str, float]:
        """Readout accuracy on ``n`` freshly rendered images the scorer never saw in training."""
        images, _, scenes = dataset(n, seed=seed)
        reads = self.readout(list(images))
        return {a: float(np.mean([r[a] == getattr(s, a) for r, s in zip(reads, scenes)])) for a in ATTRS}


class ReadoutJudge:
    """UnlearnCanvas judging by the organism's readouts: a style prompt's image shows its concept
    when its style is read as that style; an unrelated prompt's image shows what it asks for when
    shape, colour and style (flat for a style-free prompt) are all read as the prompt says."""

    def __init__(self, scorer: AttributeScorer):
        self.scorer = scorer

    def shows_concept(self, images, prompts, concepts) -> np.ndarray:
        reads = self.scorer.readout(images) if len(images) else []
        return np.array([r["style"] == c for r, c in zip(reads, concepts)], dtype=bool)

    def shows_prompt(self, images, prompts, labels=None) -> np.ndarray:
        reads = self.scorer.readout(images) if len(images) else []
        wants = [parse_caption(p) for p in prompts]
        return np.array([all(r[a] == w[a] for a in ATTRS) for r, w in zip(reads, wants)], dtype=bool)


def attribute_values(attr: str) -> list:
    return {"shape": list(SHAPES), "colour": list(COLOURS), "style": [*STYLES, None]}[attr]


def load(folder=None, device: str = "cpu") -> AttributeScorer:
    """The trained scorer from ``models/toy-scorer`` (or ``folder``)."""
    from transformers import CLIPModel, PreTrainedTokenizerFast

    from .model import models_dir

    from ..models import quiet_libraries

    folder = Path(folder) if folder is not None else models_dir() / NAME
    if not (folder / "config.json").exists():
        raise LocoError(f"no trained scorer in {folder}: train it with `python -m loco_lib.organism.scorer --out {folder}`")
    with quiet_libraries():
        model = CLIPModel.from_pretrained(folder, dtype=torch.float32)
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    proc = _image_processor_class().from_pretrained(folder)
    return AttributeScorer(model, tokenizer=tok, image_processor=proc, device=device, name=NAME)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loco_lib.organism.scorer", description="train the organism's attribute scorer")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--out", default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = train(args.steps, args.out, seed=args.seed, batch=args.batch)
    print(json.dumps({k: v for k, v in info.items() if k != "loss_curve"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
