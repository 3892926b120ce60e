"""Pictures. Pure functions: they draw what they are given, compute no gradients,
change no global settings, and take ``ax=`` so they can fill a panel of a bigger
figure. Each returns the figure it drew on.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import PIL.Image
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import filters

__all__ = ["DIVERGING", "draw_kernels", "draw_rgb_filters", "figure_to_png", "frame_tile", "image_grid", "mosaic",
           "outline_masks", "overlay_heatmap", "rgb_to_png", "show_feature_maps", "show_image", "show_saliency",
           "topk_bars"]


#: Colour map for signed values (weights): blue negative, white zero, red positive.
DIVERGING = "RdBu_r"
#: Behind mosaics whose gaps are NaN, so that a zero (white) stands out from a gap.
GAP_COLOUR = "#c8c8c8"


def _axes(ax, figsize=(3, 3)):
    return Figure(figsize=figsize).add_subplot() if ax is None else ax


def _finish(ax, title: str | None, ticks: bool = False):
    """Ticks off (unless ``ticks``), the title if any: the figure, to return."""
    if not ticks:
        ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure


def _as_display(image) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float32)
    if not np.isfinite(img).all():
        raise ValueError("the image contains NaN or infinite values")
    if img.min() < -1e-6 or img.max() > 1 + 1e-6:
        raise ValueError(f"float images are shown in [0, 1], this one spans [{img.min():.3g}, {img.max():.3g}]; "
                         "undo the normalisation first (LoadedModel.to_display)")
    return img.clip(0, 1)


def show_image(image, ax=None, title: str | None = None):
    """An RGB image ((H, W, 3) uint8, or floats in [0, 1]) without ticks."""
    ax = _axes(ax)
    img = _as_display(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
    return _finish(ax, title)


def image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 6, size: float = 1.6):
    """Several images in a grid, each with an optional title."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to show")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(size * ncols, size * nrows + 0.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, image in enumerate(images):
        show_image(image, ax=axes.flat[i], title=titles[i] if titles else None)
    for ax in axes.flat[n:]:
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


def show_saliency(smap, display: str, ax=None, image=None, alpha: float = 0.0, title: str | None = None):
    """A map from ``saliency.saliency_map`` drawn the way its ``display`` means it: ``abs`` / ``positive``
    ((H, W) in [0, 1]) in a heat colour map, ``signed`` ((H, W) in [-1, 1]) in :data:`DIVERGING` centred
    on zero, ``rgb`` ((H, W, 3), 0.5 = zero) as a colour image. With an ``image`` and ``alpha`` > 0 the
    map is laid over the image with opacity ``alpha`` (``rgb`` never is).
    """
    ax = _axes(ax)
    m = np.asarray(smap.detach().cpu() if isinstance(smap, torch.Tensor) else smap, dtype=np.float32)
    if display == "rgb":
        if m.ndim != 3 or m.shape[-1] != 3:
            raise ValueError(f"an rgb saliency map has shape (H, W, 3), got {m.shape}")
        return show_image(m.clip(0, 1), ax=ax, title=title)
    if display not in ("abs", "positive", "signed"):
        raise ValueError(f"unknown display {display!r}; choose abs, positive, signed or rgb")
    if m.ndim != 2:
        raise ValueError(f"a saliency map is 2-D (H, W), got shape {m.shape}")
    cmap, lo = (DIVERGING, -1.0) if display == "signed" else ("inferno", 0.0)
    over = image is not None and alpha > 0
    if over:
        show_image(image, ax=ax)
        h, w = _as_display(image).shape[:2]
    ax.imshow(m, cmap=cmap, vmin=lo, vmax=1, alpha=alpha if over else None,
              extent=(-0.5, w - 0.5, h - 0.5, -0.5) if over else None, interpolation="nearest")
    return _finish(ax, title)


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
    return _finish(ax, title, ticks=True)


# --- mosaics: many small pictures as one image (far quicker to draw than many axes) ---


def mosaic(tiles, ncols: int | None = None, gap: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tiles (n, h, w) or (n, h, w, 3) laid out in rows of ``ncols`` (default: near
    square) with ``gap`` pixels of ``fill`` between them; one (H, W[, 3]) array.
    Tile ``k`` sits at row ``k // ncols``, column ``k % ncols``. A NaN ``fill``
    draws the gaps in the axes' background colour."""
    tiles = np.asarray(tiles.detach().cpu() if isinstance(tiles, torch.Tensor) else tiles, dtype=np.float32)
    if tiles.ndim not in (3, 4) or len(tiles) == 0:
        raise ValueError(f"expected tiles of shape (n, h, w) or (n, h, w, 3), got {tiles.shape}")
    n, h, w = tiles.shape[:3]
    ncols = max(1, min(ncols or math.ceil(math.sqrt(n)), n))
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap, *tiles.shape[3:]), fill, np.float32)
    for k in range(n):
        r, c = divmod(k, ncols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tiles[k]
    return out


def frame_tile(ax, row: int, col: int, h: int, w: int, gap: int = 1, colour: str = "#ffb000") -> None:
    """Frame tile (row, col) of a :func:`mosaic` of h×w tiles (the frame runs down the gaps)."""
    y, x = row * (h + gap) - 0.5, col * (w + gap) - 0.5  # the tile's top-left pixel edge
    ax.add_patch(Rectangle((x - gap / 2, y - gap / 2), w + gap, h + gap, fill=False, edgecolor=colour,
                           linewidth=2, clip_on=False))


def show_feature_maps(maps, ax=None, ncols: int = 4, first_channel: int = 0, highlight: int | None = None,
                      title: str | None = None, cmap: str = "magma"):
    """Already normalized maps (C, H, W), values in 0..1, as one mosaic with each
    tile's channel number (counted from ``first_channel``); ``highlight`` outlines
    one channel (a number on the same count). Returns the figure."""
    maps = np.asarray(maps, dtype=np.float32)
    c, h, wd = maps.shape
    ncols = max(1, min(ncols, c))
    ax = _axes(ax, (1.1 * ncols, 1.1 * -(-c // ncols) + 0.3))
    gap = max(1, h // 16)
    # gaps are NaN: drawn in the axes' background colour, not as a value of the colour map
    ax.imshow(mosaic(maps, ncols=ncols, gap=gap, fill=np.nan), cmap=cmap, vmin=0, vmax=1,
              interpolation="nearest")
    for i in range(c):
        r, q = divmod(i, ncols)
        x0, y0 = q * (wd + gap) - 0.5, r * (h + gap) - 0.5
        ax.text(x0 + 0.06 * wd, y0 + 0.06 * h, str(first_channel + i), color="white", fontsize=7, va="top",
                bbox={"facecolor": "black", "alpha": 0.55, "pad": 0.8, "linewidth": 0})
        if highlight == first_channel + i:
            frame_tile(ax, r, q, h, wd, gap=gap, colour="#00e5ff")
    return _finish(ax, title)


def draw_rgb_filters(weight, per_filter: bool = False, ax=None, ncols: int | None = None,
                     title: str | None = None, highlight: int | None = None, scale: float | None = None):
    """First-layer filters (out, 3, kh, kw) as a mosaic of RGB tiles, grey = 0
    (:func:`course_utils.filters.rgb_tiles`, which explains ``per_filter`` and ``scale``);
    ``highlight`` frames one filter."""
    tiles = filters.rgb_tiles(weight, per_filter, scale)
    n, h, wd = tiles.shape[:3]
    ncols = ncols or math.ceil(math.sqrt(n))
    ax = _axes(ax, (3, 3))
    ax.imshow(mosaic(tiles, ncols), interpolation="nearest")
    if highlight is not None:
        frame_tile(ax, *divmod(highlight, ncols), h, wd)
    return _finish(ax, title)


def draw_kernels(weight, per_filter: bool = False, ax=None, vmax: float | None = None, title: str | None = None,
                 first_out: int = 0, first_in: int = 0, highlight: tuple[int, int] | None = None,
                 colorbar: bool = True):
    """Kernel slices as a grid: rows = output channels, columns = input channels, on a
    diverging map centred on 0 with one symmetric scale for the whole grid.

    ``vmax`` is that scale (default: the largest |weight| shown; pass the layer's
    maximum when ``weight`` is a slice of a layer). With ``per_filter=True`` each row
    is divided by its own largest |weight| first (pass the whole filters to keep that
    honest), so the scale runs from -1 to 1. ``first_out``/``first_in`` label a slice
    taken from further into the layer; ``highlight=(out, in)`` frames one kernel.
    """
    wt = torch.as_tensor(weight).detach().float().cpu()
    if per_filter:
        wt, vmax = filters.scaled(wt, per_filter=True), 1.0
    elif vmax is None:
        vmax = float(filters.filter_scale(wt))
    o, i, kh, kw = wt.shape
    ax = _axes(ax, (max(2.0, 0.35 * i * kw / 3 + 1), max(2.0, 0.35 * o * kh / 3)))
    ax.set_facecolor(GAP_COLOUR)
    kernels = mosaic(wt.reshape(o * i, kh, kw), ncols=i, fill=np.nan)  # rows: out, columns: in
    im = ax.imshow(kernels, cmap=DIVERGING, vmin=-vmax, vmax=vmax, interpolation="nearest")
    step = max(1, math.ceil(max(o, i) / 12))
    ax.set_yticks([r * (kh + 1) + (kh - 1) / 2 for r in range(0, o, step)], range(first_out, first_out + o, step),
                  fontsize=7)
    ax.set_xticks([c * (kw + 1) + (kw - 1) / 2 for c in range(0, i, step)], range(first_in, first_in + i, step),
                  fontsize=7)
    ax.set_ylabel("output channel", fontsize=8), ax.set_xlabel("input channel", fontsize=8)
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    if highlight is not None:
        frame_tile(ax, highlight[0] - first_out, highlight[1] - first_in, kh, kw)
    if colorbar:
        bar = ax.figure.colorbar(im, ax=ax, shrink=0.8)
        bar.ax.tick_params(labelsize=7)
        bar.set_label("weight ÷ its filter's max |w|" if per_filter else "weight", fontsize=8)
    return _finish(ax, title, ticks=True)


def figure_to_png(fig, dpi: int = 100) -> bytes:
    """The figure (or a PIL image, drawn already) as PNG bytes for an ``ipywidgets.Image``; the
    figure is closed.

    Made for an explorer's redraw, where every millisecond shows: the figure is drawn once, as it
    is laid out (no ``bbox_inches="tight"``, which draws it a second time to measure it), and
    compressed with zlib's fastest level (photographs make big PNGs: on the dashboard, the default
    level 6 took a quarter of the redraw to save 8 % of the bytes)."""
    if isinstance(fig, PIL.Image.Image):
        return rgb_to_png(np.asarray(fig.convert("RGB")))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    plt.close(fig)
    return buf.getvalue()


def rgb_to_png(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 picture as PNG bytes, written directly: rows unfiltered, zlib's fastest
    level (PNG spec, ISO/IEC 15948). On the dashboard's photographs this takes half the time of
    PIL's encoder at its fastest level and gives a file 13 % smaller (PIL filters every row, which
    pays on smooth images, not on these)."""
    rgb = np.ascontiguousarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"an RGB picture is (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    rows = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, 3 * w)], axis=1)  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, truecolour, deflate, no filter set, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
            + chunk(b"IEND", b""))
