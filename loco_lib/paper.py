"""What the paper reports (Sec. 5.2, Fig. 5, App. G), for comparison and for notebook defaults.

``LOCATIONS[model][attribute] = (first layer, m)``: the window of m adjacent cross-attention layers
that LocoGen found to control the attribute, with layer indices in execution order (App. D). For
DeepFloyd IF the location depends on the prompt (Van Gogh 12, Monet 16; President 12, British
Monarch 6); the entry holds the Van Gogh / President value.
"""
from __future__ import annotations

from .errors import LocoError

LOCATIONS = {
    "sd14": {"style": (8, 2), "objects": (6, 2), "facts": (6, 2)},  # SD-1.x share SD-1.5's layout and findings
    "sd15": {"style": (8, 2), "objects": (6, 2), "facts": (6, 2)},
    "openjourney": {"style": (8, 2), "objects": (6, 2), "facts": (6, 2)},
    "sd21": {"style": (8, 3), "objects": (8, 3), "facts": (7, 3)},
    "sdxl": {"style": (45, 3), "objects": (15, 5), "facts": (45, 5)},
    "deepfloyd-if": {"style": (12, 3), "objects": (12, 3), "facts": (12, 3)},
}


def default_window(model: str, attribute: str = "style") -> list[int]:
    """The window a chapter alters or edits by default: the one the model's card records (loco's own
    measurement on the model organisms), the paper's for every other model (:func:`paper_window`)."""
    from .registry import card

    c = card(model)
    if c is not None and c.windows:
        if attribute not in c.windows:
            raise LocoError(f"unknown attribute {attribute!r}: use style, objects or facts")
        return list(c.windows[attribute])
    return paper_window(model, attribute)


def paper_window(model: str, attribute: str = "style") -> list[int]:
    """The layers the paper localizes ``attribute`` to for ``model`` (tiny twins: their real model's)."""
    from .models import MODELS

    spec = MODELS.get(model)
    key = spec.twin_of if spec is not None and spec.twin_of else model
    if key not in LOCATIONS:
        raise LocoError(f"the paper reports no location for {model!r}; known: {', '.join(LOCATIONS)}")
    if attribute not in LOCATIONS[key]:
        raise LocoError(f"unknown attribute {attribute!r}: use style, objects or facts")
    start, m = LOCATIONS[key][attribute]
    return list(range(start, start + m))
