"""Figures and tables of the organism's :class:`~loco_lib.organism.protocol.Report`: the chapter's
closing table with the paper's column, the window curves, the neuron curve, the edit tables."""
from __future__ import annotations

import numpy as np

from ..layers import format_layers
from .protocol import NEURON_KS, Report


def _neuron_row(ks) -> str:
    return "neurons: style kept at k = " + " / ".join(map(str, ks))


def summary(rep: Report) -> dict[str, str]:
    """The headline numbers of a :func:`report`, one short string per measurement (the chapter's
    closing table, the CLI's `loco report`, the comparison of training seeds)."""
    def f(x):
        return f"{x:.2f}"

    def window(attr):
        r = getattr(rep.locogen, attr)
        return f"{format_layers(r.best)}: {f(r.moved)}"

    edit, fact, sample = rep.edit, rep.fact_edit, rep.sample
    second = edit.second_window
    return {
        "sample accuracy (shape / colour / style)": f"{f(sample.shape)} / {f(sample.colour)} / {f(sample.style)}",
        "LocoGen style window, readout moved": window("style"),
        "LocoGen object window, readout moved": window("objects"),
        "LocoGen colour window, readout moved": window("colour"),
        "LocoGen fact window, readout moved": window("facts"),
        "App. G m for style": str(rep.app_g.m),
        "LocoEdit: edited style kept (held out)": f(edit.window.after["edited"].style),
        "LocoEdit: other styles kept": f(edit.window.after["other styles"].style),
        "inert-window edit: edited style kept": f"{format_layers(edit.inert.layers)}: {f(edit.inert.after['edited'].style)}",
        "second style window edit: edited style kept": (
            f"{format_layers(second.layers)}: {f(second.after['edited'].style)}" if second is not None else "-"),
        "all-layers edit: edited / other styles kept": f"{f(edit.all.after['edited'].style)} / "
                                                       f"{f(edit.all.after['other styles'].style)}",
        "fact edit at its window: new shape / colour": f"{f(fact.window.after['president'].target.shape)} / "
                                                       f"{f(fact.window.after['president'].target.colour)}",
        _neuron_row([p.k for p in rep.neurons]): " / ".join(f(p.style) for p in rep.neurons),
        "style kept, only tokens after the subject swapped": f(rep.swap("after").style),
    }


def summary_table(reports: dict, paper: dict | None = None):
    """:func:`summary` of several reports side by side (columns: name -> report), optionally with a
    first column of what the paper reports on the real models (measurement -> text)."""
    import pandas as pd

    cols = {name: summary(rep) for name, rep in reports.items()}
    table = pd.DataFrame(cols)
    if paper is not None:
        table.insert(0, "paper (real models)", [paper.get(m, "-") for m in table.index])
    return table.rename_axis("measurement")


# What the paper reports on the real models for the rows of :func:`summary` (section / figure cited).
PAPER = {
    "LocoGen style window, readout moved": "SD-1.5: layers 8-9 (Fig. 5)",
    "LocoGen object window, readout moved": "SD-1.5: layers 6-7 (Fig. 5)",
    "LocoGen fact window, readout moved": "SD-1.5: layers 6-7 (Fig. 5)",
    "App. G m for style": "2 (SD-1.5)",
    "LocoEdit: edited style kept (held out)": "removed (Fig. 8); fails on DeepFloyd (App. M)",
    "LocoEdit: other styles kept": "kept (App. L: CLIP 30.04 -> 29.99)",
    "all-layers edit: edited / other styles kept": "worse for objects and facts (App. F)",
    "fact edit at its window: new shape / colour": "President -> Biden works (Fig. 8)",
    _neuron_row(NEURON_KS): "falls with k (Fig. 10)",
    "style kept, only tokens after the subject swapped": "T5 leaks the attribute after the subject (App. M)",
}



# -- figures and tables of a report ----------------------------------------------------------------

READOUT = {"style": "style", "objects": "shape", "colour": "colour", "facts": "shape"}


