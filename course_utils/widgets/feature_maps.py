"""Lesson 01's explorer. The forward pass is the slow part, so it runs once per image: the outputs
of every layer in the dropdown are captured together and cached. Changing the layer, the page,
the channel or the normalization only redraws.
"""

from __future__ import annotations

import ipywidgets as w
from matplotlib.figure import Figure

from .. import figures
from ..features import NORMALIZATIONS, channel_pages, feature_layers, feature_maps
from .base import Cache, Explorer, cached_model
from .choices import choose_image, image_controls

__all__ = ["FeatureMapExplorer"]


class FeatureMapExplorer(Explorer):
    """Pick an image and a layer of the course model: see a page of its channels,
    displayed with the chosen normalization, and one channel enlarged next to the input."""

    def __init__(self, layer: str = "features.relu1", per_page: int = 16, cache_size: int = 8):
        self.loaded = cached_model("course")
        self.layers = feature_layers(self.loaded.model)
        if layer not in self.layers:
            raise ValueError(f"choose a layer among {self.layers}, not {layer!r}")
        self.layer, self.per_page = layer, per_page
        self._cache = Cache(cache_size)  # image key -> (input for display, {layer: maps})
        super().__init__()

    def make_controls(self) -> dict[str, w.Widget]:
        controls = image_controls()
        # The first image's forward pass, done now, tells every layer's width (the same for
        # any image, so fitting the controls to a layer never needs the chosen one); it is
        # kept for the first picture.
        self._widths = {name: maps.shape[0] for name, maps in self.maps(controls["image"].value)[1].items()}
        n = self._widths[self.layer]
        return {
            **controls,
            "layer": w.Dropdown(options=self.layers, value=self.layer, description="Layer"),
            "page": w.Dropdown(options=channel_pages(n, self.per_page), value=0, description="Channels"),
            "normalization": w.Dropdown(options=list(NORMALIZATIONS), description="Display"),
            "channel": w.IntSlider(value=0, min=0, max=n - 1, description="Enlarge", continuous_update=False),
        }

    def callbacks(self) -> dict:
        return {**super().callbacks(), "layer": self._on_input}

    def fit_to_input(self) -> None:
        """Fit the page and channel controls to the chosen layer's number of channels."""
        n, page = self._widths[self.controls["layer"].value], self.controls["page"]
        keep = page.value if page.value < n else 0
        page.options = channel_pages(n, self.per_page)
        page.value = keep
        self.controls["channel"].max = n - 1  # ipywidgets clamps the value

    def maps(self, choice: str | None = None) -> tuple:
        """(the input as the model sees it, {layer: maps}) for the chosen image, or for the
        listed image ``choice``: one forward pass per image, then from the cache."""
        key = self.image_key() if choice is None else (choice, None)  # (None: not an upload)
        return self._cache.fetch(key, lambda: self._forward(choice))

    def _forward(self, choice: str | None):
        x = self.loaded.batch([self.image() if choice is None else choose_image(choice)])
        acts = feature_maps(self.loaded.model, x, self.layers)
        return self.loaded.to_display(x)[0], {k: v[0].cpu() for k, v in acts.items()}

    def draw(self) -> Figure:
        (shown, acts), c = self.maps(), self.controls
        return figures.feature_maps_figure(shown, acts[c["layer"].value], c["layer"].value, c["normalization"].value,
                                           first=c["page"].value, channel=c["channel"].value, per_page=self.per_page)
