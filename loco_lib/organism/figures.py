"""Figures and tables of the organism's :class:`~loco_lib.organism.protocol.Report`: the chapter's
closing table with the paper's column, the window curves, the neuron curve, the edit tables."""
from __future__ import annotations

import numpy as np

from ..errors import LocoError

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
        "threshold-rule m for style (Sec. 5.1.2, 80 %)": str(rep.app_g.m),
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
    "threshold-rule m for style (Sec. 5.1.2, 80 %)": "threshold not stated; App. G's saturation: 2 (SD-1.5, Fig. 56)",
    "LocoEdit: edited style kept (held out)": "removed (Fig. 8); fails on DeepFloyd (App. M)",
    "LocoEdit: other styles kept": "not reported (Table 1 scores generic prompts: 30.04 -> 29.99)",
    "all-layers edit: edited / other styles kept": "worse for objects and facts (App. F)",
    "fact edit at its window: new shape / colour": "President -> Biden works (Fig. 8)",
    _neuron_row(NEURON_KS): "falls with k (Fig. 10)",
    "style kept, only tokens after the subject swapped": "hypothesis: with T5 they carry it (Sec. 6.2, App. M)",
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
            row = {"edit at": f"{name} {format_layers(r.layers)}" if r.layers else name, "prompts": group}  # UCE: no layers
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


def window_table(reports: dict, attributes=("style",), columns=("shape", "colour", "style", "moved", "CLIP moved")):
    """Every window's row of the LocoGen sweeps of ``attributes`` for each report: the fraction of
    images the scorer reads with the original shape / colour / style, how far the attribute's
    readout moves (``moved``: clean 0 -> every layer altered 1) and how far the CLIP-score moves
    (``CLIP moved``, the quantity Algorithm 1 ranks by). Rounded to 2 decimals. Rows: window labels
    (``clean``, ``0-1``, ..., ``all``); columns: (attribute, report name, quantity), attribute
    dropped when there is one."""
    import pandas as pd

    cols = {}
    for attr in attributes:
        for name, rep in reports.items():
            r = getattr(rep.locogen, attr)
            span = r.altered_all - r.clean
            for q in columns:
                vals = {}
                for row in r.table:
                    if q == "CLIP moved":
                        clip = row.get("clip")
                        v = (clip - r.clean) / span if clip is not None and span else float("nan")
                        if row["layers"] == "clean":
                            v = 0.0
                        elif row["layers"] == "all":
                            v = 1.0
                    else:
                        v = row[q]
                    vals[row["layers"]] = round(float(v), 2) + 0.0  # + 0.0: no "-0.00"
                cols[(attr, name, q)] = vals
    table = pd.DataFrame(cols)
    table.columns.names = ["attribute", "model", ""]
    if len(attributes) == 1:
        table = table.droplevel(0, axis=1)
    return table.rename_axis("window")


# -- the DeepFloyd chapter's 2x2 design ------------------------------------------------------------

