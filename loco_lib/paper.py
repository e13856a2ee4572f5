"""What the paper reports (Sec. 5.2, Fig. 5, Fig. 7/40, App. G), for comparison and for notebook defaults.

``LOCATIONS[model][attribute] = (first layer, m)``: the window of m adjacent cross-attention layers
that LocoGen found to control the attribute, with layer indices in execution order (App. D).
``SOURCES[model][attribute]`` says where each value comes from, as one of three kinds:

* ``reported``: stated by the paper at the place named;
* ``conflicting``: the paper states two values at two places; the table holds the one
  :data:`WINDOW_RULE` picks, :data:`OTHER_M` and the note give the other;
* ``inferred``: the paper states no value; the note says what loco assumed and why.

For DeepFloyd IF the location depends on the prompt (Sec. 5.2; Fig. 40: Van Gogh from layer 12,
Monet from 16; President from 12, British Monarch from 6); the entry holds the Van Gogh /
President value.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import LocoError

LOCATIONS = {
    "sd14": {"style": (8, 2), "objects": (6, 2), "facts": (6, 2)},
    "sd15": {"style": (8, 2), "objects": (6, 2), "facts": (6, 2)},
    "openjourney": {"style": (8, 2), "objects": (6, 2), "facts": (6, 2)},
    "sd21": {"style": (8, 3), "objects": (8, 3), "facts": (7, 3)},
    "sdxl": {"style": (45, 3), "objects": (15, 5), "facts": (45, 5)},
    "deepfloyd-if": {"style": (12, 3), "objects": (12, 3), "facts": (12, 3)},
}

KINDS = ("reported", "inferred", "conflicting")


@dataclass(frozen=True)
class Source:
    """Where a value of :data:`LOCATIONS` comes from: ``kind`` (one of :data:`KINDS`), the
    paper's places (``where``) and, for inferred or conflicting values, what the choice rests on."""

    kind: str
    where: str
    note: str = ""


_SD15 = "Sec. 5.2; Fig. 5(a); App. G (m = 2)"
SOURCES = {
    "sd14": {a: Source("inferred", "-", "the paper reports no SD-1.4 windows; loco uses SD-1.5's (same UNet layout and "
                                         "CLIP text encoder)") for a in ("style", "objects", "facts")},
    "sd15": {"style": Source("reported", _SD15), "objects": Source("reported", _SD15),
             "facts": Source("reported", _SD15)},
    "openjourney": {a: Source("reported", "Sec. 5.2 (layers); App. G (m = 2)") for a in ("style", "objects", "facts")},
    "sd21": {"style": Source("conflicting", "Fig. 5(b); App. G", "m = 3 in Fig. 5(b) and App. G; Sec. 5.2 says "
                                                                     "style is at l = 8 with m = 2 for SD-1.5 and SD-2.1"),
             "objects": Source("reported", "Sec. 5.2 (l = 8); Fig. 5(b) (m = 3)"),
             "facts": Source("reported", "Sec. 5.2 (l = 7); Fig. 5(b) (m = 3)")},
    "sdxl": {"style": Source("conflicting", "Sec. 5.2; Fig. 5(c,d)", "m = 3 in Sec. 5.2 and Fig. 5's caption; App. G "
                                                                     "gives m = 5 for SD-XL"),
             "objects": Source("reported", "Sec. 5.2; Fig. 5(c,d)"),
             "facts": Source("conflicting", "Fig. 5 caption", "m = 5 in Fig. 5's caption; Sec. 5.2 gives style and facts "
                                                               "l = 45 with m = 3; App. G gives m = 5 for SD-XL")},
    "deepfloyd-if": {
        "style": Source("reported", "Fig. 40 (Van Gogh from layer 12); App. G (m = 3)",
                        "prompt-dependent (Sec. 5.2): Monet from layer 16 (Fig. 40)"),
        "objects": Source("inferred", "App. G (m = 3)", "the paper reports no objects window for IF; loco reuses the "
                                                         "layer of its style and facts examples"),
        "facts": Source("reported", "Sec. 5.2; Fig. 7 and 40 (President from layer 12); App. G (m = 3)",
                        "prompt-dependent: British Monarch from layer 6 with m = 3 (Sec. 5.2)"),
    },
}


