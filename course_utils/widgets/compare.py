"""The compare dashboard: one image, every method of the course side by side.

Feature maps (lesson 01), vanilla gradient, guided backprop and deconvnet (04),
CAM (05), Grad-CAM (06) and Guided Grad-CAM (07), for one class of one image.
It is the lessons' explorers on one page, for an instructor who wants to answer
"and what would *that* method show here?" without leaving the picture, and it
runs as a standalone app with Voilà (``voila notebooks/compare.ipynb``).

The panels are the feature maps and every method of :data:`course_utils.methods.METHODS`
but SmoothGrad (its dozens of passes per class would make the page slow).

Cost: each image gets one :class:`~course_utils.methods.Explainer`, whose forward pass
runs once with every block kept and gives the class list, the feature maps, CAM and
Grad-CAM at any block. Each gradient method costs one forward and one backward pass per
class and is computed only when shown (Guided Grad-CAM reuses guided backprop's); every
result is cached, so changing the layer, the opacity or the panels shown recomputes only
what is new.
"""

from __future__ import annotations

import ipywidgets as w
from matplotlib.figure import Figure

from .. import figures, plotting
from ..cam import normalize_maps, upsample
from ..features import normalize
from ..methods import METHODS, Explainer
from ..saliency import saliency_map
from .base import Cache, ClassExplorer
from .choices import cam_layer
from .cam import _BlockLayers

__all__ = ["PANELS", "CompareExplorer"]

#: The panels the dashboard can show, in reading order (the input comes first, always).
PANELS = ["feature maps", *(name for name in METHODS if name != "SmoothGrad")]
#: Panels that depend on the chosen layer (the others use the image, the class, or the CAM layer).
LAYER_PANELS = {"feature maps", *(name for name, m in METHODS.items() if m.layer == "gradcam_layer")}


class CompareExplorer(_BlockLayers, ClassExplorer):
    """Pick an image, a model, a class, a layer and the panels to show; every panel
    explains the same class of the same image. Gradient pictures are ``|g|``, the
    maximum over colours (lesson 04's "abs" display); CAM and Grad-CAM maps are laid
    over the image with the chosen opacity; feature maps are the layer's 16 most
    active channels, each scaled to its own range."""

    def __init__(self, models: list[str] | None = None, k: int = 6, panels=PANELS, cache_size: int = 128):
        unknown = [p for p in panels if p not in PANELS]
        if unknown:
            raise ValueError(f"unknown panel(s) {unknown}; choose among {PANELS}")
        self.panels = tuple(panels)
        self._results = Cache(cache_size)  # (model, image, upload, class, panel, layer) -> data
        super().__init__(models, k=k)

    def make_controls(self) -> dict[str, w.Widget]:
        return {**super().make_controls(), "layer": self.layer_control(),
                "methods": w.SelectMultiple(options=PANELS, value=self.panels, rows=4, description="Methods"),
                "alpha": w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="Opacity",
                                       continuous_update=False)}

    def prepare(self, loaded, x):
        ex = Explainer(loaded.model, x)
        return ex.kept.logits, ex

    def result(self, panel: str):
        """The data behind one panel for the current image, class and layer (cached):
        an (H, W) array in [0, 1] (a map, or the feature maps' mosaic), or a string
        saying why the method does not apply."""
        if panel not in PANELS:
            raise ValueError(f"unknown panel {panel!r}; choose among {PANELS}")
        c = self.target()[0]
        layer = self.controls["layer"].value if panel in LAYER_PANELS else None
        return self._results.fetch((*self.image_key(), c, panel, layer), lambda: self._compute(panel, c, layer))

    def _compute(self, panel: str, c: int, layer: str | None):
        p, loaded = self.prepared(), self.loaded
        if panel == "feature maps":
            maps = p.kept.kept.acts[layer][0].detach()
            top = maps.mean(dim=(1, 2)).topk(min(16, len(maps))).indices
            return plotting.mosaic(normalize(maps[top].cpu()), ncols=4, gap=1, fill=1.0)
        if panel == "CAM" and loaded.record.cam_layer is None:
            return (f"CAM does not apply to {loaded.name}:\nits head is not global average\n"
                    "pooling + one linear layer.\nGrad-CAM works on any CNN.")
        out = p.kept(panel, c, layer)
        if METHODS[panel].output == "map":
            return normalize_maps(upsample(out, p.x.shape[-2:]))[0].numpy()
        return saliency_map(out, "abs")[0].numpy()

    def draw(self) -> Figure:
        panels = [p for p in PANELS if p in self.controls["methods"].value]
        layer, cam_at = self.controls["layer"].value, cam_layer(self.loaded)
        where = {p: layer if p in LAYER_PANELS else cam_at if p == "CAM" else "" for p in panels}
        return figures.compare_figure(self.prepared().shown, {p: self.result(p) for p in panels},
                                      self.target()[1], where=where, alpha=self.controls["alpha"].value)
