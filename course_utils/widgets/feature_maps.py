"""Lesson 01's explorer: an image in, one layer's feature maps out, a page of
channels at a time, with the display normalization of your choice.

The forward pass is the slow part, so it runs once per image: the outputs of
every layer in the dropdown are captured together and cached. Changing the
layer, the page, the channel or the normalization only redraws.
"""

from __future__ import annotations

from collections import OrderedDict

import ipywidgets as w
from matplotlib.figure import Figure

from .. import plotting
from ..features import (
    NORMALIZATIONS,
    channel_pages,
    feature_layers,
    feature_maps,
    normalize,
)
from .base import Explorer, cached_model, image_controls

__all__ = ["FeatureMapExplorer"]


class FeatureMapExplorer(Explorer):
    """Pick an image and a layer of the course model: see a page of its channels,
    displayed with the chosen normalization, and one channel enlarged next to the input."""

    def __init__(self, layer: str = "features.relu1", per_page: int = 16, cache_size: int = 8):
        self.loaded = cached_model("course")
        self.layers = feature_layers(self.loaded.model)
        if layer not in self.layers:
            raise ValueError(f"choose a layer among {self.layers}, not {layer!r}")
        self.per_page = per_page
        self.cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()  # image key -> (input for display, {layer: maps})
        # The first image's forward pass, done now, tells every layer's width (the same
        # for any image, so fitting the controls to a layer never needs the chosen one)
        # and is cached for the first picture.
        self._upload = None
        self.controls = image_controls()
        self._widths = {name: maps.shape[0] for name, maps in self._maps()[1].items()}
        n = self._widths[layer]
        controls = {
            **self.controls,
            "layer": w.Dropdown(options=self.layers, value=layer, description="Layer"),
            "page": w.Dropdown(options=channel_pages(n, per_page), value=0, description="Channels"),
            "normalization": w.Dropdown(options=list(NORMALIZATIONS), description="Display"),
            "channel": w.IntSlider(value=0, min=0, max=n - 1, description="Enlarge",
                                   continuous_update=False),
        }
        redraw = [name for name in controls if name not in ("upload", "layer")]
        super().__init__(controls, columns=3, redraw_on=redraw)
        self.on_change("layer", self._on_layer)

    def _on_layer(self, change) -> None:
        """A new layer may have another number of channels: fit the page and channel
        controls to it, then redraw once."""
        n = self._widths[change["new"]]
        with self.quietly():
            page, ch = self.controls["page"], self.controls["channel"]
            keep = page.value if page.value < n else 0
            page.options = channel_pages(n, self.per_page)
            page.value = keep
            ch.max = n - 1  # ipywidgets clamps the value

    def _maps(self):
        """(the input as the model sees it, {layer: maps}) for the chosen image: one
        forward pass per image, then from the cache."""
        key = self.image_key()
        if key not in self._cache:
            x = self.loaded.batch([self.image()])
            acts = feature_maps(self.loaded.model, x, self.layers)
            self._cache[key] = (self.loaded.to_display(x)[0], {k: v[0].cpu() for k, v in acts.items()})
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]

    def draw(self) -> Figure:
        shown, acts = self._maps()
        layer = self.controls["layer"].value
        method = self.controls["normalization"].value
        maps = acts[layer]
        n = maps.shape[0]
        first = self.controls["page"].value
        ch = min(self.controls["channel"].value, n - 1)
        display = normalize(maps, method)  # the whole layer: a shared scale spans every page
        fig = Figure(figsize=(10, 3.6))
        ax_in, ax_ch, ax_grid = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.1]})
        plotting.show_image(shown, ax=ax_in, title="the input")
        ax_ch.imshow(display[ch], cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        ax_ch.set_xticks([]), ax_ch.set_yticks([])
        raw = maps[ch]
        ax_ch.set_title(f"{layer} ch. {ch}  ({raw.shape[0]}×{raw.shape[1]})\n"
                        f"min {raw.min():.2f}  mean {raw.mean():.2f}  max {raw.max():.2f}", fontsize=9)
        short = layer.split(".")[-1]
        plotting.show_feature_maps(display[first:first + self.per_page], ax=ax_grid, ncols=4, first_channel=first,
                          highlight=ch, title=f"{short}: channels {first}–{min(first + self.per_page, n) - 1} "
                          f"of {n}, {method}")
        fig.tight_layout()
        return fig
