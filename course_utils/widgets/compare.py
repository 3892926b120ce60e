"""The compare dashboard: one image, every method of the course side by side.

Feature maps (lesson 01), vanilla gradient, guided backprop and deconvnet (04),
CAM (05), Grad-CAM (06) and Guided Grad-CAM (07), for one class of one image.
It is the lessons' explorers on one page, for an instructor who wants to answer
"and what would *that* method show here?" without leaving the picture, and it
runs as a standalone app with Voilà (``voila notebooks/compare.ipynb``).

Cost: each image runs forward once with every block kept (a
:class:`~course_utils.cam.GradCAM`), which gives the class list, the feature
maps, CAM and Grad-CAM at any block. Each gradient method costs one forward and
one backward pass per class and is computed only when shown; every result is cached,
so changing the layer, the opacity or the panels shown recomputes only what is new.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import ipywidgets as w
import numpy as np
import torch
from matplotlib.figure import Figure

from .. import plotting
from ..cam import BLOCK_LAYERS, GradCAM, guided_product, normalize_maps, upsample
from ..features import normalize
from ..saliency import saliency, saliency_map
from .base import ClassExplorer, offered_models
from .cam import _BlockLayers

__all__ = ["PANELS", "CompareExplorer"]

#: The panels the dashboard can show, in reading order (the input comes first, always).
PANELS = ["feature maps", "vanilla gradient", "guided backprop", "deconvnet", "CAM", "Grad-CAM", "Guided Grad-CAM"]
#: Panels that depend on the chosen layer (the others use the image, the class, or the last block).
LAYER_PANELS = {"feature maps", "Grad-CAM", "Guided Grad-CAM"}
_GRADIENTS = {"vanilla gradient", "guided backprop", "deconvnet"}
_COLUMNS = 4


class CompareExplorer(_BlockLayers, ClassExplorer):
    """Pick an image, a model, a class, a layer and the panels to show; every panel
    explains the same class of the same image. Gradient pictures are ``|g|``, the
    maximum over colours (lesson 04's "abs" display); CAM and Grad-CAM maps are laid
    over the image with the chosen opacity; feature maps are the layer's 16 most
    active channels, each scaled to its own range."""

    def __init__(self, models: list[str] | None = None, k: int = 6, panels=PANELS, cache_size: int = 128):
        models = offered_models() if models is None else models
        unknown = [p for p in panels if p not in PANELS]
        if unknown:
            raise ValueError(f"unknown panel(s) {unknown}; choose among {PANELS}")
        self._results: OrderedDict = OrderedDict()  # (model, image, upload, class, panel, layer) -> data
        self._results_size = cache_size
        controls = {
            "layer": self._layer_control(models),
            "methods": w.SelectMultiple(options=PANELS, value=tuple(panels), rows=4, description="Methods"),
            "alpha": w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="Opacity",
                                   continuous_update=False),
        }
        super().__init__(controls, models=models, k=k, columns=3)

    def prepare(self, loaded, x):
        g = GradCAM(loaded.model, x, BLOCK_LAYERS[loaded.name])
        return g.logits, g

    # -- what each panel shows ------------------------------------------------------

    def result(self, panel: str):
        """The data behind one panel for the current image, class and layer (cached):
        an (H, W) array in [0, 1] (a map, or the feature maps' mosaic), or a string
        saying why the method does not apply."""
        if panel not in PANELS:
            raise ValueError(f"unknown panel {panel!r}; choose among {PANELS}")
        c = self.target()[0]
        layer = self.controls["layer"].value if panel in LAYER_PANELS else None
        key = (*self.image_key(), c, panel, layer)
        if key not in self._results:
            self._results[key] = self._compute(panel, c, layer)
            while len(self._results) > self._results_size:
                self._results.popitem(last=False)
        self._results.move_to_end(key)
        return self._results[key]

    def _gradient(self, method: str, c: int) -> torch.Tensor:
        """The raw (1, 3, H, W) gradient of one of lesson 04's methods (cached as its own entry)."""
        key = (*self.image_key(), c, "raw " + method, None)
        if key not in self._results:
            self._results[key] = saliency(self.loaded.model, self._input()[0], method, c)
        return self._results[key]

    def _compute(self, panel: str, c: int, layer: str | None):
        x, _, _, g = self._input()
        loaded = self.loaded
        size = x.shape[-2:]
        if panel == "feature maps":
            maps = g.acts[layer][0].detach()
            top = maps.mean(dim=(1, 2)).topk(min(16, len(maps))).indices
            return plotting.mosaic(normalize(maps[top].cpu()), ncols=4, gap=1, fill=1.0)
        if panel in _GRADIENTS:
            return saliency_map(self._gradient(panel, c), "abs")[0].numpy()
        if panel == "CAM":
            try:
                raw = g.cam(c, loaded.last_conv_layer).maps
            except (ValueError, KeyError):
                return (f"CAM does not apply to {loaded.name}:\nits head is not global average\n"
                        "pooling + one linear layer.\nGrad-CAM works on any CNN.")
            return normalize_maps(upsample(raw, size))[0].numpy()
        grad_cam = g.map(c, layer).maps
        if panel == "Grad-CAM":
            return normalize_maps(upsample(grad_cam, size))[0].numpy()
        product = guided_product(self._gradient("guided backprop", c), grad_cam)  # Guided Grad-CAM
        return saliency_map(product, "abs")[0].numpy()

    # -- drawing ----------------------------------------------------------------------

    def draw(self) -> Figure:
        shown = self._input()[1]
        label = self.target()[1]
        layer, alpha = self.controls["layer"].value, self.controls["alpha"].value
        panels = [p for p in PANELS if p in self.controls["methods"].value]
        n = 1 + len(panels)
        cols = min(_COLUMNS, n)
        rows = math.ceil(n / cols)
        fig = Figure(figsize=(2.7 * cols, 3.1 * rows))
        axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
        plotting.show_image(shown, ax=axes[0], title=f"the input\nclass: {label}")
        for ax, panel in zip(axes[1:], panels):
            data = self.result(panel)
            where = layer if panel in LAYER_PANELS else self.loaded.last_conv_layer if panel == "CAM" else ""
            if isinstance(data, str):
                ax.text(0.5, 0.5, data, ha="center", va="center", fontsize=8, transform=ax.transAxes)
                ax.set_xticks([]), ax.set_yticks([])
                ax.set_title(f"{panel}\nnot applicable", fontsize=9)
            elif panel == "feature maps":
                ax.imshow(data, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                ax.set_title(f"feature maps at {where}\n16 most active channels", fontsize=9)
            elif panel in ("CAM", "Grad-CAM"):
                flat = " (all zero)" if data.max() <= 0 else ""
                plotting.overlay_heatmap(shown, data, ax=ax, alpha=alpha, title=f"{panel}\nat {where}{flat}")
            else:
                detail = f"at {where}, |g|" if where else "|g|, max over colours"
                plotting.show_saliency(data, "abs", ax=ax, title=f"{panel}\n{detail}")
        for ax in axes[n:]:
            ax.set_axis_off()
        fig.tight_layout()
        return fig
