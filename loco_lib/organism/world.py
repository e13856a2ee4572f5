"""The synthetic world of loco's model organism (see the chapter "The model organism").

Small RGB images with independent attributes, and captions in the paper's phrasing, so that a tiny
text-to-image model trained on them shows each phenomenon of the paper on a CPU:

* an **object**: one of a few filled shapes (circle, square, triangle, cross);
* a **colour** of the object;
* a **style**: a grey texture on the background named after an artist ("van gogh" = diagonal
  strokes, "monet" = dots, "picasso" = checkerboard) or none (flat background);
* position and size jitter;
* a **fact**: the alias "the president" always denotes one specific object (a colour and a shape),
  which an edit can update to another one (the paper's President -> Joe Biden case).

Captions: "a red circle in the style of monet"; without style "a red circle" or "a red circle in
the style of a painting" (so "a painting" means a flat background, as the paper's target prompt);
facts: "the president in the style of van gogh". Everything is seeded (numpy), so a seed gives the
same images and captions everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 32
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (214, 40, 40),
    "green": (38, 160, 64),
    "blue": (40, 84, 220),
    "yellow": (230, 196, 30),
}
STYLES = ("van gogh", "monet", "picasso")  # None = no style (flat background)
BACKGROUND = 200  # grey level of the flat background
INK = 150  # grey level of the style textures
FACTS = {"the president": ("blue", "cross")}  # alias -> (colour, shape) it denotes
FACT_UPDATES = {"the president": ("red", "circle")}  # the "new president" an edit moves it to
NEUTRAL_STYLE = "a painting"


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    style: str | None
    cx: float  # centre, in pixels
    cy: float
    radius: float  # half the object's extent, in pixels
    alias: str | None = None  # "the president" when the caption names the object by its alias

    def caption(self, neutral: bool = False) -> str:
        """The caption; ``neutral=True`` writes a style-free scene as "... in the style of a painting"."""
        subject = self.alias if self.alias else f"a {self.colour} {self.shape}"
        if self.style:
            return f"{subject} in the style of {self.style}"
        return f"{subject} in the style of {NEUTRAL_STYLE}" if neutral else subject


def vocabulary() -> list[str]:
    """Every word a caption can contain, in a fixed order."""
    words = ["a", "in", "the", "style", "of", "painting", "president"]
    words += list(COLOURS) + list(SHAPES)
    for s in STYLES:
        words += [w for w in s.split() if w not in words]
    return words


def _texture(style: str | None, rng: np.random.Generator) -> np.ndarray:
    """The background as a [SIZE, SIZE] grey image."""
    bg = np.full((SIZE, SIZE), float(BACKGROUND))
    if style is None:
        return bg
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    phase = int(rng.integers(0, 8))
    if style == "van gogh":  # diagonal strokes, 2 px wide every 5 px
        mask = ((xx + yy + phase) % 5) < 2
    elif style == "monet":  # a lattice of dots
        mask = (((xx + phase) % 6) < 2) & (((yy + phase // 2) % 6) < 2)
    elif style == "picasso":  # 4-px checkerboard
        mask = (((xx + phase) // 4 + (yy + phase) // 4) % 2) == 0
    else:
        raise ValueError(f"unknown style {style!r}")
    bg[mask] = INK
    return bg


def _shape_mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        s = r * 0.86
        return (np.abs(dx) <= s) & (np.abs(dy) <= s)
    if shape == "triangle":  # pointing up
        h = 1.8 * r
        top, base = cy - 0.6 * h, cy + 0.4 * h
        frac = (yy - top) / h
        return (yy >= top) & (yy <= base) & (np.abs(dx) <= frac * r * 1.15)
    if shape == "cross":
        w = r * 0.38
        return ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, rng: np.random.Generator | None = None) -> np.ndarray:
    """The scene as a uint8 array [SIZE, SIZE, 3]."""
    rng = rng if rng is not None else np.random.default_rng(0)
    bg = _texture(scene.style, rng)
    img = np.repeat(bg[:, :, None], 3, axis=2)
    mask = _shape_mask(scene.shape, scene.cx, scene.cy, scene.radius)
    img[mask] = COLOURS[scene.colour]
    return img.astype(np.uint8)


def sample_scene(rng: np.random.Generator, style_prob: float = 0.75, fact_prob: float = 0.1,
                 shapes=SHAPES, colours=None, styles=STYLES) -> Scene:
    """One random scene: independent shape, colour and style, jittered position and size."""
    colours = list(colours or COLOURS)
    style = styles[int(rng.integers(len(styles)))] if rng.random() < style_prob else None
    radius = float(rng.uniform(8.5, 11.0))
    cx = float(SIZE / 2 + rng.uniform(-3.0, 3.0))
    cy = float(SIZE / 2 + rng.uniform(-3.0, 3.0))
    if rng.random() < fact_prob:
        alias = list(FACTS)[int(rng.integers(len(FACTS)))]
        colour, shape = FACTS[alias]
        return Scene(shape, colour, style, cx, cy, radius, alias)
    shape = shapes[int(rng.integers(len(shapes)))]
    colour = colours[int(rng.integers(len(colours)))]
    return Scene(shape, colour, style, cx, cy, radius)


def dataset(n: int, seed: int = 0, neutral_prob: float = 0.5, **kwargs):
    """``n`` (image uint8 [n, SIZE, SIZE, 3], captions, scenes) drawn with ``seed``.

    Style-free scenes are captioned "... in the style of a painting" with probability ``neutral_prob``.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    captions, scenes = [], []
    for i in range(n):
        scene = sample_scene(rng, **kwargs)
        images[i] = render(scene, rng)
        captions.append(scene.caption(neutral=scene.style is None and rng.random() < neutral_prob))
        scenes.append(scene)
    return images, captions, scenes


def parse_caption(caption: str) -> dict:
    """What a caption asks for: ``{"shape", "colour", "style"}`` (alias resolved; style None = flat)."""
    text = caption.strip().lower()
    style = None
    if " in the style of " in text:
        text, style = text.split(" in the style of ", 1)
        style = None if style == NEUTRAL_STYLE else style
    if text in FACTS:
        colour, shape = FACTS[text]
    else:
        words = text.split()
        colour = next((w for w in words if w in COLOURS), None)
        shape = next((w for w in words if w in SHAPES), None)
    return {"shape": shape, "colour": colour, "style": style}
