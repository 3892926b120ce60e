"""The explorers' pictures as functions, which a lesson can call too: each takes data
(arrays, labels, the settings an explorer's controls would give) and returns a new
``Figure`` (the dashboard's, a PIL image: see :func:`compare_figure`), with no widget and no
model. An explorer's ``draw()`` calls one of them."""

from __future__ import annotations

import functools
import math
from collections import Counter

import matplotlib
import numpy as np
import torch
from matplotlib import font_manager
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from . import filters, plotting
from .cam import normalize_maps, upsample
from .features import normalize
from .saliency import saliency_map

__all__ = ["activation_max_figure", "class_map_figure", "compare_figure", "compare_panels", "evaluation_figure",
           "feature_maps_figure", "filter_figure", "graph_figure", "guided_grad_cam_figure", "panel_picture",
           "prediction_figure", "saliency_figure", "shortcut_figure"]

#: What each display of :func:`~course_utils.saliency.saliency_map` shows, in a few words.
SALIENCY_DISPLAYS = {"abs": "|g|, max over colours", "positive": "raises the score",
                     "signed": "red raises, blue lowers", "rgb": "g as colours, grey = 0"}
#: The colours of "the one chosen" and of "the others" in the explorers' pictures and tables.
HIGHLIGHT, OTHERS = "#c44e00", "#9aa5b1"


def _panels(figsize, n: int = 3, ratios=None):  # a figure and its row of n axes
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, n, gridspec_kw=dict(width_ratios=ratios) if ratios else {})


def _done(fig: Figure) -> Figure:
    fig.tight_layout()
    return fig


def _show(ax, data, title: str, **style) -> None:
    """An array as a picture without ticks; ``style``: imshow's colour map, range, ..."""
    ax.imshow(data, interpolation="nearest", **style)
    plotting._finish(ax, title)


def _heat(raw: torch.Tensor, side: int) -> torch.Tensor:  # a raw map at the image's side, in [0, 1]
    return normalize_maps(upsample(raw, side) if raw.shape[-1] != side else raw)


def prediction_figure(shown, top, model: str) -> Figure:
    """The input as ``model`` sees it beside its top classes, ``[(name, probability), ...]``."""
    fig, (ax_img, ax_bar) = _panels((7, 2.8), 2, [1, 1.4])
    plotting.show_image(shown, ax=ax_img, title=f"what {model} sees")
    plotting.topk_bars(top, ax=ax_bar, title=f"top {len(top)} classes")
    return _done(fig)


def feature_maps_figure(shown, maps: torch.Tensor, layer: str, normalization: str, first: int = 0,
                        channel: int = 0, per_page: int = 16) -> Figure:
    """A layer's maps (C, h, w) of the input ``shown``: channel ``channel`` enlarged, and ``per_page``
    channels from ``first``, displayed with a :data:`~course_utils.features.NORMALIZATIONS`."""
    n = maps.shape[0]
    ch = min(channel, n - 1)
    display = normalize(maps, normalization)  # the whole layer: a shared scale spans every page
    fig, (ax_in, ax_ch, ax_grid) = _panels((10, 3.6), 3, [1, 1, 1.1])
    plotting.show_image(shown, ax=ax_in, title="the input")
    raw = maps[ch]
    _show(ax_ch, display[ch], f"{layer} ch. {ch}  ({raw.shape[0]}×{raw.shape[1]})\n"
          f"min {raw.min():.2f}  mean {raw.mean():.2f}  max {raw.max():.2f}", cmap="magma", vmin=0, vmax=1)
    plotting.show_feature_maps(display[first:first + per_page], ax=ax_grid, ncols=4, first_channel=first,
                               highlight=ch, title=f"{layer.split('.')[-1]}: channels {first}–"
                               f"{min(first + per_page, n) - 1} of {n}, {normalization}")
    return _done(fig)


