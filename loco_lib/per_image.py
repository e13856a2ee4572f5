"""Conclusions image by image: what an average over prompts and seeds hides.

A causal trace (Sec. 4) reads a state's effect as the fraction of the clean-corrupted gap it
restores, and :class:`~loco_lib.trace.TraceResult` takes that fraction as a ratio of means over
the prompts and seeds whose corruption corrupts (an image whose corruption barely changes its
score would add noise without evidence: the trace leaves it out and counts it). A ratio of means
can sit under a threshold while the state restores most of the gap in some images and none in
others. This module reads the same scores (kept traces hold every
one) image by image:

* :func:`trace_gaps`: each image's clean and corrupted score and their gap, flagged where the gap
  is under the trace's floor (:data:`loco_lib.trace.GAP_FLOOR`, a fraction of the clean score,
  loco's choice): the corruption did not corrupt, and the trace's own means leave it out;
* :func:`trace_by_image`: each entry's restored fraction of each image's own gap, the ratio of
  means over the images that corrupt, its bootstrap interval over those images, and how many of
  them the entry alone restores to a threshold.

The organism's LocoGen windows and LocoEdits are read the same way, from the per-image readouts
:func:`loco_lib.organism.stability.headlines` keeps:

* :func:`window_seeds`, :func:`window_headlines`, :func:`plot_window_seeds`: how far each window moves
  an attribute over every image with a bootstrap interval, on each seed alone, and which window each
  seed and each prompt picks on its own;
* :func:`edit_seeds`: each readout before and after an edit, with the after-fraction's interval and
  each seed's own;
* :func:`swap_seeds`: App. M's token swaps (:func:`loco_lib.organism.token_swaps.swap_images`), each
  token set's fraction with its interval and each seed's own.

Any sweep whose images are kept, and any table measured once per seed:

* :func:`readout_by_seed`: the fraction of images a scorer reads as their prompt asks, with its
  interval and each seed's own (e.g. chapter 5's neuron sweep);
* :func:`table_by_seed`: one table per seed side by side, with the spread of each column.

Nothing here generates an image: it reads finished measurements and images.
"""
from __future__ import annotations

import numpy as np

from .errors import LocoError

LEVEL = 0.9  # the bootstrap interval's coverage
RESAMPLES = 2000  # bootstrap resamples (a fixed generator seed: the same scores give the same interval)


def _image_label(p: int, s: int) -> str:
    return f"prompt {p}, seed {s}"


def trace_gaps(result):
    """One row per image (prompt, seed): clean and corrupted CLIP-score, their gap, and whether the
    corruption corrupts (the trace's rule: a gap of at least ``result.floor`` of the clean score)."""
    import pandas as pd

    from .trace import Run

    rows = []
    for p, s in result.image_keys():
        clean, corrupted = result.scores[Run(p, s, None)], result.scores[Run(p, s, ())]
        rows.append({"image": _image_label(p, s), "prompt": result.prompts[p], "clean": clean,
                     "corrupted": corrupted, "gap": clean - corrupted, "corrupts": result.corrupts(p, s)})
    return pd.DataFrame(rows).set_index("image")


def bootstrap_ratio(clean, corrupted, restored, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0):
    """Percentile interval of the restored fraction, a ratio of means, over images drawn with
    replacement (``[low, high]``; NaN for no image, the one value for one image)."""
    clean, corrupted, restored = (np.asarray(x, dtype=float) for x in (clean, corrupted, restored))
    n = len(clean)
    if n == 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    gap = clean[idx].mean(1) - corrupted[idx].mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (restored[idx].mean(1) - corrupted[idx].mean(1)) / gap
    ratio = ratio[np.isfinite(ratio)]
    tail = (1 - level) / 2 * 100
    return float(np.percentile(ratio, tail)), float(np.percentile(ratio, 100 - tail))


