"""The organisms trained beside the 2x2's four, by their folder's name: ``toy-if-xattn`` and
``toy-t5-long`` (chapter 6).

They are not shipped organisms (:data:`~loco_lib.organism.model.BUILTIN`), so ``loco_lib.load``
knows them only by their folder's path, and a kept measurement given that path as an argument would
be keyed by where the repository sits on this machine. :func:`headlines` takes the name instead and
resolves the folder under ``models/`` itself, so the kept file's key holds only chosen inputs and
committed bytes. Nothing in the organism package imports this module: the other kept measurements'
keys do not depend on it.
"""
from __future__ import annotations

from ..errors import LocoError

BESIDE = ("toy-if-xattn", "toy-t5-long")


def folder(name: str):
    """``models/<name>`` of an organism of :data:`BESIDE`; a one-line error for any other name."""
    from .model import models_dir

    if name not in BESIDE:
        raise LocoError(f"{name!r} is not one of the organisms trained beside the 2x2's: {', '.join(BESIDE)}")
    path = models_dir() / name
    if not (path / "training.json").is_file():
        raise LocoError(f"no trained {name!r} in {path}: its recipe is in loco_lib/organism/training.py's docstring")
    return path


def load(name: str):
    """The organism ``name`` of :data:`BESIDE`, with the context it was trained at (77 tokens for
    ``toy-t5-long``, via :func:`~loco_lib.organism.training.load_long_context`)."""
    from ..models import load as load_model
    from .training import load_long_context, trained_context

    path = folder(name)
    if trained_context(path) is not None:
        return load_long_context(path)
    return load_model(str(path), progress=False)


def headlines(name: str, scorer, seeds=(0, 1, 2, 3), steps=None, cache_dir=None, progress: bool = False) -> dict:
    """:func:`~loco_lib.organism.stability.headlines` on the organism ``name`` of :data:`BESIDE`
    (loaded by :func:`load`), the result's ``model`` being the name, not the folder's path."""
    from .stability import headlines as measure_headlines

    out = measure_headlines(str(folder(name)), load(name), scorer, seeds=seeds, steps=steps, cache_dir=cache_dir,
                            progress=progress)
    out["model"] = name
    return out