def filter_figure(weight: torch.Tensor, out_channel: int = 0, in_channel: int = 0, per_filter: bool = False,
                  model: str = "", layer: str = "") -> Figure:
    """A conv weight (out, in, kh, kw): filter ``out_channel``'s slices, slice ``in_channel`` enlarged
    with its numbers, its neighbours (a first layer: every filter in colour); one scale or per filter."""
    o, i = out_channel, in_channel
    n_out, n_in, kh, kw = weight.shape
    shown = filters.scaled(weight, per_filter)  # in [-1, 1]: the layer's or each filter's max |w|
    fig, (ax_all, ax_one, ax_near) = _panels((11, 3.9), 3, [1, 1, 1.25])
    ncols = 3 if n_in == 3 else math.ceil(math.sqrt(n_in))
    pad = 0 if kh * kw == 1 else 1  # 1×1 kernels: one pixel each, no gaps needed
    ax_all.set_facecolor(plotting.GAP_COLOUR)
    _show(ax_all, plotting.mosaic(shown[o].numpy(), ncols, gap=pad, fill=np.nan),
          f"filter {o}: its {n_in} input slices{' (R, G, B)' if n_in == 3 else ''}",
          cmap=plotting.DIVERGING, vmin=-1, vmax=1)
    plotting.frame_tile(ax_all, *divmod(i, ncols), kh, kw, gap=pad)
    _show(ax_one, shown[o, i].numpy(), f"filter {o}, input {i}", cmap=plotting.DIVERGING, vmin=-1, vmax=1)
    if kh * kw <= 49:
        for (y, x), v in np.ndenumerate(weight[o, i].numpy()):
            ax_one.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=7 if kw > 3 else 9,
                        color="white" if abs(float(shown[o, i, y, x])) > 0.6 else "black")
    if n_in == 3:
        plotting.draw_rgb_filters(weight, per_filter, ax=ax_near, highlight=o,
                                  title=f"all {n_out} filters as colours (grey = 0)")
    else:
        o0, i0 = max(0, min(o - 4, n_out - 9)), max(0, min(i - 4, n_in - 9))
        plotting.draw_kernels(shown[o0 : o0 + 9, i0 : i0 + 9], ax=ax_near, vmax=1.0, first_out=o0, first_in=i0,
                              highlight=(o, i), colorbar=False, title="neighbours in the layer")
    norms = filters.filter_norms(weight)
    scale = "each filter ÷ its own max |w|" if per_filter else f"one scale for the layer: ±{weight.abs().max():.3f}"
    fig.suptitle(f"{model} · {layer} {n_out}×{n_in}×{kh}×{kw} · "
                 f"filter {o} L2 norm {norms[o]:.2f} (layer mean {norms.mean():.2f}) · {scale}", fontsize=9)
    return _done(fig)


def activation_max_figure(image, history, what: str, param: str, energy: float, logit: bool = False) -> Figure:
    """An optimized image (H, W, 3) beside its objective per step; ``what``: the unit, ``param``: the
    parameterization, ``energy``: its high-frequency energy, ``logit``: the objective is a logit."""
    history = np.asarray(history)
    fig, (ax_img, ax_curve) = _panels((7.6, 3.3), 2, [1, 1.2])
    plotting.show_image(image, ax=ax_img, title=f"{what}\n{param}, high-frequency energy {energy:.3f}")
    ax_curve.plot(np.arange(1, len(history) + 1), history, color=HIGHLIGHT)
    ax_curve.set_xlabel("step", fontsize=8), ax_curve.set_ylabel("logit" if logit else "mean activation", fontsize=8)
    ax_curve.tick_params(labelsize=7)
    ax_curve.set_title(f"objective: {history[0]:.2f} → {history[-1]:.2f}" if len(history) else "no step ran",
                       fontsize=9)
    return _done(fig)


def saliency_figure(shown, grad: torch.Tensor, label: str, method: str, display: str = "abs",
                    alpha: float = 0.6) -> Figure:
    """The input, its gradient (3, H, W) shown as ``display``, and that map over the input
    (``abs`` for ``rgb``: a colour gradient is not laid over a photo)."""
    smap = saliency_map(grad, display)
    fig, (ax_in, ax_map, ax_over) = _panels((9.5, 3.4))
    plotting.show_image(shown, ax=ax_in, title=f"the input\nclass: {label}")
    plotting.show_saliency(smap, display, ax=ax_map, title=f"{method}\n{display}: {SALIENCY_DISPLAYS[display]}")
    over = "abs" if display == "rgb" else display
    plotting.show_saliency(saliency_map(grad, "abs") if display == "rgb" else smap, over, ax=ax_over, image=shown,
                           alpha=alpha, title=f"{over} over the input\nopacity {alpha:.2f}")
    return _done(fig)