def two_by_two(reports: dict, text_traces: dict | None = None, artists: dict | None = None):
    """The 2x2 table (text encoder causal / bidirectional x UNet cross-attention / added-K/V): one
    column per organism (``reports``: name -> :class:`Report`, whose ``training`` says its encoder
    and UNet), one row per measurement. ``text_traces``: name -> text-encoder
    :class:`~loco_lib.trace.TraceResult` (how many images corrupt; over those, the states restoring
    half the gap and the strongest, with its bootstrap interval and how many images it alone
    restores to half: :func:`loco_lib.per_image.trace_by_image`);
    ``artists``: name -> :func:`~loco_lib.organism.protocol.artist_windows` record (each style's
    window and how many distinct windows its prompts pick)."""
    import pandas as pd

    def f(x):  # a readout that cannot move (clean = every layer altered) is recorded as null
        return "n/a" if x is None or x != x else f"{x:.2f}"

    cols = {}
    for name, rep in reports.items():
        t = rep.training or {}
        enc = {"clip": "causal (CLIP)", "t5": "bidirectional (T5)"}.get(t.get("kind"), "?")
        unet = {"sd": "cross-attention (SD)", "if": "added K/V (IF)"}.get(t.get("unet") or "sd", "?")
        e = rep.edit.window
        row = {
            "sample accuracy shape / colour / style": f"{f(rep.sample.shape)} / {f(rep.sample.colour)} / {f(rep.sample.style)}",
            **{f"LocoGen {a} window (readout moved)": f"{format_layers(w.best)} ({f(w.moved)})" for a, w in rep.locogen.items()},
            "LocoEdit at the style window: van gogh kept": f"{f(e.before['edited'].style)} -> {f(e.after['edited'].style)}",
            "... other styles kept": f"{f(e.before['other styles'].style)} -> {f(e.after['other styles'].style)}",
            "... style-free prompts kept flat": f"{f(e.before['style-free'].style)} -> {f(e.after['style-free'].style)}",
            **{f"token swap '{s.which}': style kept": f(s.style) for s in rep.token_swap},
        }
        if artists and name in artists:
            for style, r in artists[name]["artists"].items():
                per = sorted({p["window"] for p in r["prompts"]})
                row[f"{style}: window (moved); distinct windows over its prompts"] = (
                    f"{format_layers(r['window'])} ({f(r['moved'])}); {len(per)}: {', '.join(per)}")
        if text_traces and name in text_traces:
            from ..per_image import trace_by_image

            tr = text_traces[name]
            tt = tr.table()
            images, used = len(tr.image_keys()), len(tr.corrupting)
            row["text trace: images corrupted / traced"] = f"{used} / {images}"
            if used:
                best = trace_by_image(tr, tr.ranking()[:1]).iloc[0]
                row["text trace: states restoring >= half the gap"] = str(int((tt["restored"] >= 0.5).sum()))
                row["text trace: strongest state (restored [90% interval]; images >= half)"] = (
                    f"{tr.states[tr.sets[tr.ranking()[0]][0]].label} ({f(float(best['restored']))} "
                    f"[{f(float(best['low']))}, {f(float(best['high']))}]; {best['images >= 50%']})")
        cols[(enc, unet, name)] = row
    table = pd.DataFrame(cols)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["text encoder", "UNet", "organism"])
    return table.rename_axis("measurement")


