"""Pictures. Pure functions: they draw what they are given, compute no gradients,
change no global settings, and take ``ax=`` so they can fill a panel of a bigger
figure. Each returns the figure it drew on.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "figure_to_png",
    "image_grid",
    "outline_masks",
    "overlay_heatmap",
    "show_image",
    "topk_bars",
]


def _axes(ax, figsize=(3, 3)):
    if ax is None:
        fig = Figure(figsize=figsize)
        ax = fig.add_subplot()
    return ax


def _as_display(image) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float32)
    if not np.isfinite(img).all():
        raise ValueError("the image contains NaN or infinite values")
    if img.min() < -1e-6 or img.max() > 1 + 1e-6:
        raise ValueError(
            f"float images are shown in [0, 1], this one spans [{img.min():.3g}, {img.max():.3g}]; "
            "undo the normalisation first (LoadedModel.to_display)"
        )
    return img.clip(0, 1)


def show_image(image, ax=None, title: str | None = None):
    """An RGB image ((H, W, 3) uint8, or floats in [0, 1]) without ticks."""
    ax = _axes(ax)
    img = _as_display(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure


def image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 6, size: float = 1.6):
    """Several images in a grid, each with an optional title."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to show")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(size * ncols, size * nrows + 0.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            show_image(images[i], ax=ax, title=titles[i] if titles else None)
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig


def outline_masks(image, masks, ax=None, labels: Sequence[str] | None = None, title: str | None = None):
    """The image with each object's mask drawn as a coloured outline."""
    ax = _axes(ax)
    show_image(image, ax=ax, title=title)
    colours = ["#ffffff", "#ffd400", "#00e5ff"]
    for i, mask in enumerate(masks):
        c = colours[i % len(colours)]
        ax.contour(np.asarray(mask, float), levels=[0.5], colors=[c], linewidths=1.5)
        if labels:
            ys, xs = np.nonzero(mask)
            ax.text(xs.mean(), ys.min() - 1.5, labels[i], color=c, ha="center", va="bottom", fontsize=8,
                    bbox=dict(facecolor="black", alpha=0.5, pad=1, linewidth=0))
    return ax.figure


def overlay_heatmap(image, heatmap, ax=None, alpha: float = 0.5, cmap: str = "jet", title: str | None = None):
    """A heat map (any size, values in [0, 1]) stretched over the image."""
    ax = _axes(ax)
    img = _as_display(image)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"a heat map is 2-D, got shape {heat.shape}")
    show_image(img, ax=ax, title=title)
    h, w = img.shape[:2]
    ax.imshow(heat, cmap=cmap, alpha=alpha, extent=(-0.5, w - 0.5, h - 0.5, -0.5), vmin=0, vmax=1,
              interpolation="bilinear")
    return ax.figure


def topk_bars(top: Sequence[tuple[str, float]], ax=None, title: str | None = None, highlight: str | None = None):
    """Horizontal bars of (class name, probability), the most likely on top."""
    ax = _axes(ax, figsize=(3.5, 2.5))
    names = [n for n, _ in top][::-1]
    probs = [p for _, p in top][::-1]
    colours = ["#d62728" if n == highlight else "#1f77b4" for n in names]
    ax.barh(range(len(names)), probs, color=colours)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability", fontsize=8)
    for i, p in enumerate(probs):
        ax.text(min(p + 0.02, 0.8), i, f"{p:.0%}", va="center", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure


def figure_to_png(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for an ``ipywidgets.Image``); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