def class_map_figure(shown, raw: torch.Tensor, label: str, layer: str, method: str = "Grad-CAM",
                     cmap: str = "jet", alpha: float = 0.5) -> Figure:
    """The input, class ``label``'s raw map (h, w) at ``layer`` (one square per position), and the map
    upsampled over the input; ``method``: "CAM" (lesson 05's titles), "Grad-CAM" or "counterfactual Grad-CAM"."""
    fig, (ax_in, ax_raw, ax_over) = _panels((9.5, 3.4))
    plotting.show_image(shown, ax=ax_in, title=f"the input\nclass: {label}")
    flat = "  (all zero)" if method != "CAM" and raw.max() <= 0 else ""
    _show(ax_raw, normalize_maps(raw).numpy(), f"{method} at {layer}\nraw, {raw.shape[0]}×{raw.shape[1]}{flat}",
          cmap=cmap, vmin=0, vmax=1)
    over = f"upsampled to {shown.shape[0]}×{shown.shape[1]}\nopacity" if method == "CAM" else "upsampled, opacity"
    plotting.overlay_heatmap(shown, normalize_maps(upsample(raw, shown.shape[:2])), ax=ax_over, alpha=alpha,
                             cmap=cmap, title=f"{over} {alpha:.2f}")
    return _done(fig)


def guided_grad_cam_figure(shown, picture, label: str, method: str, layer: str) -> Figure:
    """The input beside one of lesson 07's pictures: (H, W, 3) (grey = 0) or an (H, W) map over it."""
    fig, (ax_in, ax_out) = _panels((6.6, 3.4), 2)
    plotting.show_image(shown, ax=ax_in, title=f"the input\nclass: {label}")
    where = "" if method == "guided backprop" else f" at {layer}"
    if picture.ndim == 3:
        plotting.show_image(picture, ax=ax_out, title=f"{method}{where}\n(grey = 0)")
    else:
        flat = "\n(all zero: no positive evidence at this layer)" if picture.max() <= 0 else ""
        plotting.overlay_heatmap(shown, picture, ax=ax_out, alpha=0.5, title=f"{method}{where}{flat}")
    return _done(fig)


def compare_figure(shown, results: dict, label: str, where: dict | None = None, alpha: float = 0.5,
                   columns: int = 4, maps=("CAM", "Grad-CAM"), attributions=()) -> Image.Image:
    """The input, then a panel per method of ``results`` (name -> an (H, W) map in [0, 1], over the input for
    the methods named in ``maps``; the feature maps' mosaic; or why it does not apply); ``where``: each one's layer.

    Made for the dashboard's redraw, so it is one picture (a PIL image, which a notebook shows
    too), not a matplotlib figure: the panels are coloured in NumPy (:func:`compare_panels`) and
    put side by side with their titles (:func:`panel_picture`), in a quarter of the time eight
    matplotlib axes took."""
    return panel_picture(*compare_panels(shown, results, label, where, alpha, maps, attributions), columns=columns)


