"""Lesson 02's explorer: look at any convolution's filters, one input channel at a time.

No forward pass is needed anywhere here: weights are read once per model and
layer and kept, so a change of control only redraws.
"""

from __future__ import annotations

import ipywidgets as w
import torch
from matplotlib.figure import Figure
from torch import nn

from .. import figures, filters
from ..hooks import list_layers
from .base import Cache, Explorer, cached_model
from .choices import offered_models

__all__ = ["FilterExplorer", "model_for"]

RANDOM_SUFFIX = " (random init)"
_TWINS = Cache()  # model name -> its random twin


def model_for(choice: str) -> nn.Module:
    """The network behind an explorer choice: ``"course"``, ``"resnet50"``, … or
    ``"<name> (random init)"`` (its :func:`~course_utils.filters.random_twin`, seed 0).
    Loaded once per kernel."""
    if choice.endswith(RANDOM_SUFFIX):
        name = choice.removesuffix(RANDOM_SUFFIX)
        return _TWINS.fetch(name, lambda: filters.random_twin(cached_model(name).model, seed=0))
    return cached_model(choice).model


class FilterExplorer(Explorer):
    """Model × conv layer × output channel × input channel (:func:`~course_utils.figures.filter_figure`):
    one colour scale per layer, or one per filter with "per-filter scale" ticked."""

    def __init__(self, models: list[str] | None = None, layer: str | None = None):
        here = offered_models(exclude=("course",))
        self.models = ["course", "course" + RANDOM_SUFFIX, *here] if models is None else models
        self.layer = layer
        self._weights = Cache()  # (model, layer) -> weight
        super().__init__()

    def make_controls(self) -> dict[str, w.Widget]:
        layers = list_layers(model_for(self.models[0]), "conv")
        return {
            "model": w.Dropdown(options=self.models, value=self.models[0], description="Model"),
            "layer": w.Dropdown(options=layers, value=self.layer or layers[0], description="Layer"),
            "out_channel": w.IntSlider(value=0, min=0, max=0, description="Filter (out)", continuous_update=False),
            "in_channel": w.IntSlider(value=0, min=0, max=0, description="Input ch.", continuous_update=False),
            "per_filter": w.Checkbox(value=False, description="per-filter scale", indent=False),
        }

    def callbacks(self) -> dict:
        return {"model": self._on_input, "layer": self._on_input}

    def weight(self) -> torch.Tensor:
        """The chosen layer's weight (out, in, kh, kw), read once per model and layer."""
        key = (self.controls["model"].value, self.controls["layer"].value)
        return self._weights.fetch(key, lambda: filters.conv_weight(model_for(key[0]), key[1]))

    def fit_to_input(self) -> None:
        """List the chosen model's conv layers (keeping the chosen one if it has it), then fit the channel
        sliders to the chosen layer: a new model or layer is this explorer's new input."""
        layers, layer = list_layers(model_for(self.controls["model"].value), "conv"), self.controls["layer"]
        if list(layer.options) != layers:
            keep = layer.value
            layer.options = layers
            layer.value = keep if keep in layers else layers[0]
        out_c, in_c = self.weight().shape[:2]
        for name, n in (("out_channel", out_c), ("in_channel", in_c)):
            slider = self.controls[name]
            slider.value = min(slider.value, n - 1)
            slider.max = n - 1

    def draw(self) -> Figure:
        c = self.controls
        return figures.filter_figure(self.weight(), c["out_channel"].value, c["in_channel"].value,
                                     c["per_filter"].value, model=c["model"].value, layer=c["layer"].value)