# Where the paper states two window sizes for one model and attribute, one rule picks the value a
# chapter runs: Fig. 5 (the figure of the measured CLIP-score curves) first, then Sec. 5.2's text,
# then App. G's one m per model. ``OTHER_M`` holds the value the rule sets aside and where the paper
# states it; ``loco reproduce --param M=<it>`` runs it instead.
WINDOW_RULE = "Fig. 5 (the measured CLIP-score curves) first, then Sec. 5.2's text, then App. G's one m per model"
OTHER_M = {
    ("sd21", "style"): (2, "Sec. 5.2"),
    ("sdxl", "style"): (5, "App. G"),
    ("sdxl", "facts"): (3, "Sec. 5.2"),
}


def _real(model: str) -> str:
    """The real model whose reported values a name takes (a tiny twin: its real model's)."""
    from .models import MODELS

    spec = MODELS.get(model)
    key = spec.twin_of if spec is not None and spec.twin_of else model
    if key not in LOCATIONS:
        raise LocoError(f"the paper reports no location for {model!r}; known: {', '.join(LOCATIONS)}")
    return key


def window_size(model: str, attribute: str = "style") -> int:
    """The window size m the paper gives ``model`` for ``attribute`` (:data:`WINDOW_RULE` where it
    gives two)."""
    key = _real(model)
    if attribute not in LOCATIONS[key]:
        raise LocoError(f"unknown attribute {attribute!r}: use style, objects or facts")
    return LOCATIONS[key][attribute][1]


def other_window_size(model: str, attribute: str = "style"):
    """``(m, where)`` of the paper's second value for ``model`` and ``attribute``, or None."""
    window_size(model, attribute)  # the same errors
    return OTHER_M.get((_real(model), attribute))


# How each model samples in the paper profile. The paper states DDIM (Sec. 5.1) and no steps,
# guidance or size; the authors' public code (github.com/samyadeepbasu/LocoGen, trace_attn_layer.py and
# loco_edit.py) runs SD-1.4, SD-2.1 and OpenJourney with 50 steps, guidance 7.5 at 512 px. SD-XL and
# DeepFloyd IF appear in neither: loco keeps their pipelines' own schedulers and defaults.
SAMPLERS = {"sd": "DDIM", "sdxl": "Euler (the pipeline's)", "if": "DDPM (the pipeline's)"}
SAMPLING_SOURCES = {
    "sd": "DDIM: Sec. 5.1; steps and guidance: the authors' code",
    "sdxl": "loco's choice: the pipeline's defaults (Sec. 5.1 states DDIM for every model, no steps or "
            "guidance; the authors' code has no SD-XL)",
    "if": "loco's choice: the pipeline's defaults (Sec. 5.1 states DDIM for every model, no steps or "
          "guidance; the authors' code has no DeepFloyd IF)",
}
AUTHORS_SIZE = 512  # height = width = 512 in the authors' code, for SD-2.1 too (its native size is 768)


def sampling(model: str) -> dict:
    """``{"sampler", "steps", "guidance", "size", "where"}`` for a model of the paper (a tiny twin:
    its real model's): the settings the paper profile runs and where each comes from."""
    from .architectures import architectures, arch_key
    from .models import MODELS
    from .settings import DEFAULTS

    key = _real(model)
    family = MODELS[key].family
    return {"sampler": SAMPLERS[family], **DEFAULTS[family], "size": architectures()[arch_key(key)]["resolution"],
            "where": SAMPLING_SOURCES[family]}


def locations_table():
    """:data:`LOCATIONS` with each value's :data:`SOURCES` entry: one row per (model, attribute),
    columns window, m, kind, where, note."""
    import pandas as pd

    rows = []
    for model, found in LOCATIONS.items():
        for attr, (start, m) in found.items():
            src = SOURCES[model][attr]
            rows.append({"model": model, "attribute": attr, "window": f"layers {start}-{start + m - 1}", "m": m,
                         "kind": src.kind, "where": src.where, "note": src.note})
    return pd.DataFrame(rows).set_index(["model", "attribute"])


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
    key = _real(model)
    if attribute not in LOCATIONS[key]:
        raise LocoError(f"unknown attribute {attribute!r}: use style, objects or facts")
    start, m = LOCATIONS[key][attribute]
    return list(range(start, start + m))
