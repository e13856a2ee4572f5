"""LocoGen: find the window of cross-attention layers that controls an attribute (paper Sec. 5.1.2,
Algorithm 1; selection of m, Sec. 5.1.2's threshold rule, whose values App. G reports).

For m adjacent layers C' = {C_j, ..., C_{j+m-1}} (every j in 0..M-m), the layers in C' read the
target prompt T'_i (attribute removed or updated) and all others the original T_i. Each altered
image is scored with CLIP-score against T_i for *style* and *objects* (lower = the attribute is
gone) or against T'_i for *facts* (higher = the fact is updated); the window with the best mean
score over prompts and seeds is the candidate location. Two references frame the scores: the
clean model (no layer altered) and the fully altered model (every layer reads T').

Selecting m (Sec. 5.1.2's threshold rule; the paper points to App. G for the m it selects): the smallest m whose best window moves the mean score at least
``threshold`` of the way from the clean to the fully altered reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import settings
from .errors import LocoError
from .layers import cross_attention_layers, format_layers
from .sweep import Job, run_sweep

ATTRIBUTES = ("style", "objects", "facts")
LOWER_IS_BETTER = {"style": True, "objects": True, "facts": False}


def check_attribute(attribute: str) -> str:
    if attribute not in ATTRIBUTES:
        raise LocoError(f"unknown attribute {attribute!r}: use one of {', '.join(ATTRIBUTES)}")
    return attribute


def windows(n_layers: int, m: int) -> list[list[int]]:
    """All M - m + 1 windows of m adjacent layers, in order."""
    if not isinstance(m, (int, np.integer)) or not 1 <= m <= n_layers:
        raise LocoError(f"window size m must be an integer from 1 to {n_layers} (the model's layer count), got {m!r}")
    return [list(range(j, j + m)) for j in range(n_layers - m + 1)]


def _prompt_lists(prompts):
    """``(originals, targets)`` of a PromptSet or of a pair of prompt lists."""
    if hasattr(prompts, "originals") and hasattr(prompts, "targets"):
        return list(prompts.originals), list(prompts.targets)
    if not isinstance(prompts, (list, tuple)) or len(prompts) != 2:
        raise LocoError(f"prompts must be a PromptSet or a pair (originals, targets), got a {type(prompts).__name__}")
    return prompts[0], prompts[1]


@dataclass
class LocoGenResult:
    attribute: str
    m: int
    table: object  # pandas DataFrame, one row per window
    best: dict
    clean: float
    altered_all: float
    originals: list
    targets: list
    seeds: list
    sweep: object = field(repr=False, default=None)

    @property
    def lower_is_better(self) -> bool:
        return LOWER_IS_BETTER[self.attribute]

    def fraction(self, score: float) -> float:
        """How far ``score`` goes from the clean reference (0) to the fully altered one (1)."""
        span = self.altered_all - self.clean
        return float("nan") if span == 0 else (score - self.clean) / span

    def image(self, layers, prompt_index: int = 0, seed: int | None = None):
        seed = self.seeds[0] if seed is None else seed
        return self.sweep.images[Job(prompt_index, tuple(layers), seed)]

    def prompt_windows(self):
        """The best window of each prompt on its own (mean over seeds), as the paper reports IF's
        (Sec. 5.2: its facts are controlled from different layers for different prompts): one row per prompt with that window, its score, the
        prompt's clean and all-layers scores and how far the window goes between them."""
        import pandas as pd

        lower = self.lower_is_better
        rows = []
        for i, prompt in enumerate(self.originals):
            scores = [row.per_prompt[i] for row in self.table.itertuples()]
            k = int(np.argmin(scores) if lower else np.argmax(scores))
            jobs = lambda layers: [self.sweep.scores[Job(i, tuple(layers), s)] for s in self.seeds]
            n = int(self.table["layer_list"].iloc[-1][-1]) + 1
            clean, full = float(np.mean(jobs([]))), float(np.mean(jobs(list(range(n)))))
            span = full - clean
            rows.append({"prompt": prompt, "window": self.table["layers"].iloc[k], "start": int(self.table["start"].iloc[k]),
                         "score": float(scores[k]), "clean": clean, "all layers": full,
                         "fraction": float("nan") if span == 0 else (scores[k] - clean) / span})
        return pd.DataFrame(rows)

    def to_json(self) -> dict:
        """Plain JSON data (no NaN): a fraction that cannot be computed is null, with the reason."""
        rows = [{"start": int(r.start), "layers": list(r.layer_list), "mean": float(r.mean), "std": float(r.std)}
                for r in self.table.itertuples()]
        best = dict(self.best)
        if best.get("fraction") is not None and best["fraction"] != best["fraction"]:
            best["fraction"] = None
            best["fraction_note"] = "the clean and the all-layers scores are equal, so no window can move the score"
        return {"attribute": self.attribute, "m": self.m, "windows": rows, "best": best,
                "clean": self.clean, "altered_all": self.altered_all}