def plot_artist_windows(artists: dict):
    """One panel per organism (``artists``: name -> artist-window record): for each style, how far
    each window of m layers moves the style readout of that style's prompts."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(artists), figsize=(3.6 * len(artists), 2.8), squeeze=False, sharey=True)
    for ax, (name, rec) in zip(axes[0], artists.items()):
        empty = True
        for style, r in rec["artists"].items():
            moved = [np.nan if t["moved"] is None else t["moved"] for t in r["table"]]
            empty &= bool(np.all(np.isnan(moved)))
            ax.plot([t["start"] for t in r["table"]], moved, marker="o", ms=3, label=style)
        if empty:  # every layer altered leaves the readout where it was: no fraction to draw
            ax.set_xlim(-0.5, max(t["start"] for r in rec["artists"].values() for t in r["table"]) + 0.5)
            ax.text(0.5, 0.5, "no window moves\nthe style readout", transform=ax.transAxes, ha="center", va="center",
                    fontsize=9, color="grey")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"first layer of the window (m = {rec['m']})")
        ax.set_ylim(-0.1, 1.1)
    axes[0][0].set_ylabel("style readout moved")
    axes[0][-1].legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def artist_window_table(windows: dict, threshold: float = 0.5):
    """Where each artist's style is controlled (Sec. 5.2's question, artist by artist): for each
    artist's LocoGen result (``windows``: artist -> :func:`loco_lib.locogen.locogen` result or its
    dict), the window Algorithm 1 picks, its fraction of the way from the clean CLIP-score to every
    layer altered, and every window that goes at least ``threshold`` of that way, grouped into runs
    of overlapping windows ("0-2" for the windows 0-1 and 1-2), each with its best fraction."""
    import pandas as pd

    rows = []
    for artist, r in windows.items():
        r = r if isinstance(r, dict) else r.to_json()
        span = r["clean"] - r["altered_all"]
        moved = [(w["layers"], (r["clean"] - w["mean"]) / span if span else float("nan")) for w in r["windows"]]
        runs, last = [], None
        for layers, frac in moved:
            if not frac >= threshold:
                last = None
                continue
            if last is not None and layers[0] <= runs[-1][0][-1]:
                runs[-1] = (sorted(set(runs[-1][0]) | set(layers)), max(runs[-1][1], frac))
            else:
                runs.append((list(layers), frac))
            last = layers
        rows.append({"artist": artist, "window (Algorithm 1)": format_layers(r["best"]["layers"]),
                     "its fraction": round(float(r["best"]["fraction"]), 2),
                     f"layers of the windows >= {threshold:g} (best fraction)":
                         ", ".join(f"{format_layers(ls)} ({f:.2f})" for ls, f in runs) or "none",
                     "separate places": len(runs)})
    return pd.DataFrame(rows)


def _edit_works(rep, gone: float = 0.1, kept: float = 0.9) -> bool:
    e = rep.edit.window.after
    return e["edited"].style <= gone and e["other styles"].style >= kept and e["style-free"].style >= kept


def two_by_two_findings(reports: dict, artists: dict | None = None) -> list[str]:
    """Sentences read off the 2x2 measurements (``reports``: name -> :class:`Report` of the four
    organisms, ``training`` naming encoder and UNet): which factor, if either, breaks LocoEdit, what
    the token swap shows, and whether windows depend on the artist and the prompt. loco's
    thresholds: an edit *works* when at most 10 % of the edited prompts' images keep the style and
    at least 90 % of the other styles' and style-free prompts' images keep theirs."""
    cell = {}
    for name, rep in reports.items():
        t = rep.training or {}
        cell[(t.get("kind"), t.get("unet") or "sd")] = (name, rep)
    missing = [k for k in (("clip", "sd"), ("t5", "sd"), ("clip", "if"), ("t5", "if")) if k not in cell]
    if missing:
        raise LocoError(f"the 2x2 needs an organism for each (encoder, UNet); missing {missing}")
    works = {k: _edit_works(rep) for k, (_, rep) in cell.items()}
    name = {k: n for k, (n, _) in cell.items()}
    out = [("LocoEdit at the style window works on " + ", ".join(name[k] for k in works if works[k]) or "no organism")
           + ("" if all(works.values()) else "; it fails on " + ", ".join(name[k] for k in works if not works[k])) + "."]
    if all(works.values()):
        out.append("Neither factor breaks the closed-form edit on the organism: not the bidirectional encoder, not the "
                   "added-K/V UNet, not both together.")
    else:
        enc = [not works[("t5", u)] and works[("clip", u)] for u in ("sd", "if")]
        unet = [not works[(e, "if")] and works[(e, "sd")] for e in ("clip", "t5")]
        if all(enc):
            out.append("The bidirectional encoder breaks the edit with either UNet.")
        elif all(unet):
            out.append("The added-K/V UNet breaks the edit with either encoder.")
        elif not works[("t5", "if")] and sum(works.values()) == 3:
            out.append("Only the combination of T5 and the added-K/V UNet (IF's) breaks the edit.")
        else:
            out.append("The failures do not follow one factor: " + ", ".join(
                f"{name[k]} {'works' if works[k] else 'fails'}" for k in works) + ".")
    for k in (("clip", "sd"), ("t5", "sd"), ("clip", "if"), ("t5", "if")):
        rep = cell[k][1]
        after, subject = rep.swap("after").style, rep.swap("subject").style
        out.append(f"{name[k]}: van gogh style kept in {after:.0%} of images when only the tokens after the subject "
                   f"are swapped, {subject:.0%} when only the subject's are.")
    if artists:
        for k in (("clip", "sd"), ("t5", "sd"), ("clip", "if"), ("t5", "if")):
            rec = artists.get(name[k])
            if rec is None:
                continue
            wins = {s: format_layers(r["window"]) for s, r in rec["artists"].items()}
            per = {s: len({p["window"] for p in r["prompts"]}) for s, r in rec["artists"].items()}
            out.append(f"{name[k]}: artists' windows " + ", ".join(f"{s} {w}" for s, w in wins.items())
                       + ("" if len(set(wins.values())) > 1 else " (the same)")
                       + "; distinct windows over each artist's prompts: "
                       + ", ".join(f"{s} {n}" for s, n in per.items()) + ".")
    return out
