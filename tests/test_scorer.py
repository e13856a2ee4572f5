"""The organism's attribute scorer (loco_lib.organism.scorer): a trained CLIPModel behind the ClipScorer
interface, with zero-shot readouts of shape, colour and style."""
import numpy as np
import pytest

from loco_lib.organism import scorer as S
from loco_lib.clip_score import ClipScorer, clip_score, default_scorer_name, get_scorer
from loco_lib.errors import LocoError
from loco_lib.organism.world import COLOURS, SHAPES, STYLES, Scene, dataset, render


@pytest.fixture(scope="module")
def toy_scorer():
    return get_scorer("toy-scorer")


def test_classes_cover_the_world():
    cls = S.classes()
    assert len(cls) == len(SHAPES) * len(COLOURS) * (len(STYLES) + 1) == 64 and len(set(cls)) == 64
    assert S.class_captions(("circle", "red", None)) == ["a red circle", "a red circle in the style of a painting"]


def test_scorer_is_found_by_name_and_is_the_organisms_default(toy_scorer):
    assert default_scorer_name("toy") == default_scorer_name("toy-t5") == "toy-scorer"
    assert default_scorer_name("tiny-sd15") == "tiny" and default_scorer_name("sd15").startswith("openai/")
    assert isinstance(toy_scorer, S.AttributeScorer) and isinstance(toy_scorer, ClipScorer)
    assert get_scorer(None, "toy") is toy_scorer  # loaded once


def test_held_out_accuracy_at_least_98_percent_per_attribute(toy_scorer):
    """The issue's bar: >= 98 % per attribute on rendered images the scorer never saw."""
    acc = toy_scorer.held_out_accuracy(n=2000)
    assert set(acc) == {"shape", "colour", "style"}
    assert all(v >= 0.98 for v in acc.values()), acc


def test_readout_and_accuracy_follow_the_prompt(toy_scorer):
    rng = np.random.default_rng(3)
    scenes = [Scene("triangle", "green", "monet", 15, 16, 10), Scene("circle", "red", None, 16, 16, 10),
              Scene("cross", "blue", "van gogh", 16, 15, 10)]
    images = [render(s, rng) for s in scenes]
    reads = toy_scorer.readout(images)
    assert reads == [{"shape": s.shape, "colour": s.colour, "style": s.style} for s in scenes]
    # aliases are resolved and "a painting" means no style
    acc = toy_scorer.accuracy(images, ["a green triangle in the style of monet", "a red circle in the style of a painting",
                                       "the president in the style of van gogh"])
    assert acc == {"shape": 1.0, "colour": 1.0, "style": 1.0}
    acc = toy_scorer.accuracy(images, ["a green square in the style of monet", "a red circle in the style of picasso",
                                       "a yellow cross in the style of van gogh"])
    assert acc["shape"] == pytest.approx(2 / 3) and acc["style"] == pytest.approx(2 / 3) and acc["colour"] == pytest.approx(2 / 3)
    probs = toy_scorer.probabilities(images)
    assert all(np.allclose(p.sum(1), 1.0, atol=1e-5) for p in probs.values())


def test_clip_score_runs_unchanged_and_prefers_the_right_caption(toy_scorer):
    images, captions, _ = dataset(16, seed=11)
    right = clip_score(list(images), captions, toy_scorer)
    wrong = clip_score(list(images), captions[1:] + captions[:1], toy_scorer)
    assert right.shape == (16,) and float(right.mean()) > float(wrong.mean()) + 10


def test_wrong_inputs_are_one_line_errors(toy_scorer):
    with pytest.raises(LocoError, match="32x32"):
        toy_scorer.readout([np.zeros((64, 64, 3), np.uint8)])
    with pytest.raises(LocoError, match="2 images but 1 prompts"):
        toy_scorer.accuracy([np.zeros((32, 32, 3), np.uint8)] * 2, ["a red circle"])
    with pytest.raises(LocoError, match="no trained scorer"):
        S.load("/nonexistent/folder")


def test_training_smoke_writes_a_loadable_scorer(tmp_path):
    info = S.train(steps=3, out=tmp_path / "sc", batch=16, eval_n=32, progress=False)
    assert info["steps"] == 3 and set(info["held_out_accuracy"]) == {"shape", "colour", "style"}
    loaded = S.load(tmp_path / "sc")
    images, _, _ = dataset(4, seed=1)
    assert len(loaded.readout(list(images))) == 4
