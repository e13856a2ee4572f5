"""The per-image record of a run: which model and revision, prompt, seed, window or edit, metric and its
revision, score, and the sha256 of the image, one CSV row per scored image.

Set ``LOCO_RECORDS`` to a CSV path (``loco reproduce`` sets ``<out>/records/<chapter>.csv`` for every
chapter) and every LocoGen sweep and every edit comparison appends its rows there; unset, nothing
is written. A table of a chapter can then be traced back to the exact checkpoints, seeds and
images that produced it.
"""
from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

COLUMNS = ("chapter", "source", "model", "model_revision", "prompt", "target", "seed", "layers_or_edit", "metric",
           "metric_revision", "score", "image_sha256")


def destination() -> Path | None:
    path = os.environ.get("LOCO_RECORDS")
    return Path(path) if path else None


def image_sha256(image) -> str:
    """sha256 of an image's pixels (RGB bytes), independent of how it was saved."""
    import numpy as np

    arr = np.ascontiguousarray(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8))
    return hashlib.sha256(arr.tobytes()).hexdigest()


def _hub_revision(repo: str) -> str | None:
    """The commit of a hub repository's snapshot in the local cache (no network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, local_files_only=True)).name
    except Exception:  # not a hub id, or not cached
        return None


def _weights_revision(modules) -> str:
    import torch

    h = hashlib.sha1()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return "weights-sha1:" + h.hexdigest()[:12]


def model_revision(pipe) -> str:
    """The hub commit of a pipeline loaded from the hub; otherwise a sha1 of its UNet and text
    encoders' weights (the organisms, local folders, random twins). Computed once per pipeline."""
    cached = getattr(pipe, "_loco_revision", None)
    if cached is not None:
        return cached
    name = str(pipe.config.get("_name_or_path", "") or "")
    rev = _hub_revision(name) if name and not os.path.isdir(name) else None
    if rev is None:
        import torch

        rev = _weights_revision([c for n, c in pipe.components.items() if isinstance(c, torch.nn.Module) and n != "vae"])
    try:
        pipe._loco_revision = rev
    except AttributeError:
        pass
    return rev


def metric_revision(scorer) -> str:
    if scorer is None:
        return "-"
    cached = getattr(scorer, "_loco_revision", None)
    if cached is not None:
        return cached
    rev = _hub_revision(str(getattr(scorer, "name", ""))) or (
        _weights_revision([scorer.model]) if hasattr(scorer, "model") else "-")
    try:
        scorer._loco_revision = rev
    except AttributeError:
        pass
    return rev


def write(rows) -> None:
    """Append ``rows`` (dicts with :data:`COLUMNS`' keys; missing ones are empty) to ``LOCO_RECORDS``."""
    path = destination()
    rows = list(rows)
    if path is None or not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            w.writeheader()
        chapter = os.environ.get("LOCO_CHAPTER", "")
        for r in rows:
            w.writerow({"chapter": chapter, **r})