def trace_by_image(result, entries=None, threshold: float = 0.5, band: int = 0):
    """One row per traced entry (``entries``: indices into ``result.sets``, default the five
    strongest), one column per image with the fraction of that image's own gap the entry restores
    (NaN where the corruption does not corrupt), then over the images that corrupt: the ratio of
    means (``restored``), its bootstrap interval (``low``, ``high``) and how many of them the entry
    alone restores to ``threshold``."""
    import pandas as pd

    from .trace import Run

    if not 0 <= band < len(result.bands):
        raise LocoError(f"band {band} is not one of this trace's {len(result.bands)} bands")
    entries = result.ranking(band)[:5] if entries is None else list(entries)
    gaps = trace_gaps(result)
    images = result.image_keys()
    kept = [i for i, (p, s) in enumerate(images) if gaps["corrupts"].iloc[i]]
    rows = {}
    for k in entries:
        st = result.sets[k]
        score = [result.scores[Run(p, s, st, band)] for p, s in images]
        row = {}
        for i, (p, s) in enumerate(images):
            gap = gaps["gap"].iloc[i]
            row[_image_label(p, s)] = (score[i] - gaps["corrupted"].iloc[i]) / gap if i in kept else float("nan")
        clean = gaps["clean"].to_numpy()[kept]
        corrupted = gaps["corrupted"].to_numpy()[kept]
        restored = np.asarray(score, dtype=float)[kept]
        gap = clean.mean() - corrupted.mean() if kept else float("nan")
        row["restored"] = (restored.mean() - corrupted.mean()) / gap if kept else float("nan")
        row["low"], row["high"] = bootstrap_ratio(clean, corrupted, restored)
        row[f"images >= {threshold:.0%}"] = f"{sum(row[_image_label(*images[i])] >= threshold for i in kept)} of {len(kept)}"
        rows[result.set_name(k)] = row
    out = pd.DataFrame(rows).T
    out.index.name = "entry"
    return out


def plot_by_image(tables: dict, threshold: float = 0.5, title: str | None = None):
    """One panel per table of :func:`trace_by_image` (``{label: table}``): each entry a row, a dot
    per image (its fraction of its own gap), the ratio of means as a bar with its bootstrap
    interval, and the ``threshold`` line."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 0.42 * max(len(t) for t in tables.values()) + 1.3),
                             squeeze=False, sharex=True)
    for ax, (label, t) in zip(axes[0], tables.items()):
        images = [c for c in t.columns if c.startswith("prompt ")]
        y = np.arange(len(t))[::-1]
        ax.barh(y, t["restored"].astype(float), color="0.85", height=0.6)
        ax.errorbar(t["restored"].astype(float), y, xerr=[t["restored"] - t["low"], t["high"] - t["restored"]],
                    fmt="none", ecolor="0.3", capsize=3, lw=1)
        for yi, (_, row) in zip(y, t.iterrows()):
            vals = row[images].astype(float).to_numpy()
            ax.scatter(vals, np.full(len(vals), yi), s=12, color="C0", zorder=3)
        ax.axvline(threshold, ls=":", c="0.4")
        ax.set_yticks(y, [n if len(n) <= 34 else "..." + n[-31:] for n in t.index], fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("fraction of the image's gap restored")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def bootstrap_mean(values, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """The ``level`` bootstrap interval of the mean of ``values`` (resampled with replacement, a fixed
    generator seed)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise LocoError("no values to bootstrap")
    idx = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))
    means = v[idx].mean(axis=1)
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))