def locogen(
    pipe,
    prompts,
    attribute: str,
    m: int,
    seeds=(0,),
    *,
    scorer=None,
    steps: int | None = None,
    guidance: float | None = None,
    size: int | None = None,
    swap_text_paths: bool = False,
    cache_dir=None,
    batch_size: int | None = None,
    progress: bool | None = None,
    joint_text: str = "attention",
) -> LocoGenResult:
    """Score every window of ``m`` adjacent cross-attention layers for ``attribute`` (Algorithm 1).

    ``prompts``: a :class:`~loco_lib.prompts.PromptSet` or a pair ``(originals, targets)``.
    ``scorer``: a :class:`~loco_lib.clip_score.ClipScorer` (default: CLIP ViT-L/14). ``joint_text``:
    in a joint-attention transformer, what a window's blocks take from T''s run
    (:func:`loco_lib.generate.generate`).
    """
    import pandas as pd

    from .clip_score import ClipScorer

    check_attribute(attribute)
    originals, targets = _prompt_lists(prompts)
    originals = settings.prompts(pipe, originals, "original prompt")
    targets = settings.prompts(pipe, targets, "target prompt")
    n_layers = len(cross_attention_layers(pipe))
    wins = windows(n_layers, m)
    seeds = settings.seeds(seeds)
    # every setting is checked before the default scorer is loaded
    steps, guidance = settings.steps(pipe, steps), settings.guidance(pipe, guidance)
    size, batch_size = settings.size(size), settings.batch_size(batch_size)
    scorer = scorer if scorer is not None else ClipScorer()
    everything = list(range(n_layers))
    sets = [[]] + wins + ([everything] if everything not in wins else [])
    against = "original" if LOWER_IS_BETTER[attribute] else "target"
    sweep = run_sweep(pipe, originals, targets, sets, seeds, steps=steps, guidance=guidance, size=size,
                      swap_text_paths=swap_text_paths, scorer=scorer, score_against=against, cache_dir=cache_dir,
                      batch_size=batch_size, progress=progress, joint_text=joint_text)

    def per_prompt(layers) -> list[float]:
        return [float(np.mean([sweep.scores[Job(i, tuple(layers), s)] for s in seeds])) for i in range(len(originals))]

    def all_scores(layers) -> list[float]:
        return [sweep.scores[Job(i, tuple(layers), s)] for i in range(len(originals)) for s in seeds]

    rows = []
    for w in wins:
        vals = all_scores(w)
        rows.append({"start": w[0], "layers": format_layers(w), "m": m, "mean": float(np.mean(vals)),
                     "std": float(np.std(vals)), "per_prompt": per_prompt(w), "layer_list": w})
    table = pd.DataFrame(rows)
    pick = table["mean"].idxmin() if LOWER_IS_BETTER[attribute] else table["mean"].idxmax()
    best_row = table.loc[pick]
    clean = float(np.mean(all_scores([])))
    altered_all = float(np.mean(all_scores(everything)))
    best = {"start": int(best_row["start"]), "layers": list(best_row["layer_list"]), "mean": float(best_row["mean"]),
            "std": float(best_row["std"])}
    result = LocoGenResult(attribute, m, table, best, clean, altered_all, originals, targets, seeds, sweep)
    result.best["fraction"] = result.fraction(best["mean"])
    return result


# Which readouts an attribute's pairs change (the model organism's world, loco_lib.organism.world)
READOUT_OF = {"style": ("style",), "objects": ("shape",), "facts": ("shape", "colour")}


