"""Lesson 01's explorer. The forward pass is the slow part, so it runs once per image: the outputs
of every layer in the dropdown are captured together and cached. Changing the layer, the page,
the channel or the normalization only redraws.
"""

from __future__ import annotations

import ipywidgets as w
from matplotlib.figure import Figure

from .. import figures
from ..features import NORMALIZATIONS, channel_pages, feature_layers, feature_maps
from ..images import ImageLoadError, load_image
from .base import Cache, Explorer, cached_model
from .choices import choose_image, image_controls, offered_models, opening_model

__all__ = ["FeatureMapExplorer"]


class FeatureMapExplorer(Explorer):
    """Pick an image, a model and a layer: see a page of its channels, displayed with the chosen
    normalization, and one channel enlarged next to the input. The layers are the model's
    convolutions, ReLUs (ReLU6 too) and pooling layers; ``layer`` is where it opens (by default
    the first ReLU)."""

    def __init__(self, layer: str | None = None, per_page: int = 16, cache_size: int = 8,
                 models: list[str] | None = None, model: str | None = None):
        self.models = offered_models() if models is None else models
        self.model = opening_model(self.models, model)
        self._layers: dict[str, list[str]] = {}  # model -> its feature layers
        self._widths: dict[str, dict[str, int]] = {}  # model -> {layer: channels}
        if layer is not None and layer not in self.layers(self.model):
            raise ValueError(f"choose a layer among {self.layers(self.model)}, not {layer!r}")
        self.layer, self.per_page = layer or self._first_relu(self.model), per_page
        self._cache = Cache(cache_size)  # (model, image key) -> (input for display, {layer: maps})
        super().__init__()

    @property
    def loaded(self):
        return cached_model(self.controls["model"].value if hasattr(self, "controls") else self.model)

    def layers(self, model: str) -> list[str]:
        if model not in self._layers:
            self._layers[model] = feature_layers(cached_model(model).model)
        return self._layers[model]

    def _first_relu(self, model: str) -> str:
        relus = [n for n in self.layers(model) if "relu" in n.rsplit(".", 1)[-1]]
        return (relus or self.layers(model))[0]

    def make_controls(self) -> dict[str, w.Widget]:
        controls = image_controls()
        # The first image's forward pass, done now, tells every layer's width (the same for any
        # image, so fitting the controls to a layer never needs the chosen one); it is kept for
        # the first picture. Another model's widths come with its first image.
        self._maps(self.model, (controls["image"].value, None))
        n = self._widths[self.model][self.layer]
        return {
            **controls,
            "model": w.Dropdown(options=self.models, value=self.model, description="Model"),
            "layer": w.Dropdown(options=self.layers(self.model), value=self.layer, description="Layer"),
            "page": w.Dropdown(options=channel_pages(n, self.per_page), value=0, description="Channels"),
            "normalization": w.Dropdown(options=list(NORMALIZATIONS), description="Display"),
            "channel": w.IntSlider(value=0, min=0, max=n - 1, description="Enlarge", continuous_update=False),
        }

    def callbacks(self) -> dict:
        return {**super().callbacks(), "model": self._on_input, "layer": self._on_input}

    def fit_to_input(self) -> None:
        """Fit the layer list to the chosen model, then the page and channel controls to the layer."""
        model, layer = self.controls["model"].value, self.controls["layer"]
        if list(layer.options) != self.layers(model):
            kept = layer.value if layer.value in self.layers(model) else self._first_relu(model)
            layer.options = self.layers(model)
            layer.value = kept
        if model not in self._widths:  # a model's first image tells its layers' widths
            try:
                self.maps()
            except ImageLoadError:  # a bad upload: the widths are the same for any image (draw reports it)
                self._maps(model, (self.controls["image"].options[0], None))
        n, page = self._widths[model][layer.value], self.controls["page"]
        keep = page.value if page.value < n else 0
        page.options = channel_pages(n, self.per_page)
        page.value = keep
        self.controls["channel"].max = n - 1  # ipywidgets clamps the value

    def maps(self) -> tuple:
        """(the input as the model sees it, {layer: maps}) for the chosen image and model: one
        forward pass per image and model, then from the cache."""
        return self._maps(self.controls["model"].value, self.image_key())

    def _maps(self, model: str, key: tuple) -> tuple:
        return self._cache.fetch((model, *key), lambda: self._forward(model, key))

    def _forward(self, model: str, key: tuple):
        loaded = cached_model(model)
        choice, digest = key
        x = loaded.batch([load_image(self._upload[1]) if digest else choose_image(choice)])
        acts = feature_maps(loaded.model, x, self.layers(model))
        self._widths.setdefault(model, {k: v.shape[1] for k, v in acts.items()})
        return loaded.to_display(x)[0], {k: v[0].cpu() for k, v in acts.items()}

    def draw(self) -> Figure:
        (shown, acts), c = self.maps(), self.controls
        return figures.feature_maps_figure(shown, acts[c["layer"].value], c["layer"].value, c["normalization"].value,
                                           first=c["page"].value, channel=c["channel"].value, per_page=self.per_page)
