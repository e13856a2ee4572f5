"""Figures: image grids (like the paper's App. B) and the layer map."""
from __future__ import annotations

import numpy as np


def _as_array(im):
    arr = np.asarray(im)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    return arr


def image_grid(images, titles=None, row_labels=None, ncols: int | None = None, size: float = 2.2, suptitle: str | None = None):
    """Show images in a grid with optional per-image titles and per-row labels; returns the figure."""
    import matplotlib.pyplot as plt

    images = list(images)
    n = len(images)
    ncols = ncols or n
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(k < n)
        if k >= n:
            continue
        ax.imshow(_as_array(images[k]), interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
        if row_labels is not None and k % ncols == 0:
            ax.set_ylabel(row_labels[k // ncols], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_layer_map(layers, title: str | None = None):
    """One bar per cross-attention layer: feature-map side, coloured by block (down / mid / up)."""
    import matplotlib.pyplot as plt

    colours = {"down": "#4c72b0", "mid": "#c44e52", "up": "#55a868"}
    fig, ax = plt.subplots(figsize=(max(5.0, 0.22 * len(layers) + 2), 2.8))
    for block, colour in colours.items():
        sel = [l for l in layers if l.block == block]
        if sel:
            ax.bar([l.index for l in sel], [l.resolution for l in sel], bottom=0.5, color=colour, label=block)
    ax.set_xlabel("cross-attention layer (execution order)")
    ax.set_ylabel("feature map side")
    ax.set_yscale("log", base=2)
    ax.set_xlim(-0.7, len(layers) - 0.3)
    ax.set_ylim(0.5, 2 * max(l.resolution for l in layers))
    ax.legend(frameon=False, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.set_title(title or f"{len(layers)} cross-attention layers", pad=22)
    fig.tight_layout()
    return fig


def pixel_change(before, after) -> np.ndarray:
    """Mean absolute pixel difference (0-255 scale) between each pair of images."""
    return np.array([np.abs(_as_array(a).astype(np.float32) - _as_array(b).astype(np.float32)).mean()
                     for a, b in zip(after, before)])


def change_maps(before, *afters):
    """Per-pixel ``|after - before|`` (mean over colour) as grey images on one shared scale.

    Returns one list of grey images per ``afters`` entry, and the difference (0-255) drawn as white,
    so several rows of a figure can be compared by eye even when the images look alike.
    """
    diffs = [[np.abs(_as_array(a).astype(np.float32) - _as_array(b).astype(np.float32)).mean(axis=-1)
              for a, b in zip(after, before)] for after in afters]
    top = max((float(d.max()) for row in diffs for d in row), default=0.0) or 1.0
    grey = lambda d: np.repeat((255 * d / top).astype(np.uint8)[..., None], 3, axis=-1)
    return [[grey(d) for d in row] for row in diffs], top


def plot_attention_maps(maps: dict, highlight: dict | None = None):
    """Fig. 62's picture: one heatmap per :class:`~loco_lib.text.AttentionMap` (``maps``: title ->
    map), rows = the attending token, columns = the attended one; ``highlight``: title -> a token
    position whose row is outlined (e.g. the subject's last token, ``tokens.subject_token_index``)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 4.0), squeeze=False)
    for ax, (title, m) in zip(axes[0], maps.items()):
        n = len(m.tokens)
        ax.imshow(m.weights.numpy(), cmap="viridis", vmin=0)
        ax.set_xticks(range(n), m.tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(n), m.tokens, fontsize=7)
        kind = "causal" if m.causal else "bidirectional"
        ax.set_title(f"{title}\nlayer {m.layer} ({kind})", fontsize=9)
        r = (highlight or {}).get(title)
        if r is not None:
            ax.add_patch(plt.Rectangle((-0.5, r - 0.5), n, 1, fill=False, edgecolor="red", lw=1.2))
    fig.tight_layout()
    return fig
