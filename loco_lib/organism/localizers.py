"""Two localizers on an organism: LocoGen's windows (paper Sec. 5.1, Algorithm 1) and Zarei et al.'s
attention-contribution ranking (:mod:`loco_lib.ranking`).

For each attribute, with its prompt pairs (T, T') and their subjects:

* the ranking of the text layers by the contribution of the subject's tokens on T, averaged over
  prompts, seeds and steps, and its top m layers (m = the window's size);
* how the top m agree with LocoGen's window of m: their overlap, the window's best and worst rank,
  and the overlap m * m / n that m layers drawn at random would have on average;
* what each localization does: the readouts of T's images with T''s text at the top-m layers
  (Zarei et al.'s intervention, which is LocoGen's altered input at the layers the ranking picks),
  at the window, at no layer and at every layer, and how far each moves the attribute's readout
  (clean 0, every layer 1; ``loco_lib.locogen.readouts``' measure).
"""
from __future__ import annotations

import numpy as np

from ..errors import LocoError
from ..layers import format_layers
from ..locogen import READOUT_OF
from ..ranking import agreement, rank_layers
from ..sweep import Job, run_sweep


def compare(pipe, scorer, prompts: dict, windows: dict, seeds=(0,), steps=None, rank_seeds=(0,), progress=False) -> dict:
    """``{attribute: {...}}`` for each attribute of ``prompts`` (attribute -> a
    :class:`~loco_lib.prompts.PromptSet` with subjects) and its LocoGen window in ``windows``
    (attribute -> layer list): the ranking (mean contribution per layer), the agreement of its top m
    with the window, and the readouts and readout moved of T at no layer, the top m, the window and
    every layer, over ``seeds``. The ranking is read on ``rank_seeds``."""
    if not hasattr(scorer, "accuracy"):
        raise LocoError("comparing localizers needs the organism's attribute scorer")
    missing = sorted(set(prompts) - set(windows))
    if missing:
        raise LocoError(f"no LocoGen window given for {', '.join(missing)}")
    out = {}
    for attr, pairs in prompts.items():
        if attr not in READOUT_OF:
            raise LocoError(f"attributes with readouts are {', '.join(READOUT_OF)}, not {attr!r}")
        if not pairs.subjects or any(s is None for s in pairs.subjects):
            raise LocoError(f"the {attr} prompts need a subject each (the knowledge tokens)")
        ranking = rank_layers(pipe, pairs.originals, pairs.subjects, seeds=list(rank_seeds), steps=steps, progress=progress)
        window = sorted(int(i) for i in windows[attr])
        top = ranking.top(len(window))
        n = len(ranking.layers)
        sets = {"clean": [], "ranking top": top, "LocoGen window": window, "all": list(range(n))}
        unique = [list(s) for s in dict.fromkeys(tuple(s) for s in sets.values())]
        sweep = run_sweep(pipe, pairs.originals, pairs.targets, unique, list(seeds), steps=steps, progress=progress)
        rows = {}
        for label, layers in sets.items():
            jobs = [Job(i, tuple(layers), s) for i in range(len(pairs.originals)) for s in seeds]
            rows[label] = scorer.accuracy([sweep.images[j] for j in jobs], [pairs.originals[j.prompt_index] for j in jobs])
        keys = READOUT_OF[attr]
        clean, full = rows["clean"], rows["all"]

        def moved(r):
            vals = [(clean[k] - r[k]) / (clean[k] - full[k]) for k in keys if clean[k] != full[k]]
            return float(np.mean(vals)) if vals else float("nan")

        out[attr] = {"contribution": [float(x) for x in ranking.mean], "order": ranking.order(),
                     "spread": [float(x) for x in ranking.scores.reshape(-1, n).std(axis=0)],
                     "agreement": agreement(ranking, window),
                     "readouts": {label: {k: float(v) for k, v in r.items()} for label, r in rows.items()},
                     "moved": {label: moved(r) for label, r in rows.items()},
                     "sets": {label: format_layers(layers) if layers else "-" for label, layers in sets.items()},
                     "n prompts": len(pairs.originals), "seeds": list(seeds), "rank seeds": list(rank_seeds)}
    return out


def table(results: dict):
    """One row per (model, attribute) of :func:`compare` results (model -> result)."""
    import pandas as pd

    rows = []
    for model, res in results.items():
        for attr, r in res.items():
            a = r["agreement"]
            rows.append({"model": model, "attribute": attr, "LocoGen window": a["window"], "ranking top": a["top"],
                         "overlap": a["overlap"], "random overlap": round(a["chance"], 2),
                         "window's ranks": f"{a['best rank']}, {a['worst rank']} of {a['layers']}",
                         "moved at window": round(r["moved"]["LocoGen window"], 2),
                         "moved at ranking top": round(r["moved"]["ranking top"], 2)})
    return pd.DataFrame(rows)


def plot(results: dict, attributes=("style", "objects", "facts")):
    """Bars of the mean contribution per layer (one panel per model and attribute), the LocoGen
    window's layers in orange."""
    import matplotlib.pyplot as plt

    models = list(results)
    fig, axes = plt.subplots(len(models), len(attributes), figsize=(4.2 * len(attributes), 2.4 * len(models)),
                             squeeze=False)
    for row, model in zip(axes, models):
        for ax, attr in zip(row, attributes):
            r = results[model][attr]
            contrib, spread = np.array(r["contribution"]), np.array(r["spread"])
            window = [int(x) for x in _layers(r["agreement"]["window"])]
            colours = ["tab:orange" if i in window else "tab:blue" for i in range(len(contrib))]
            ax.bar(range(len(contrib)), contrib, yerr=spread, color=colours, capsize=1.5)
            ax.set_title(f"{model}: {attr}", fontsize=9)
            ax.set_xticks(range(len(contrib)))
            ax.tick_params(labelsize=7)
        row[0].set_ylabel("contribution")
    for ax in axes[-1]:
        ax.set_xlabel("text layer")
    fig.tight_layout()
    return fig


def _layers(label: str) -> list[int]:
    from ..layers import parse_layers

    return parse_layers(label, 10_000)