def paired_differences(per_image, base: str, by: str = "column", value: str = "clip"):
    """Each edited model against ``base`` image by image (the same prompt and seed), from a per-image
    table with columns ``by``, ``model``, ``prompt``, ``seed`` and ``value`` (e.g. the second table
    of :func:`loco_lib.unlearning.robustness_table`): per ``by`` and model, the images, the mean
    difference from ``base``, its bootstrap interval, the standard deviation of the differences, the
    smallest and largest difference, and the standard deviation of the base's own scores over the
    images (how far prompts differ from each other)."""
    import pandas as pd

    df = pd.DataFrame(per_image)
    missing = {by, "model", "prompt", "seed", value} - set(df.columns)
    if missing:
        raise LocoError(f"the per-image table has no column {', '.join(sorted(missing))}")
    rows = []
    for group, part in df.groupby(by, sort=False):
        ref = part[part["model"] == base].set_index(["prompt", "seed"])[value]
        if ref.empty:
            raise LocoError(f"no images of {base!r} in {by} {group!r}")
        for model, m in part[part["model"] != base].groupby("model", sort=False):
            d = (m.set_index(["prompt", "seed"])[value] - ref).dropna()
            lo, hi = bootstrap_mean(d.to_numpy())
            rows.append({by: group, "model": model, "images": len(d), "mean difference": float(d.mean()),
                         f"{LEVEL:.0%} interval": f"[{lo:.2f}, {hi:.2f}]", "std of differences": float(d.std(ddof=0)),
                         "smallest": float(d.min()), "largest": float(d.max()),
                         f"std of {base} over the images": float(ref.std(ddof=0))})
    return pd.DataFrame(rows)


# -- the organism's windows and edits, seed by seed (loco_lib.organism.stability keeps every image) ---------------

def _moved(read: dict, keys, idx) -> float:
    """How far a window's readouts go from clean (0) to every layer altered (1) over the images ``idx``:
    for each readout in ``keys`` a ratio of means (NaN where clean and all-layers read the same), then
    their mean, as :func:`loco_lib.locogen.readouts` computes it over every image."""
    vals = []
    for k in keys:
        clean, full, here = (np.asarray(read[s][k], dtype=float)[idx].mean() for s in ("clean", "all", "window"))
        vals.append((clean - here) / (clean - full) if clean != full else np.nan)
    vals = np.asarray(vals, dtype=float)
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")


def _window_read(windows: dict, label: str) -> dict:
    return {"clean": windows["read"]["clean"], "all": windows["read"]["all"], "window": windows["read"][label]}


def _pick(windows: dict, idx) -> str:
    labels = [s for s in windows["sets"] if s not in ("clean", "all")]
    means = [float(np.asarray(windows["clip"][s], dtype=float)[idx].mean()) for s in labels]
    return labels[int(np.argmin(means) if windows["lower_is_better"] else np.argmax(means))]


def _bootstrap_moved(windows: dict, label: str, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0):
    read, keys = _window_read(windows, label), windows["keys"]
    n = len(windows["images"])
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    vals = np.array([_moved(read, keys, d) for d in draws])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    return float(np.quantile(vals, tail)), float(np.quantile(vals, 1 - tail))


def window_seeds(windows: dict):
    """Every window of one attribute's sweep (:func:`loco_lib.organism.stability.window_images`): how far it
    moves the attribute's readouts over every image (``moved``) with its bootstrap interval over the
    images (prompts x seeds), on each seed alone, and how many seeds and prompts pick it on their own
    (Algorithm 1's CLIP-score mean over that seed's, or that prompt's, images)."""
    import pandas as pd

    images = np.asarray(windows["images"])
    seeds = sorted({int(s) for s in images[:, 1]})
    prompts = sorted({int(p) for p in images[:, 0]})
    by_seed = {s: np.flatnonzero(images[:, 1] == s) for s in seeds}
    by_prompt = {p: np.flatnonzero(images[:, 0] == p) for p in prompts}
    seed_picks = [_pick(windows, i) for i in by_seed.values()]
    prompt_picks = [_pick(windows, i) for i in by_prompt.values()]
    every = np.arange(len(images))
    rows = []
    for label in (s for s in windows["sets"] if s not in ("clean", "all")):
        read = _window_read(windows, label)
        lo, hi = _bootstrap_moved(windows, label)
        row = {"window": label, "moved": _moved(read, windows["keys"], every), "low": lo, "high": hi}
        row.update({f"seed {s}": _moved(read, windows["keys"], i) for s, i in by_seed.items()})
        row["seeds picking it"] = f"{seed_picks.count(label)} of {len(seeds)}"
        row["prompts picking it"] = f"{prompt_picks.count(label)} of {len(prompts)}"
        rows.append(row)
    out = pd.DataFrame(rows).set_index("window")
    out.attrs["seed picks"] = {f"seed {s}": pick for s, pick in zip(seeds, seed_picks)}  # each seed's own window
    return out


