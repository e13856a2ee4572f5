"""CLIP-score (Hessel et al. 2021), the measurement of LocoGen and LocoEdit (paper Sec. 5.1.2).

``score(image, text) = 100 * max(cos(E_img(image), E_txt(text)), 0)`` with transformers'
``CLIPModel`` (the "x100" convention the paper's ~30-point numbers use; Hessel et al. scale by 2.5
instead, which only rescales). The default scorer is ``openai/clip-vit-large-patch14``, the image
encoder family of SD-1.x's text encoder; any CLIP checkpoint id or folder can be passed.

:meth:`ClipScorer.tiny` builds an offline scorer (random weights, real CLIP tokenizer, 32-px
images) so the scoring code runs in tests without a download; its numbers mean nothing.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .errors import LocoError

DEFAULT_SCORER = "openai/clip-vit-large-patch14"


def _image_processor_class():
    try:
        from transformers import CLIPImageProcessorPil  # transformers 5: the torchvision-free processor

        return CLIPImageProcessorPil
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor


def _to_pil(images) -> list[Image.Image]:
    if isinstance(images, (Image.Image, np.ndarray)):
        images = [images]
    out = []
    for im in images:
        if isinstance(im, Image.Image):
            out.append(im.convert("RGB"))
        else:
            arr = np.asarray(im)
            if arr.dtype != np.uint8:
                arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
            out.append(Image.fromarray(arr).convert("RGB"))
    return out


def _load_parts(source: str, tokenizer, image_processor):
    """Tokenizer, image processor and ``CLIPModel`` of a hub id or folder: from the local cache first,
    from the Hub only when it answers (:func:`loco_lib.models.from_hub`); one LocoError line on failure."""
    from transformers import CLIPModel, CLIPTokenizer

    from .models import from_hub, quiet_libraries

    def parts(local_files_only: bool):
        kw = {"local_files_only": local_files_only}
        return (tokenizer or CLIPTokenizer.from_pretrained(source, **kw),
                image_processor or _image_processor_class().from_pretrained(source, **kw),
                CLIPModel.from_pretrained(source, **kw))

    with quiet_libraries():
        return from_hub(parts, source, "the CLIP scorer")


class ClipScorer:
    """Batched CLIP-score with a transformers ``CLIPModel``."""

    def __init__(self, model=DEFAULT_SCORER, tokenizer=None, image_processor=None, device: str | None = None,
                 name: str | None = None):
        from . import settings

        self.device = settings.device(device)
        name = name or (model if isinstance(model, str) else None)
        if isinstance(model, str):
            tokenizer, image_processor, model = _load_parts(model, tokenizer, image_processor)
        self.name = name or (model if isinstance(model, str) else type(model).__name__)  # cache key of scores
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor

    @classmethod
    def tiny(cls, seed: int = 7, device: str = "cpu") -> "ClipScorer":
        # seed 7 gives positive cosines on the tiny twins' images, so a sweep on a twin shows
        # varying (meaningless) numbers instead of a column of clamped zeros.
        from transformers import CLIPConfig, CLIPModel

        from .tokenizers import clip_tokenizer

        cfg = CLIPConfig(
            text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, max_position_embeddings=77, bos_token_id=49406,
                             eos_token_id=49407, pad_token_id=1),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                               image_size=32, patch_size=8),
            projection_dim=16,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIPModel(cfg)
        proc = _image_processor_class()(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        return cls(model, tokenizer=clip_tokenizer(), image_processor=proc, device=device, name=f"tiny-random-clip-{seed}")

    @torch.no_grad()
    def image_embeddings(self, images, batch_size: int = 32) -> torch.Tensor:
        """Unit-norm image embeddings ``[N, P]``."""
        pil = _to_pil(images)
        out = []
        for i in range(0, len(pil), batch_size):
            px = self.image_processor(images=pil[i : i + batch_size], return_tensors="pt")["pixel_values"]
            px = px.to(self.device, self.model.dtype)
            pooled = self.model.vision_model(pixel_values=px).pooler_output
            out.append(self.model.visual_projection(pooled).float())
        emb = torch.cat(out)
        return emb / emb.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def text_embeddings(self, texts, batch_size: int = 64) -> torch.Tensor:
        """Unit-norm text embeddings ``[N, P]``."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(texts[i : i + batch_size], padding="max_length", truncation=True,
                                 max_length=self.tokenizer.model_max_length, return_tensors="pt").to(self.device)
            pooled = self.model.text_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).pooler_output
            out.append(self.model.text_projection(pooled).float())
        emb = torch.cat(out)
        return emb / emb.norm(dim=-1, keepdim=True)

    def score(self, images, texts, batch_size: int = 32) -> torch.Tensor:
        """CLIP-score of image i against text i (one text may serve all images): ``[N]`` in 0..100."""
        pil = _to_pil(images)
        texts = [texts] if isinstance(texts, str) else list(texts)
        if len(texts) == 1 and len(pil) > 1:
            texts = texts * len(pil)
        if len(texts) != len(pil):
            raise LocoError(f"{len(pil)} images but {len(texts)} texts to score them against")
        img = self.image_embeddings(pil, batch_size)
        txt = self.text_embeddings(texts)
        return 100.0 * (img * txt).sum(dim=-1).clamp(min=0)


_DEFAULT: dict = {}


def clip_score(images, texts, scorer: ClipScorer | None = None) -> torch.Tensor:
    """CLIP-score with ``scorer`` (default: a cached ``openai/clip-vit-large-patch14`` scorer)."""
    if scorer is None:
        if "s" not in _DEFAULT:
            _DEFAULT["s"] = ClipScorer(DEFAULT_SCORER)
        scorer = _DEFAULT["s"]
    return scorer.score(images, texts)


def default_scorer_name(model: str | None) -> str:
    """``"tiny"`` (the offline random scorer) for the tiny twins, the scorer a model's card names (the
    organisms: ``"toy-scorer"``), CLIP ViT-L/14 otherwise."""
    from .registry import card

    if model and str(model).startswith("tiny-"):
        return "tiny"
    c = card(model)
    if c is not None and c.scorer:
        return c.scorer
    return DEFAULT_SCORER


def get_scorer(name: str | None = None, model: str | None = None) -> ClipScorer:
    """A scorer by name: ``"tiny"``, a registered one (``"toy-scorer"``), a CLIP hub id or folder;
    ``None`` picks the default for ``model``. A registered scorer is loaded once and reused."""
    from .registry import scorer_loader

    name = name or default_scorer_name(model)
    if name == "tiny":
        return ClipScorer.tiny()
    loader = scorer_loader(name)
    if loader is not None:
        if name not in _DEFAULT:
            _DEFAULT[name] = loader()
        return _DEFAULT[name]
    return ClipScorer(name)
