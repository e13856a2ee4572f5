"""App. G: choosing the window size m by growing the window from the located layer.

App. G (Figs. 55-56) fixes the layer LocoGen located for an attribute on SD-1.5 (layer 8 for style),
grows the window from it, m = 1 to the largest possible (every later layer), and takes the m after
which the CLIP-score *saturates* (m = 2 on SD-1.5). For every other model it searches "locally"
around that m, scaled by the model's share of layers (SD-2.1: 3, OpenJourney: 2, SD-XL: 5,
DeepFloyd IF: 3). The paper states neither when a curve counts as saturated nor how wide the local
search is: :data:`SATURATION` and the ``radius`` of :func:`local_search` are loco's.

Sec. 5.1.2 states a second way, the smallest m for which some window meets a threshold on the mean
CLIP-score (:func:`loco_lib.locogen.select_m`); chapter 03 shows both.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import settings
from .errors import LocoError
from .layers import cross_attention_layers, format_layers
from .locogen import LOWER_IS_BETTER, _prompt_lists, check_attribute, locogen
from .sweep import Job, run_sweep

SATURATION = 0.1  # one more layer moves the score by at most this fraction of the clean -> all-layers span


@dataclass
class Growth:
    """The window grown from ``start``: ``table`` has one row per m (0 = the clean image): the layers,
    the mean and standard deviation of the score, and ``fraction``, how far it went from the clean
    score (0) to the all-layers one (1). ``m`` is the saturation point (:func:`saturation`)."""

    attribute: str
    start: int
    table: object
    clean: float
    altered_all: float
    m: int
    tolerance: float
    located: list = field(default_factory=list)  # the window the start was taken from (from_located)
    sweep: object = field(repr=False, default=None)

    def to_json(self) -> dict:
        """The curve as a table and its reading (a kept measurement comes back as this dict)."""
        return {"attribute": self.attribute, "located": [int(x) for x in self.located], "start": self.start,
                "m": self.m, "tolerance": self.tolerance, "clean": self.clean, "altered_all": self.altered_all,
                "table": self.table}


def saturation(fractions, tolerance: float = SATURATION) -> int:
    """The smallest m >= 1 from which growing the window by one more layer moves the curve by at most
    ``tolerance`` (the knee of Fig. 56: "the CLIP-Score saturates after m = 2"); the largest m when
    no step is that small. ``fractions[m]``: the fraction of the way at window size m
    (``fractions[0]``: the clean image)."""
    f = [float(x) for x in fractions]
    if len(f) < 2:
        raise LocoError("a saturation point needs the clean image and at least one window size")
    if not 0 < tolerance < 1:
        raise LocoError(f"tolerance must be in (0, 1), got {tolerance}")
    for m in range(1, len(f) - 1):
        if abs(f[m + 1] - f[m]) <= tolerance:
            return m
    return len(f) - 1


def grow(pipe, prompts, attribute: str, start: int, seeds=(0,), *, ms=None, tolerance: float = SATURATION, scorer=None,
         steps: int | None = None, guidance: float | None = None, size: int | None = None, cache_dir=None,
         batch_size: int | None = None, progress: bool | None = None) -> Growth:
    """App. G's curve: the window of layers ``start`` .. ``start + m - 1`` altered, for m in ``ms``
    (default 1 .. every layer from ``start``), scored like LocoGen (Algorithm 1) with the clean and the
    all-layers images as the two ends. The images share the sweep cache with :func:`locogen`."""
    import pandas as pd

    from .clip_score import ClipScorer

    check_attribute(attribute)
    originals, targets = _prompt_lists(prompts)
    n_layers = len(cross_attention_layers(pipe))
    if not isinstance(start, (int, np.integer)) or not 0 <= start < n_layers:
        raise LocoError(f"start must be a layer of this model, 0 to {n_layers - 1}, got {start!r}")
    largest = n_layers - int(start)
    ms = list(range(1, largest + 1)) if ms is None else [int(m) for m in ms]
    bad = [m for m in ms if not 1 <= m <= largest]
    if bad:
        raise LocoError(f"window size {bad[0]} does not fit from layer {start}: use 1 to {largest}")
    seeds = settings.seeds(seeds)
    steps, guidance = settings.steps(pipe, steps), settings.guidance(pipe, guidance)
    scorer = scorer if scorer is not None else ClipScorer()
    everything = list(range(n_layers))
    grown = [list(range(start, start + m)) for m in ms]
    sets = [[]] + grown + ([everything] if everything not in grown else [])
    against = "original" if LOWER_IS_BETTER[attribute] else "target"
    sweep = run_sweep(pipe, originals, targets, sets, seeds, steps=steps, guidance=guidance, size=size, scorer=scorer,
                      score_against=against, cache_dir=cache_dir, batch_size=batch_size, progress=progress)
    scores = lambda layers: [sweep.scores[Job(i, tuple(layers), s)] for i in range(len(originals)) for s in seeds]
    clean, full = float(np.mean(scores([]))), float(np.mean(scores(everything)))
    span = full - clean
    rows = []
    for m, layers in [(0, [])] + list(zip(ms, grown)):
        vals = scores(layers)
        mean = float(np.mean(vals))
        rows.append({"m": m, "layers": format_layers(layers) if layers else "none (clean)", "mean": mean,
                     "std": float(np.std(vals)), "fraction": 0.0 if m == 0 else float("nan") if span == 0 else (mean - clean) / span})
    table = pd.DataFrame(rows)
    if span == 0:
        raise LocoError("the clean and all-layers images score the same: no window can move the score, so there is "
                        "no curve to saturate")
    return Growth(attribute, int(start), table, clean, full, saturation(table["fraction"], tolerance), tolerance, sweep)


def from_located(pipe, prompts, attribute: str, locate_m: int = 2, seeds=(0,), **kwargs) -> Growth:
    """App. G as the paper runs it: locate the attribute with LocoGen's windows of ``locate_m``
    layers (Fig. 5: m = 2 on SD-1.5), then :func:`grow` the window from the first layer of the best
    one. ``kwargs`` go to both (they share the sweep cache)."""
    tolerance = kwargs.pop("tolerance", SATURATION)
    ms = kwargs.pop("ms", None)
    best = locogen(pipe, prompts, attribute, locate_m, seeds, **kwargs).best["layers"]
    growth = grow(pipe, prompts, attribute, best[0], seeds, ms=ms, tolerance=tolerance, **kwargs)
    growth.located = list(best)
    return growth


def scaled_m(base_m: int, base_layers: int, layers: int) -> int:
    """App. G's starting point for another model: ``base_m`` scaled by the model's share of layers."""
    return max(1, int(round(base_m * layers / base_layers)))


def local_search(pipe, prompts, attribute: str, base_m: int = 2, base_layers: int = 16, radius: int = 1,
                 tolerance: float = SATURATION, **kwargs):
    """App. G's local search: LocoGen's best window for every m within ``radius`` of
    :func:`scaled_m` (``base_m`` of SD-1.5's 16 layers by default), and the smallest of them whose
    best window's fraction of the way is within ``tolerance`` of the largest candidate's (the
    saturation point of the candidates). Returns ``(m, table)``."""
    import pandas as pd

    n_layers = len(cross_attention_layers(pipe))
    centre = scaled_m(base_m, base_layers, n_layers)
    ms = [m for m in range(centre - radius, centre + radius + 1) if 1 <= m <= n_layers]
    rows = []
    for m in ms:
        res = locogen(pipe, prompts, attribute, m, **kwargs)
        rows.append({"m": m, "best": format_layers(res.best["layers"]), "mean": res.best["mean"],
                     "fraction": res.best["fraction"]})
    table = pd.DataFrame(rows)
    top = table["fraction"].iloc[-1]
    chosen = next(int(r.m) for r in table.itertuples() if abs(top - r.fraction) <= tolerance)
    table.attrs.update(centre=centre, tolerance=tolerance)
    return chosen, table