def window_headlines(results: dict, threshold: float = 0.5):
    """One row per model and attribute (``results``: model -> :func:`~loco_lib.organism.stability.headlines`):
    the window Algorithm 1 picks from every image, how far it moves the attribute with its bootstrap
    interval, each seed's own pick with how far the overall window moves on that seed, how many prompts
    pick the same window, and whether the conclusion "this window moves the attribute at least
    ``threshold`` of the way" holds on every seed and on the whole interval."""
    import pandas as pd

    rows = []
    for model, res in results.items():
        for attribute, w in res["windows"].items():
            t = window_seeds(w)
            pick = _pick(w, np.arange(len(w["images"])))  # Algorithm 1 over every image
            r = t.loc[pick]
            seeds = [c for c in t.columns if c.startswith("seed ")]
            own = t.attrs["seed picks"]
            rows.append({"model": model, "attribute": attribute, "window": pick, "images": len(w["images"]),
                         "moved": float(r["moved"]), f"{LEVEL:.0%} interval": f"[{r['low']:.2f}, {r['high']:.2f}]",
                         **{c: f"{own[c]} ({r[c]:.2f})" for c in seeds},
                         "prompts picking it": r["prompts picking it"],
                         f"moved >= {threshold:g} on every seed": bool(all(r[c] >= threshold for c in seeds)),
                         f"interval above {threshold:g}": bool(r["low"] >= threshold)})
    return pd.DataFrame(rows).set_index(["model", "attribute"])


def plot_window_seeds(results: dict, attributes=("style", "objects", "colour", "facts"), threshold: float = 0.5):
    """One panel per attribute, one colour per model: each window's ``moved`` over every image with its
    bootstrap interval (band), and each seed alone (thin lines)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(attributes), figsize=(3.6 * len(attributes), 3.0), squeeze=False, sharey=True)
    for ax, attribute in zip(axes[0], attributes):
        for c, (model, res) in enumerate(results.items()):
            t = window_seeds(res["windows"][attribute])
            x = np.arange(len(t))
            ax.plot(x, t["moved"], color=f"C{c}", lw=2, label=model)
            ax.fill_between(x, t["low"].astype(float), t["high"].astype(float), color=f"C{c}", alpha=0.2, lw=0)
            for col in (k for k in t.columns if k.startswith("seed ")):
                ax.plot(x, t[col], color=f"C{c}", lw=0.6, alpha=0.6)
            ax.set_xticks(x, [lbl.split("-")[0] for lbl in t.index], fontsize=7)
        ax.axhline(threshold, ls=":", c="0.4")
        ax.set_title(attribute, fontsize=9)
        ax.set_xlabel("window start")
    axes[0][0].set_ylabel("moved (0 clean, 1 all layers)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def edit_seeds(results: dict, edit: str = "style"):
    """One row per model, prompt group and readout of one edit of
    :func:`~loco_lib.organism.stability.headlines` (``results``: model -> headlines): the fraction of
    images before and after the edit, the after-fraction's bootstrap interval over the images, and each
    seed's after-fraction. ``target`` readouts (a prompt set's group: does the image show the target
    prompt's attribute?) are rows of their own."""
    import pandas as pd

    from .layers import format_layers

    rows = []
    for model, res in results.items():
        e = res["edits"][edit]
        for group, g in e["groups"].items():
            seeds = np.asarray(g["seeds"])
            for phase in ("", " target"):
                if f"before{phase}" not in g:
                    continue
                for readout in g[f"before{phase}"]:
                    before = np.asarray(g[f"before{phase}"][readout], dtype=float)
                    after = np.asarray(g[f"after{phase}"][readout], dtype=float)
                    lo, hi = bootstrap_mean(after)
                    rows.append({"model": model, "group": group, "readout": f"target {readout}" if phase else readout,
                                 "layers": format_layers(e["layers"]),
                                 "images": len(after), "before": before.mean(), "after": after.mean(),
                                 f"after, {LEVEL:.0%} interval": f"[{lo:.2f}, {hi:.2f}]",
                                 **{f"after, seed {s}": after[seeds == s].mean() for s in sorted(set(seeds.tolist()))}})
    return pd.DataFrame(rows).set_index(["model", "group", "readout"])


