"""CLIP-score = 100 * max(cos(image, text), 0), checked against transformers' own feature API."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loco_lib.clip_score import ClipScorer
from loco_lib.errors import LocoError


@pytest.fixture(scope="module")
def scorer():
    # seed 2 gives both positive and negative cosines on these random images, so both sides of
    # the max(cos, 0) clamp are exercised
    return ClipScorer.tiny(seed=2)


def _images(n):
    rng = np.random.RandomState(0)
    return [rng.rand(48, 48, 3).astype(np.float32) for _ in range(n)]


TEXTS = ["a cat", "a dog", "a house in the style of van gogh", "r2d2", "the british monarch", "a painting"]


def _features(out):
    return out if torch.is_tensor(out) else out.pooler_output


def test_matches_hand_computation(scorer):
    images = _images(len(TEXTS))
    got = scorer.score(images, TEXTS)
    model = scorer.model
    with torch.no_grad():
        px = scorer.image_processor(images=[(im * 255).round().astype(np.uint8) for im in images], return_tensors="pt")["pixel_values"]
        img = _features(model.get_image_features(pixel_values=px))
        tok = scorer.tokenizer(TEXTS, padding="max_length", max_length=77, return_tensors="pt")
        txt = _features(model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]))
    cos = F.cosine_similarity(img, txt, dim=-1)
    expected = 100 * torch.clamp(cos, min=0)
    assert torch.allclose(got, expected, atol=1e-4), (got, expected)
    # the tiny scorer's seed is chosen so that both sides of the clamp occur
    assert (cos < 0).any() and (cos > 0).any()
    assert (got[cos < 0] == 0).all()


def test_batched_equals_one_by_one(scorer):
    images = _images(5)
    texts = TEXTS[:5]
    whole = ClipScorer.score(scorer, images, texts, batch_size=2)
    single = torch.cat([scorer.score([im], [t]) for im, t in zip(images, texts)])
    assert torch.allclose(whole, single, atol=1e-5)


def test_one_text_for_all_images_and_pil_input(scorer):
    from PIL import Image

    images = _images(3)
    pil = [Image.fromarray((im * 255).round().astype(np.uint8)) for im in images]
    assert torch.allclose(scorer.score(pil, "a cat"), scorer.score(images, ["a cat"] * 3), atol=1e-5)


def test_length_mismatch_is_a_clear_error(scorer):
    with pytest.raises(LocoError, match="3 images but 2 texts"):
        scorer.score(_images(3), ["a", "b"])