def readouts(result: LocoGenResult, scorer, keys=None):
    """Readouts of every layer set of a sweep with an attribute scorer (the model organism's).

    One row per layer set (clean, each window, all layers): for each attribute, the fraction of
    images that show what the *original* prompt asks for, and ``moved``: how far the readouts of the
    result's attribute went from the clean level (0) to the fully altered level (1), averaged over the
    readouts the attribute changes (``READOUT_OF``, or ``keys``).
    """
    import pandas as pd

    if not hasattr(scorer, "accuracy"):
        raise LocoError("readouts need an attribute scorer (loco_lib.organism.scorer, the model organism's), not a plain CLIP")
    n_layers = result.table["layer_list"].iloc[-1][-1] + 1
    sets = [("clean", [])] + [(format_layers(w), w) for w in result.table["layer_list"]] + [("all", list(range(n_layers)))]
    rows = []
    for label, layers in sets:
        jobs = [Job(i, tuple(layers), s) for i in range(len(result.originals)) for s in result.seeds]
        images = [result.sweep.images[j] for j in jobs]
        acc = scorer.accuracy(images, [result.originals[j.prompt_index] for j in jobs])
        rows.append({"layers": label, "start": layers[0] if label not in ("clean", "all") else None, **acc})
    table = pd.DataFrame(rows)
    keys = tuple(keys) if keys else READOUT_OF[result.attribute]
    clean, full = table.iloc[0], table.iloc[-1]
    table["moved"] = [float(np.mean([(clean[k] - r[k]) / (clean[k] - full[k]) if clean[k] != full[k] else np.nan for k in keys]))
                      for _, r in table.iterrows()]
    return table


@dataclass
class MSelection:
    m: int | None  # the smallest m that met the threshold (None: none did)
    threshold: float
    results: dict  # m -> LocoGenResult
    table: object  # pandas DataFrame: m, best window, best mean, fraction of the way, met


def select_m(pipe, prompts, attribute: str, threshold: float = 0.8, ms=None, stop_at_first: bool = True, **kwargs) -> MSelection:
    """Sec. 5.1.2's threshold rule: the smallest window size m whose best window meets ``threshold``.

    ``threshold`` is the fraction of the way from the clean score to the fully altered score that
    the best window must reach (0.8 = 80 %). ``ms``: the sizes to try, in order (default 1..M).
    Cached images are shared between sizes (the clean and fully altered runs are computed once).
    """
    import pandas as pd

    if not 0 < threshold <= 1:
        raise LocoError(f"threshold must be in (0, 1], got {threshold}")
    n_layers = len(cross_attention_layers(pipe))
    ms = list(ms) if ms is not None else list(range(1, n_layers + 1))
    results, rows, chosen = {}, [], None
    for m in ms:
        res = locogen(pipe, prompts, attribute, m, **kwargs)
        results[m] = res
        frac = res.best["fraction"]
        met = bool(frac >= threshold)
        rows.append({"m": m, "best": format_layers(res.best["layers"]), "mean": res.best["mean"], "fraction": frac, "met": met})
        if met and chosen is None:
            chosen = m
            if stop_at_first:
                break
    return MSelection(chosen, threshold, results, pd.DataFrame(rows))


def plot_window_scores(result: LocoGenResult, ax=None, title: str | None = None):
    """Mean CLIP-score per window (error bars: std over prompts and seeds), like the paper's Fig. 5."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 0.3 * len(result.table) + 2), 3.0))
    t = result.table
    sns.lineplot(x=t["start"], y=t["mean"], marker="o", ax=ax, label=f"window of m={result.m}")
    ax.fill_between(t["start"], t["mean"] - t["std"], t["mean"] + t["std"], alpha=0.2)
    ax.axhline(result.clean, color="grey", ls="--", lw=1, label="clean")
    ax.axhline(result.altered_all, color="black", ls=":", lw=1, label="all layers altered")
    ax.scatter([result.best["start"]], [result.best["mean"]], s=120, facecolors="none", edgecolors="red", zorder=5,
               label=f"best: layers {format_layers(result.best['layers'])}")
    against = "original prompt" if result.lower_is_better else "target prompt"
    ax.set_xlabel("first layer of the window")
    ax.set_ylabel(f"CLIP-score vs {against}")
    ax.set_title(title or f"LocoGen, {result.attribute}")
    ax.legend(fontsize=8, frameon=False)
    ax.figure.tight_layout()
    return ax.figure


def window_grid(result: LocoGenResult, prompt_index: int = 0, seed: int | None = None, ncols: int = 6):
    """The clean image, every window's altered image and the fully altered image (like App. B)."""
    from .plots import image_grid

    seed = result.seeds[0] if seed is None else seed
    wins = list(result.table["layer_list"])
    n_layers = wins[-1][-1] + 1
    sets = [[]] + wins + [list(range(n_layers))]
    titles = ["clean"] + [f"layers {format_layers(w)}" for w in wins] + ["all layers"]
    images = [result.image(s, prompt_index, seed) for s in sets]
    return image_grid(images, titles=titles, ncols=min(ncols, len(images)), size=1.8,
                      suptitle=f"{result.originals[prompt_index]!r} -> {result.targets[prompt_index]!r}")