def plot_windows(reports: dict, attributes=("style", "objects", "colour")):
    """One panel per model: for each attribute, how far each window of 2 layers moves its readouts
    from the clean level (0) to the fully altered level (1). ``reports``: model -> :func:`report`."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(5.2 * len(reports), 3.0), squeeze=False, sharey=True)
    for ax, (model, rep) in zip(axes[0], reports.items()):
        for attr in attributes:
            rows = [r for r in getattr(rep.locogen, attr).table if r["layers"] not in ("clean", "all")]
            ax.plot([r["start"] for r in rows], [r["moved"] for r in rows], marker="o", label=attr)
        ax.axhline(0.7, color="grey", ls=":", lw=1)
        ax.set_xlabel("first layer of the window (m = 2)")
        ax.set_title(f"{model}: LocoGen windows")
        ax.set_ylim(-0.1, 1.1)
    axes[0][0].set_ylabel("readout moved\n(clean 0 -> all layers 1)")
    axes[0][-1].legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def plot_neurons(reports: dict):
    """Style readout of the van gogh prompts as the top-k neurons are replaced, one line per model."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    for model, rep in reports.items():
        ks = [p.k for p in rep.neurons]
        ax.plot(range(len(ks)), [p.style for p in rep.neurons], marker="o", label=model)
        ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_xlabel("neurons replaced per projection (k)")
    ax.set_ylabel("images still in van gogh style")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def edit_table(rep: Report, which: str = "edit"):
    """A tidy table of an edit report (``which``: ``"edit"`` or ``"fact_edit"``): one row per
    (edit, group), readouts before and after."""
    import pandas as pd

    rows = []
    for name, r in getattr(rep, which).items():
        for group, after in r.after.items():
            before = r.before[group]
            row = {"edit at": f"{name} {format_layers(r.layers)}", "prompts": group}
            for a in ("shape", "colour", "style"):
                row[a] = f"{getattr(before, a):.2f} -> {getattr(after, a):.2f}"
            if after.target is not None:  # readouts against the target prompt: does it show the new object?
                for a in ("shape", "colour"):
                    row[f"new {a}"] = f"{getattr(before.target, a):.2f} -> {getattr(after.target, a):.2f}"
            rows.append(row)
    return pd.DataFrame(rows)


def edit_summary(reports: dict):
    """The style edit at each model's window, one row per model: van gogh, the other styles and the
    style-free prompts before -> after, and shape and colour over all prompt groups."""
    import pandas as pd

    rows = []
    for name, rep in reports.items():
        e = rep.edit.window
        change = lambda group: f"{e.before[group].style:.2f} -> {e.after[group].style:.2f}"
        mean = lambda phase, a: float(np.mean([getattr(r, a) for r in phase.values()]))
        rows.append({"model": name, "edit at": format_layers(e.layers), "van gogh, before -> after": change("edited"),
                     "other styles": change("other styles"), "no style": change("style-free"),
                     **{f"{a} (all prompts)": f"{mean(e.before, a):.2f} -> {mean(e.after, a):.2f}" for a in ("shape", "colour")}})
    return pd.DataFrame(rows)


def window_summary(reports: dict, attributes=("style", "objects", "colour", "facts")):
    """For each model and attribute: the window Algorithm 1 picks, how far its readout and its
    CLIP-score move, and the readouts at the clean image and at the window."""
    import pandas as pd

    rows = []
    for name, rep in reports.items():
        for attr in attributes:
            r = getattr(rep.locogen, attr)
            label = format_layers(r.best)
            clean, best = r.row("clean"), r.row(label)
            rows.append({"model": name, "attribute": attr, "window": label, "readout moved": round(r.moved, 2),
                         "CLIP-score moved": round(r.clip_fraction, 2),
                         **{f"{a} (clean -> window)": f"{clean[a]:.2f} -> {best[a]:.2f}" for a in ("shape", "colour", "style")}})
    return pd.DataFrame(rows)
