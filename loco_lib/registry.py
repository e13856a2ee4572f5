"""Model descriptions: what the core asks about a model instead of special-casing names.

A :class:`ModelCard` says how to load a model and what the chapters and commands should use with it
by default: sampling settings, its prompt folder, its scorer, the windows LocoGen found on it. Real
checkpoints and tiny twins need no card (the core knows them from :mod:`loco_lib.models`); a wing
such as the model organism (:mod:`loco_lib.organism`) registers cards for its models, a resolver for
its training folders, and its scorer. The core imports no wing: the package (``loco_lib/__init__``)
imports the wings after the core, so their cards are in place whenever ``loco_lib`` is imported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class ModelCard:
    name: str
    family: str  # "sd", "sdxl" or "if": the pipeline family it loads as
    load: Callable  # load(name) -> pipeline in float32 on the CPU (models.load moves and casts it)
    note: str = ""
    defaults: dict = field(default_factory=dict)  # sampling defaults: {"steps": .., "guidance": ..}
    prompts_dir: Path | None = None  # its own prompt sets: <prompts_dir>/<attribute>.yaml
    scorer: str | None = None  # the scorer its readouts use (a name get_scorer knows)
    windows: dict = field(default_factory=dict)  # attribute -> the window LocoGen found on it
    artist_prompts: Callable | None = None  # artist -> PromptSet, when the paper's App. K.1 prompts do not fit
    generic_prompts: Callable | None = None  # exclude -> unrelated prompts (App. L), when MS-COCO's do not fit
    weights_only_fp32: bool = True  # small models load in float32 only
    shipped: bool = True  # a named model (listed by known_models), not a folder found by a resolver


_CARDS: dict[str, ModelCard] = {}
_RESOLVERS: list[Callable] = []
_SCORERS: dict[str, Callable] = {}


def register(card: ModelCard) -> None:
    """Make ``card.name`` known to every loco command and function."""
    _CARDS[card.name] = card


def register_resolver(fn: Callable) -> None:
    """``fn(name) -> ModelCard | None``: cards for names that are not registered (e.g. folders)."""
    if fn not in _RESOLVERS:
        _RESOLVERS.append(fn)


def register_scorer(name: str, load: Callable) -> None:
    """A scorer by name: ``load() -> ClipScorer`` (called once, then reused)."""
    _SCORERS[name] = load


def card(model) -> ModelCard | None:
    """The card of ``model`` (a name, a folder, or a pipeline that was loaded by name), or None."""
    if model is None:
        return None
    if not isinstance(model, (str, Path)):
        model = getattr(model, "loco_name", None)
        if model is None:
            return None
    name = str(model)
    if name in _CARDS:
        return _CARDS[name]
    for fn in _RESOLVERS:
        found = fn(name)
        if found is not None:
            return found
    return None


def named() -> list[str]:
    """The names of the registered (shipped) models."""
    return [n for n, c in _CARDS.items() if c.shipped]


def scorer_loader(name: str) -> Callable | None:
    return _SCORERS.get(name)