def compare_panels(shown, results: dict, label: str, where: dict | None = None, alpha: float = 0.5,
                   maps=("CAM", "Grad-CAM"), attributions=()):
    """What :func:`compare_figure` shows: ``(panels, titles, notes)``, each panel an (S, S, 3) array in
    [0, 1] (S: the input's side times a whole number, at least about 224), each title two lines, and
    ``notes``: panel index -> the text written on a panel whose method does not apply. ``maps`` are the
    panels laid over the image; the others are input gradients (|g|), or attributions for the panels
    named in ``attributions`` (Input × Gradient, Integrated Gradients: the input times a gradient)."""
    image = plotting._as_display(shown)
    image = image / 255.0 if image.dtype == np.uint8 else image
    side = image.shape[0] * max(1, round(_PANEL / image.shape[0]))
    panels, titles, notes = [_fit(image, side)], [f"the input\nclass: {label}"], {}
    for panel, data in results.items():
        at = (where or {}).get(panel, "")
        if isinstance(data, str):
            panels.append(np.full((side, side, 3), _BLANK))
            titles.append(f"{panel}\nnot applicable")
            notes[len(panels) - 1] = data
        elif panel == "feature maps":
            panels.append(_fit(_colour(data, "gray"), side))
            titles.append(f"feature maps at {at}\n16 most active channels")
        elif panel in maps:  # a map over the image
            heat = _colour(_fit(np.asarray(data, np.float32), image.shape[0], smooth=True), "jet")
            panels.append(_fit((1 - alpha) * image + alpha * heat, side))
            titles.append((f"{panel}\nat {at}" if at else panel) + (" (all zero)" if np.max(data) <= 0 else ""))
        else:
            panels.append(_fit(_colour(data, "inferno"), side))
            shows = "|attribution|" if panel in attributions else "|g|"
            titles.append(f"{panel}\n" + (f"at {at}, {shows}" if at else f"{shows}, max over colours"))
    return panels, titles, notes


_PANEL, _GAP, _TITLE, _BLANK = 224, 12, 36, 0.94  # pixels: a panel's side (about), gaps, a title's band; grey


def _colour(values, cmap: str) -> np.ndarray:
    """Values in [0, 1] as RGB through a matplotlib colour map."""
    return matplotlib.colormaps[cmap](np.clip(np.asarray(values, np.float32), 0, 1))[..., :3]


def _fit(rgb: np.ndarray, side: int, smooth: bool = False) -> np.ndarray:
    """``rgb`` (H, W[, 3]) resized to side × side: nearest neighbours (each pixel a block, as the
    course draws maps), or bilinear for a heat map laid over an image."""
    if rgb.shape[0] == rgb.shape[1] == side:
        return rgb
    t = torch.as_tensor(np.ascontiguousarray(rgb), dtype=torch.float32)
    t = t.permute(2, 0, 1)[None] if t.ndim == 3 else t[None, None]
    mode = {"mode": "bilinear", "align_corners": False} if smooth else {"mode": "nearest-exact"}
    out = torch.nn.functional.interpolate(t, size=(side, side), **mode)
    return (out[0].permute(1, 2, 0) if rgb.ndim == 3 else out[0, 0]).numpy()


@functools.cache
def _font(pixels: int) -> ImageFont.FreeTypeFont:  # matplotlib's own DejaVu Sans, so the pictures match
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), pixels)


