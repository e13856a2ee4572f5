"""The model organism's synthetic world: seeded, captions that say what the image shows."""
import itertools

import numpy as np

from loco_lib.organism.world import (BACKGROUND, COLOURS, FACTS, SHAPES, STYLES, Scene, dataset, parse_caption, render,
                            vocabulary)


def test_seeded():
    a, ca, _ = dataset(50, seed=3)
    b, cb, _ = dataset(50, seed=3)
    c, _, _ = dataset(50, seed=4)
    assert np.array_equal(a, b) and ca == cb and not np.array_equal(a, c)


def test_captions_match_scenes():
    images, captions, scenes = dataset(400, seed=0)
    for cap, sc in zip(captions, scenes):
        want = {"shape": sc.shape, "colour": sc.colour, "style": sc.style}
        assert parse_caption(cap) == want, cap
        assert all(w in vocabulary() for w in cap.split())
    assert any(c.endswith("in the style of a painting") for c in captions)
    assert any(c.startswith("the president") for c in captions)


def test_every_combination_occurs():
    _, _, scenes = dataset(3000, seed=1, fact_prob=0.0)
    seen = {(s.shape, s.colour, s.style) for s in scenes}
    assert seen == set(itertools.product(SHAPES, COLOURS, list(STYLES) + [None]))


def test_rendering_shows_the_attributes():
    base = dict(cx=16, cy=16, radius=10)
    flat = render(Scene("circle", "red", None, **base))
    assert (flat[0, 0] == BACKGROUND).all() and tuple(flat[16, 16]) == COLOURS["red"]
    textures = [render(Scene("circle", "red", s, **base))[:6, :6].tobytes() for s in STYLES]
    assert len(set(textures)) == len(STYLES)  # each style is a different background
    masks = [tuple((render(Scene(sh, "blue", None, **base)) != BACKGROUND).any(axis=2).ravel()) for sh in SHAPES]
    assert len(set(masks)) == len(SHAPES)  # each shape is a different silhouette


def test_fact_alias_denotes_its_object():
    colour, shape = FACTS["the president"]
    assert parse_caption("the president in the style of monet") == {"shape": shape, "colour": colour, "style": "monet"}
