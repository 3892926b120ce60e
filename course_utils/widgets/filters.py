"""Lesson 02's explorer: look at any convolution's filters, one input channel at a time.

No forward pass is needed anywhere here: weights are read once per model and
layer and kept, so a change of control only redraws.
"""

from __future__ import annotations

import math

import ipywidgets as w
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from .. import filters
from ..hooks import list_layers
from ..models import available_models
from ..plotting import DIVERGING, GAP_COLOUR, draw_kernels, draw_rgb_filters, frame_tile, mosaic
from .base import Explorer, cached_model

__all__ = ["FilterExplorer", "model_for"]

RANDOM_SUFFIX = " (random init)"


_TWINS: dict[str, nn.Module] = {}


def model_for(choice: str) -> nn.Module:
    """The network behind an explorer choice: ``"course"``, ``"resnet50"``, … or
    ``"<name> (random init)"`` (its :func:`~course_utils.filters.random_twin`, seed 0).
    Loaded once per kernel."""
    if choice.endswith(RANDOM_SUFFIX):
        name = choice.removesuffix(RANDOM_SUFFIX)
        if name not in _TWINS:
            _TWINS[name] = filters.random_twin(cached_model(name).model, seed=0)
        return _TWINS[name]
    return cached_model(choice).model


class FilterExplorer(Explorer):
    """Model × conv layer × output channel × input channel: the chosen filter's slices,
    the chosen slice enlarged with its numbers, and its neighbourhood in the layer (for a
    first layer, all its filters as colour images). One colour scale per layer, or one
    per filter with "per-filter scale" ticked."""

    def __init__(self, models: list[str] | None = None, layer: str | None = None):
        if models is None:
            here = [n for n, ok in available_models().items() if ok and n != "course"]
            models = ["course", "course" + RANDOM_SUFFIX, *here]
        self._weights: dict[tuple[str, str], torch.Tensor] = {}
        layers = list_layers(model_for(models[0]), "conv")
        controls = {
            "model": w.Dropdown(options=models, value=models[0], description="Model"),
            "layer": w.Dropdown(options=layers, value=layer or layers[0], description="Layer"),
            "out_channel": w.IntSlider(value=0, min=0, max=0, description="Filter (out)", continuous_update=False),
            "in_channel": w.IntSlider(value=0, min=0, max=0, description="Input ch.", continuous_update=False),
            "per_filter": w.Checkbox(value=False, description="per-filter scale", indent=False),
        }
        self.controls = controls
        self._fit_sliders()
        super().__init__(controls, columns=3, redraw_on=["out_channel", "in_channel", "per_filter"])
        self.on_change("model", self._on_model)
        self.on_change("layer", self._on_layer)

    # --- keeping the controls consistent -------------------------------------------

    def weight(self) -> torch.Tensor:
        """The chosen layer's weight (out, in, kh, kw), read once per model and layer."""
        key = (self.controls["model"].value, self.controls["layer"].value)
        if key not in self._weights:
            self._weights[key] = filters.conv_weight(model_for(key[0]), key[1])
        return self._weights[key]

    def _fit_sliders(self) -> None:
        out_c, in_c = self.weight().shape[:2]
        for name, n in (("out_channel", out_c), ("in_channel", in_c)):
            slider = self.controls[name]
            slider.value = min(slider.value, n - 1)
            slider.max = n - 1

    def _on_model(self, change) -> None:
        with self.quietly():
            layers = list_layers(model_for(change["new"]), "conv")
            keep = self.controls["layer"].value
            self.controls["layer"].options = layers
            self.controls["layer"].value = keep if keep in layers else layers[0]
            self._fit_sliders()

    def _on_layer(self, change) -> None:
        with self.quietly():
            self._fit_sliders()

    # --- the picture -----------------------------------------------------------------

    def draw(self) -> Figure:
        c = self.controls
        wt, per_filter = self.weight(), c["per_filter"].value
        o, i = c["out_channel"].value, c["in_channel"].value
        n_out, n_in, kh, kw = wt.shape
        shown = filters.scaled(wt, per_filter)  # in [-1, 1]: the layer's or each filter's max |w|
        fig = Figure(figsize=(11, 3.9))
        ax_all, ax_one, ax_near = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.25]})
        # 1. every input slice of filter o
        ncols = 3 if n_in == 3 else math.ceil(math.sqrt(n_in))
        pad = 0 if kh * kw == 1 else 1  # 1×1 kernels: one pixel each, no gaps needed
        ax_all.set_facecolor(GAP_COLOUR)
        ax_all.imshow(mosaic(shown[o].numpy(), ncols, gap=pad, fill=np.nan), cmap=DIVERGING,
                      vmin=-1, vmax=1, interpolation="nearest")
        frame_tile(ax_all, *divmod(i, ncols), kh, kw, gap=pad)
        ax_all.set_xticks([]), ax_all.set_yticks([])
        names = " (R, G, B)" if n_in == 3 else ""
        ax_all.set_title(f"filter {o}: its {n_in} input slices{names}", fontsize=9)
        # 2. slice (o, i) enlarged, with its numbers
        self._draw_slice(ax_one, wt[o, i], shown[o, i], f"filter {o}, input {i}")
        # 3. the neighbourhood
        if n_in == 3:
            draw_rgb_filters(wt, per_filter, ax=ax_near, highlight=o,
                             title=f"all {n_out} filters as colours (grey = 0)")
        else:
            o0, i0 = max(0, min(o - 4, n_out - 9)), max(0, min(i - 4, n_in - 9))
            near = shown[o0 : o0 + 9, i0 : i0 + 9]
            draw_kernels(near, ax=ax_near, vmax=1.0, first_out=o0, first_in=i0, highlight=(o, i), colorbar=False,
                         title="neighbours in the layer")
        norms = filters.filter_norms(wt)
        scale = "each filter ÷ its own max |w|" if per_filter else f"one scale for the layer: ±{wt.abs().max():.3f}"
        fig.suptitle(f"{c['model'].value} · {c['layer'].value} {n_out}×{n_in}×{kh}×{kw} · "
                     f"filter {o} L2 norm {norms[o]:.2f} (layer mean {norms.mean():.2f}) · {scale}", fontsize=9)
        fig.tight_layout()
        return fig

    @staticmethod
    def _draw_slice(ax, raw: torch.Tensor, shown: torch.Tensor, title: str) -> None:
        ax.imshow(shown.numpy(), cmap=DIVERGING, vmin=-1, vmax=1, interpolation="nearest")
        kh, kw = raw.shape
        if kh * kw <= 49:
            for (y, x), v in np.ndenumerate(raw.numpy()):
                ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=7 if kw > 3 else 9,
                        color="white" if abs(float(shown[y, x])) > 0.6 else "black")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(title, fontsize=9)
