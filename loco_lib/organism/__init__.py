"""The model organism: a wing on top of the general library.

loco trains its own small text-to-image models on a synthetic world (coloured shapes with
artist-named textures), so that the paper's phenomena can be measured where no real weights can be
loaded. Everything about the organism lives here; the core library does not import it:

* :mod:`.world`    - the synthetic world: scenes, seeded rendering, captions in the paper's phrasing
* :mod:`.model`    - the organisms ``toy`` / ``toy-t5``: codec, word-level tokenizers, UNet, loading
* :mod:`.training` - training an organism from a seed (resumable): ``python -m loco_lib.organism.training``
* :mod:`.scorer`   - the attribute scorer (a CLIP trained on the world): ``python -m loco_lib.organism.scorer``
* :mod:`.protocol` - every measurement of the organism chapter, and the typed :class:`Report`
* :mod:`.records`  - recorded reports in ``data/organism/``: provenance, reading, staleness
* :mod:`.figures`  - the chapter's figures and tables of a report
* :mod:`.stability` - the chapter's headlines image by image on several seeds (not imported here)
* :mod:`.variants`  - the organisms trained beside the 2x2's four, by folder name (not imported here)
* :mod:`.mmdit`     - the joint-attention (SD3-topology) organism: build, train, load (not imported here)

Importing this package registers the organisms with :mod:`loco_lib.registry` (model cards for
``toy`` and ``toy-t5``, a resolver for training folders, the scorer ``toy-scorer``), so that
``loco_lib.load("toy")``, the chapters' defaults and every ``loco`` command know them.
"""
from __future__ import annotations

import os

from ..errors import LocoError
from ..registry import ModelCard, register, register_resolver, register_scorer
from .figures import (PAPER, edit_summary, edit_table, plot_artist_windows, plot_neurons, plot_windows,  # noqa: F401
                      summary, summary_table, two_by_two, two_by_two_findings, window_summary, window_table)
from .model import BUILTIN, SAMPLING, load_trained, organism_kind, organism_kinds
from .protocol import (NEURON_KS, Report, artist_windows, canonical_prompts, colour_pairs, committed_cache_dir, default_cache_dir,  # noqa: F401
                       edit_readouts, edit_series, inert_window, locogen_readouts, measuring_code, neuron_curve, report,
                       sample_accuracy, second_window, token_swap, training_info, weights_fingerprint)
from .records import (load_report, record_status, recorded_dir, recorded_report, save_record, save_report, status_table,  # noqa: F401
                      two_by_two_dir)

# The windows loco's own LocoGen finds on the shipped organisms (1 seed per prompt; chapter "The
# model organism", tests/test_organism.py checks that LocoGen still finds them).
WINDOWS = {
    "toy": {"style": [0, 1], "objects": [7, 8], "facts": [7, 8]},
    "toy-t5": {"style": [1, 2], "objects": [7, 8], "facts": [8, 9]},
}
NOTES = {"toy": "model organism, CLIP-style causal text encoder", "toy-t5": "model organism, T5 bidirectional text encoder",
         "toy-if": "model organism, DeepFloyd-IF-topology UNet (added K/V), T5 text encoder",
         "toy-if-clip": "model organism, DeepFloyd-IF-topology UNet (added K/V), CLIP-style text encoder",
         "toy-dit": "model organism, PixArt-topology diffusion transformer (12 blocks), T5 text encoder"}


def artist_prompts(artist, model=None):
    """App. K.1's artist prompts in the organism's world: the scenes of its style pairs in one of its
    three styles, each with its style-free counterpart (the subject is the artist)."""
    from ..prompts import PromptPair, _to_set, default_prompts, load_pairs
    from .world import STYLES

    name = "van gogh" if artist is None else str(artist).strip().lower()
    if name not in STYLES:
        raise LocoError(f"the organism knows the artists {', '.join(STYLES)}, not {artist!r}")
    src = default_prompts("style", model)
    base = [o.replace(" in the style of van gogh", "") for o in load_pairs(src).originals]
    pairs = [PromptPair(f"{b} in the style of {name}", b, name, None, name, "constructed: organism world") for b in base]
    return _to_set("style", pairs, src)


def unrelated_prompts(exclude=()) -> list[str]:
    """The organism's analogue of App. L's generic prompts: every shape x colour x style scene
    (style-free included) that names none of ``exclude`` (e.g. the edited style or object)."""
    import re

    words = [re.compile(r"(?<!\w)" + re.escape(str(x).strip().lower()) + r"(?!\w)") for x in exclude]
    return [p for p in canonical_prompts(facts=False) if not any(w.search(p) for w in words)]


def _card(name: str, shipped: bool = True) -> ModelCard:
    from ..prompts import prompts_dir

    denoiser_kind = (organism_kinds(name) or ("", ""))[1]
    family = {"pixart": "pixart", "mmdit": "sd3"}.get(denoiser_kind, "sd")
    return ModelCard(name=name, family=family, load=_load_mmdit if denoiser_kind == "mmdit" else load_trained,
                     note=NOTES.get(name, "model organism folder"),
                     defaults=dict(SAMPLING), prompts_dir=prompts_dir() / "toy", scorer="toy-scorer",
                     windows=WINDOWS.get(name, {}), artist_prompts=artist_prompts, generic_prompts=unrelated_prompts,
                     shipped=shipped)


def _load_mmdit(name: str):
    from .mmdit import load
    from .model import VIEWS, organism_folder

    folder = organism_folder(name)
    if not (folder / "transformer").is_dir():
        raise LocoError(f"no trained weights for {name!r} in {folder}: train them with "
                        f"`python -m loco_lib.organism.mmdit --out {folder}`")
    return load(folder, without_t5=name in VIEWS and name.endswith("-no-t5"))


def _resolve(name: str):
    """A card for a training folder (``training.json`` written at the end of a training); an
    unfinished one (a checkpoint only) is refused in one line."""
    if not os.path.isdir(name):
        return None
    if organism_kind(name) is not None:
        return _card(name, shipped=False)
    if os.path.isfile(os.path.join(name, "checkpoint.pt")):
        raise LocoError(f"{name!r} holds an unfinished organism training (checkpoint.pt, no training.json): "
                        f"finish it by running the same `python -m loco_lib.organism.training ... --out {name}` "
                        "command again")
    return None


def _scorer():
    from .scorer import load

    return load()


for _name in BUILTIN:
    register(_card(_name))
register_resolver(_resolve)
register_scorer("toy-scorer", _scorer)

__all__ = ["Report", "report", "load_report", "save_report", "summary", "summary_table", "artist_prompts", "WINDOWS"]