def swap_seeds(results: dict, readout: str = "style"):
    """One row per model and token set of :func:`~loco_lib.organism.token_swaps.swap_images`
    (``results``: model -> its result): the images, the fraction still showing ``readout`` as the
    prompt asks, its bootstrap interval over the images, and each seed's own fraction."""
    import pandas as pd

    rows = []
    for model, res in results.items():
        seeds = np.asarray([s for _, s in res["images"]])
        for which, reads in res["sets"].items():
            hit = np.asarray(reads[readout], dtype=float)
            lo, hi = bootstrap_mean(hit)
            rows.append({"model": model, "swapped": which, "images": len(hit), f"{readout} kept": hit.mean(),
                         f"{LEVEL:.0%} interval": f"[{lo:.2f}, {hi:.2f}]",
                         **{f"seed {s}": hit[seeds == s].mean() for s in sorted(set(seeds.tolist()))}})
    return pd.DataFrame(rows).set_index(["model", "swapped"])


def readout_by_seed(images: dict, scorer, prompts, seeds, readout: str = "style"):
    """One row per image set (``images``: label -> one image per prompt of ``prompts``, generated with
    ``seeds``, one seed per image, e.g. a :func:`loco_lib.neurons.k_sweep` row's ``images``): the
    fraction of images whose ``readout`` matches their prompt (the scorer's ``accuracy``, image by
    image), its bootstrap interval over the images, and each seed's own fraction."""
    import pandas as pd

    if not hasattr(scorer, "accuracy"):
        raise LocoError(f"the scorer {getattr(scorer, 'name', scorer)!r} reads no attributes off an image")
    prompts, seeds = list(prompts), np.asarray([int(s) for s in seeds])
    if len(prompts) != len(seeds):
        raise LocoError(f"{len(prompts)} prompts but {len(seeds)} seeds: give one seed per image")
    rows = []
    for label, ims in images.items():
        ims = list(ims)
        if len(ims) != len(prompts):
            raise LocoError(f"{label!r} has {len(ims)} images but there are {len(prompts)} prompts")
        hit = np.array([scorer.accuracy([im], [p])[readout] for im, p in zip(ims, prompts)], dtype=float)
        lo, hi = bootstrap_mean(hit)
        rows.append({"images": label, "n": len(hit), readout: hit.mean(), f"{LEVEL:.0%} interval": f"[{lo:.2f}, {hi:.2f}]",
                     **{f"seed {s}": hit[seeds == s].mean() for s in sorted(set(seeds.tolist()))}})
    return pd.DataFrame(rows).set_index("images")


def table_by_seed(tables: dict, columns):
    """The same table measured on several seeds side by side (``tables``: seed label -> table, every
    one with the same rows): for each of ``columns`` its value on each seed and the spread (largest
    minus smallest) over them, as two-level columns."""
    import pandas as pd

    if not tables:
        raise LocoError("no tables to set side by side")
    first = next(iter(tables.values()))
    for label, t in tables.items():
        if list(t.index) != list(first.index):
            raise LocoError(f"the table of {label!r} has other rows than the first one's")
        missing = [c for c in columns if c not in t.columns]
        if missing:
            raise LocoError(f"the table of {label!r} has no column {', '.join(map(str, missing))}")
    out = {}
    for c in columns:
        values = pd.DataFrame({label: t[c].astype(float) for label, t in tables.items()})
        for label in tables:
            out[(c, str(label))] = values[label]
        out[(c, "spread")] = values.max(axis=1) - values.min(axis=1)
    return pd.DataFrame(out, index=first.index)
