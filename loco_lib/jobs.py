"""The job engine under LocoGen's sweep (paper Sec. 5.1, Algorithm 1) and causal tracing (Sec. 4).

Both experiments are lists of independent images (a job: one prompt, seed and altered layer set; one
clean, corrupted or restored run). :class:`Jobs` does for both what does not depend on which:

* a cache on disk (:class:`SweepCache`): every finished image (PNG) and its record with its scores
  (JSON) under a key of the settings that made it, read first, so an interrupted experiment (a
  Colab disconnect) resumes and recomputes nothing that was finished; a damaged entry is computed
  again;
* computation in batches (:meth:`Jobs.run`): the caller says how one batch is computed; a batch
  that runs out of memory is halved and tried again, and later batches keep the size that fitted;
  each image is saved the moment its batch is done;
* several processes (``accelerate launch``): the caller deals out the pending work
  (:mod:`loco_lib.parallel`), :meth:`Jobs.gather` collects what every process computed;
* scores (:meth:`Jobs.score`): each image scored once against its text, in batches of 64, the score
  written into its cache record.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import parallel
from .errors import LocoError, LocoWarning
from .files import replaced, write_json


def key(meta: dict) -> str:
    """The cache key of a job: a hash of its record (chosen settings only, never a computed number)."""
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:24]


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class SweepCache:
    """A folder of finished jobs: ``<key>.png`` and ``<key>.json`` (settings and scores)."""

    def __init__(self, folder):
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LocoError(f"cannot use cache folder {str(folder)!r}: {exc.strerror or exc}") from None

    def has(self, key: str) -> bool:
        return self.folder is not None and (self.folder / f"{key}.png").exists() and (self.folder / f"{key}.json").exists()

    def load(self, key: str):
        """``(image, meta)`` of a finished entry; None when it is missing or damaged (then a
        one-line warning names the damaged file, and the caller computes the entry again)."""
        if not self.has(key):
            return None
        path = self.folder / f"{key}.png"
        try:
            img = Image.open(path)
            img.load()
            path = self.folder / f"{key}.json"
            meta = json.loads(path.read_text())
            scores = meta.get("scores", {}) if isinstance(meta, dict) else None
            if not isinstance(scores, dict) or not all(isinstance(v, dict) for v in scores.values()):
                raise ValueError("not a cache record")
        except (OSError, ValueError, SyntaxError) as exc:
            warnings.warn(f"damaged cache entry {str(path)!r} ({type(exc).__name__}): computing it again", LocoWarning,
                          stacklevel=3)
            return None
        return img, meta

    def save(self, key: str, image: Image.Image, meta: dict) -> None:
        if self.folder is None:
            return
        # whole files only, the image first: an entry counts once both are in place
        with replaced(self.folder / f"{key}.json") as tmp_json, replaced(self.folder / f"{key}.png") as tmp_png:
            image.save(tmp_png, format="PNG")
            tmp_json.write_text(json.dumps(meta, sort_keys=True))

    def update_meta(self, key: str, meta: dict) -> None:
        if self.folder is None:
            return
        write_json(self.folder / f"{key}.json", meta, sort_keys=True)


class Jobs:
    """The images of one experiment: each job's record (``records[job]``, a dict of its settings)
    and cache key (``keys[job]``; default: the record's :func:`key`), what is finished (read from
    the cache or computed now) and its scores, kept in the record under ``scores[slot][scorer
    name]``."""

    def __init__(self, cache_dir, records: dict, slot: str = "original", keys: dict | None = None):
        self.cache = SweepCache(cache_dir)
        self.records = records
        self.keys = keys if keys is not None else {job: key(meta) for job, meta in records.items()}
        self.slot = slot
        self.images: dict = {}
        self.scores: dict = {}
        self.arrays: dict = {}
        self.computed: list = []  # jobs this process generated now (the rest: the cache, other processes)
        self.fitted: int | None = None  # the batch size that fitted in memory, after a halving

    def read(self, jobs, scorer_id: str | None = None) -> list:
        """Take every finished job of ``jobs`` from the cache (its image, and its score by
        ``scorer_id`` when recorded); returns the pending ones, in order."""
        pending = []
        for job in jobs:
            entry = self.cache.load(self.keys[job])
            if entry is None:
                pending.append(job)
                continue
            img, meta = entry
            self.images[job] = img
            if scorer_id is not None and scorer_id in meta.get("scores", {}).get(self.slot, {}):
                self.scores[job] = meta["scores"][self.slot][scorer_id]
        return pending

    def run(self, items: list, size: int, compute, *, on_gpu: bool = False, bar=None, keep_arrays: bool = False,
            always: bool = False) -> None:
        """Compute ``items`` in consecutive batches of ``size`` (or of the smaller size that fitted
        after an out-of-memory halving). ``compute(batch)`` returns ``(job, float image)`` pairs, each
        kept at once (:meth:`keep`). On out-of-memory the batch is halved and tried again; a batch of
        one item that does not fit, and any other error, is raised. ``always``: call ``compute``
        once even when ``items`` is empty (a trace's clean run rides without restored runs)."""
        i = 0
        while i < len(items) or (always and i == 0):
            chunk = items[i : i + (size if self.fitted is None else min(size, self.fitted))]
            try:
                done = compute(chunk)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                if not is_oom(exc) or len(chunk) <= 1:
                    raise
                self.fitted = max(1, len(chunk) // 2)  # adapt to memory and retry the same items
                if on_gpu:
                    torch.cuda.empty_cache()
                if bar is not None:
                    bar.set_postfix(batch=self.fitted)
                continue
            for job, arr in done:
                self.keep(job, arr, keep_arrays)
            if bar is not None:
                bar.update(len(done))
            i += max(1, len(chunk))

    def keep(self, job, array, keep_arrays: bool = False) -> None:
        """A finished float image: as an 8-bit image in the results and the cache."""
        img = Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))
        self.images[job] = img
        if keep_arrays:
            self.arrays[job] = array
        self.cache.save(self.keys[job], img, {**self.records[job], "scores": {}})
        self.computed.append(job)

    def gather(self, keep_arrays: bool = False) -> None:
        """With several processes: every process gets every image the others computed."""
        if parallel.world().count > 1:
            for job, img, arr in parallel.gather([(j, self.images[j], self.arrays.get(j)) for j in self.computed]):
                self.images[job] = img
                if keep_arrays:
                    self.arrays[job] = arr

    def score(self, jobs, scorer, scorer_id: str, text_of) -> None:
        """Score every job of ``jobs`` not scored yet against ``text_of(job)``, 64 images per call
        (dealt out over the processes), and write each score into its cache record."""
        world = parallel.world()
        todo = [job for job in jobs if job not in self.scores]
        scored = []
        for k in world.share(range(0, len(todo), 64)):
            part = todo[k : k + 64]
            vals = scorer.score([self.images[j] for j in part], [text_of(j) for j in part]).tolist()
            for job, v in zip(part, vals):
                self.scores[job] = float(v)
                scored.append((job, float(v)))
                entry = self.cache.load(self.keys[job]) if self.cache.folder is not None else None
                if entry is not None:
                    meta = entry[1]
                    meta.setdefault("scores", {}).setdefault(self.slot, {})[scorer_id] = float(v)
                    self.cache.update_meta(self.keys[job], meta)
        if world.count > 1:
            self.scores.update(parallel.gather(scored))