def panel_picture(panels, titles, notes: dict | None = None, columns: int = 4) -> Image.Image:
    """Square RGB panels (values in [0, 1], all one size) in rows of ``columns``, each framed, its
    title's lines centred above it; ``notes``: panel index -> a text centred on that panel."""
    n, side = len(panels), panels[0].shape[0]
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    width, height = cols * side + (cols + 1) * _GAP, rows * (side + _TITLE) + _GAP
    canvas = np.ones((height, width, 3), np.float32)
    places = []
    for i, panel in enumerate(panels):
        top, left = (i // cols) * (side + _TITLE) + _TITLE, _GAP + (i % cols) * (side + _GAP)
        canvas[top - 1:top + side + 1, left - 1:left + side + 1] = 0.0  # the frame
        canvas[top:top + side, left:left + side] = panel
        places.append((top, left))
    picture = Image.fromarray((canvas * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for i, (top, left) in enumerate(places):
        lines = titles[i].split("\n")
        for j, line in enumerate(lines):  # baselines 15 pixels apart, the last 5 above the frame
            draw.text((left + side / 2, top - 5 - 15 * (len(lines) - 1 - j)), line, fill="black", font=_font(12),
                      anchor="ms")
        note = (notes or {}).get(i, "").split("\n")
        for j, line in enumerate(note):  # centred on the panel, lines 14 pixels apart
            draw.text((left + side / 2, top + side / 2 + 14 * (j - (len(note) - 1) / 2)), line, fill="black",
                      font=_font(11), anchor="mm")
    return picture


def graph_figure(counts, model: str, total: int, chosen: str = "all") -> Figure:
    """A traced graph's 12 commonest operation types (``counts``: op -> number, of ``total``
    operations) as bars, type ``chosen`` in red."""
    top = Counter(counts).most_common(12)[::-1]
    fig = Figure(figsize=(6, 0.8 + 0.22 * len(top)))
    ax = fig.add_subplot()
    ax.barh([op.removeprefix("aten::") for op, _ in top], [c for _, c in top],
            color=[HIGHLIGHT if op == chosen else "#1f77b4" for op, _ in top])
    ax.set_title(f"{model}: {total} operations", fontsize=10)
    ax.set_xlabel("how many of this type", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _done(fig)


def evaluation_figure(image, masks, raw: torch.Tensor, scores: torch.Tensor, index: int, label: str, method: str,
                      metric: str, curves=None) -> Figure:
    """Scene ``index`` (image, masks, ``label``) under ``method``'s raw map, and ``metric``'s ``scores`` for
    every scene: bars, or the deletion / insertion ``curves``, ``(fractions, one per scene)``."""
    heat = _heat(raw, np.asarray(image).shape[0])
    fig, (ax_in, ax_map, ax_metric) = _panels((10, 3.3), 3, [1, 1, 1.5])
    plotting.outline_masks(image, masks, ax=ax_in, title=f"scene {index}: {label}")
    plotting.overlay_heatmap(image, heat.numpy(), ax=ax_map, alpha=0.55, title=f"{method}\n+ = the peak")
    py, px = np.unravel_index(int(heat.argmax()), heat.shape)
    ax_map.plot(px, py, "w+", markersize=12, markeredgewidth=2)
    ax_map.contour(masks[0].astype(float), levels=[0.5], colors=["white"], linewidths=1)
    if curves is not None:
        fractions, each = curves
        ax_metric.plot(fractions, each.mean(0), "--", color="grey", label=f"mean of {len(each)} scenes")
        ax_metric.plot(fractions, each[index], color=HIGHLIGHT, label=f"scene {index}: AUC {scores[index]:.2f}")
        ax_metric.set_xlabel(f"share of pixels {'removed' if metric == 'deletion' else 'revealed'}, "
                             "most important first", fontsize=8)
        ax_metric.set_ylabel("probability of the class", fontsize=8)
        ax_metric.set_ylim(-0.02, 1.02)
        ax_metric.legend(fontsize=7)
        better = "lower" if metric == "deletion" else "higher"
        ax_metric.set_title(f"{metric}: mean AUC {scores.mean():.2f} ({better} is better)", fontsize=9)
    else:
        ax_metric.bar(range(len(scores)), scores.numpy(),
                      color=[HIGHLIGHT if j == index else OTHERS for j in range(len(scores))])
        ax_metric.axhline(float(scores.mean()), color="black", linewidth=1, linestyle="--")
        ax_metric.set_xlabel("scene", fontsize=8)
        ax_metric.set_ylim(0, 1.05)
        ax_metric.set_title(f"{metric}: this scene {scores[index]:.2f}, mean {scores.mean():.2f} (dashed)", fontsize=9)
    ax_metric.tick_params(labelsize=7)
    return _done(fig)


def shortcut_figure(image, masks, raw: torch.Tensor, top, shape: str, background: str, method: str, model: str,
                    inside: float) -> Figure:
    """A ``shape`` on ``background`` under ``method``'s raw map for the top class (``inside``: the
    share on the shape), and the top classes."""
    fig, (ax_in, ax_map, ax_bar) = _panels((9.5, 3.2), 3, [1, 1, 1.2])
    plotting.outline_masks(image, masks, ax=ax_in, title=f"a {shape}, background: {background}")
    plotting.overlay_heatmap(image, _heat(raw, np.asarray(image).shape[0]).numpy(), ax=ax_map, alpha=0.55,
                             title=f"{method} for '{top[0][0]}'\n{inside:.0%} of it on the shape")
    ax_map.contour(masks[0].astype(float), levels=[0.5], colors=["white"], linewidths=1)
    plotting.topk_bars(top, ax=ax_bar, title=f"{model} model: top classes", highlight=shape)
    return _done(fig)
