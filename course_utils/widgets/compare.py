"""The compare dashboard: one image, every method of the course side by side, for one class
(also a standalone app: ``voila notebooks/compare.ipynb``). The panels are the feature maps and
every method of :data:`course_utils.methods.METHODS`; those that run the model dozens of times or
more (SmoothGrad, Score-CAM, Ablation-CAM, Integrated Gradients, Occlusion) are offered but not
shown until chosen, so that the page stays quick.

Cost: each image gets one :class:`~course_utils.methods.Explainer`, whose forward pass
runs once with every block kept and gives the class list, the feature maps, CAM and
Grad-CAM at any block; that pass reaches back to the input, so each gradient method shown
costs one backward pass per class and no forward pass (Guided Grad-CAM reuses guided
backprop's); every result is cached, so a change recomputes only what is new.
"""

from __future__ import annotations

import ipywidgets as w
from PIL import Image

from .. import figures, plotting
from ..cam import normalize_maps, upsample
from ..features import normalize
from ..methods import METHODS, Explainer
from ..saliency import saliency_map
from .base import Cache, ClassExplorer
from .choices import opacity
from .cam import _BlockLayers

__all__ = ["CompareExplorer", "default_panels", "offered_panels"]


def offered_panels() -> list[str]:
    """The panels the dashboard can show, in reading order (the input comes first, always)."""
    return ["feature maps", *METHODS]


def default_panels() -> list[str]:
    """The panels shown until others are chosen: all but the methods of many passes."""
    return [p for p in offered_panels() if p not in METHODS or not METHODS[p].many_passes]


def _at_layer(panel: str) -> bool:
    """Does the panel depend on the chosen layer? (The others use the image, the class or the CAM layer.)"""
    return panel == "feature maps" or METHODS[panel].layer == "gradcam_layer"


class CompareExplorer(_BlockLayers, ClassExplorer):
    """Pick an image, a model, a class, a layer and the panels to show. Gradient pictures are ``|g|``,
    the maximum over colours (lesson 04's "abs" display), and so are attributions (Input × Gradient,
    Integrated Gradients: ``|attribution|``); the methods' maps (CAM, Grad-CAM and its family, Occlusion)
    are laid over the image; feature maps are the layer's 16 most active channels, each scaled to its own range."""

    def __init__(self, models: list[str] | None = None, k: int = 6, panels=None, cache_size: int = 128, *,
                 model: str | None = None, image: str = "scene 0"):
        self.offered = offered_panels()
        unknown = [p for p in panels or () if p not in self.offered]
        if unknown:
            raise ValueError(f"unknown panel(s) {unknown}; choose among {self.offered}")
        self.panels = tuple(panels or default_panels())
        self._results = Cache(cache_size)  # (model, image, upload, class, panel, layer) -> data
        super().__init__(models, k=k, model=model, image=image)

    def make_controls(self) -> dict[str, w.Widget]:
        return {**super().make_controls(), "layer": self.layer_control(),
                "methods": w.SelectMultiple(options=self.offered, value=self.panels, rows=4, description="Methods"),
                "alpha": opacity()}

    def prepare(self, loaded, x):
        ex = Explainer(loaded.model, x, to_input=True)  # a new class: three backward passes, no forward pass
        return ex.kept.logits, ex

    def result(self, panel: str):
        """The data behind one panel for the current image, class and layer (cached): an (H, W) array
        in [0, 1] (a map, or the feature maps' mosaic), or a string saying why the method does not apply."""
        if panel not in self.offered:
            raise ValueError(f"unknown panel {panel!r}; choose among {self.offered}")
        c = self.target()[0]
        key = self._key(panel, c)
        return self._results.fetch(key, lambda: self._compute(panel, c, key[-1]))

    def _key(self, panel: str, c: int) -> tuple:  # (model, image, upload, class, panel, layer or None)
        return *self.image_key(), c, panel, self.controls["layer"].value if _at_layer(panel) else None

    def _prefetch(self, panels) -> None:
        """The input gradients the panels still to compute will read, all at once: a backward pass
        each from the image's kept pass, which reaches the input."""
        c = self.target()[0]
        todo = [p for p in panels if p in METHODS and self._key(p, c) not in self._results]
        self.prepared().kept.prefetch(todo, c)

    def _compute(self, panel: str, c: int, layer: str | None):
        p, loaded = self.prepared(), self.loaded
        if panel == "feature maps":
            maps = p.kept.kept.acts[layer][0].detach()
            top = maps.mean(dim=(1, 2)).topk(min(16, len(maps))).indices
            return plotting.mosaic(normalize(maps[top].cpu()), ncols=4, gap=1, fill=1.0)
        if panel == "CAM" and loaded.record.cam_layer is None:
            return (f"CAM does not apply to {loaded.name}:\nits head is not global average\n"
                    "pooling + one linear layer.\nGrad-CAM works on any CNN.")
        out = p.kept(panel, c, layer, **({"progress": False} if METHODS[panel].many_passes else {}))
        if METHODS[panel].output == "map":
            return normalize_maps(upsample(out, p.x.shape[-2:]))[0].numpy()
        return saliency_map(out, "abs")[0].numpy()

    def draw(self) -> Image.Image:  # one picture, quicker than a figure of eight axes
        panels = [p for p in self.offered if p in self.controls["methods"].value]
        layer, cam_at = self.controls["layer"].value, self.loaded.record.cam_layer
        where = {p: layer if _at_layer(p) else cam_at if p == "CAM" else "" for p in panels}
        self._prefetch(panels)
        return figures.compare_figure(self.prepared().shown, {p: self.result(p) for p in panels},
                                      self.target()[1], where=where, alpha=self.controls["alpha"].value,
                                      maps={p for p in panels if p in METHODS and METHODS[p].output == "map"},
                                      attributions={p for p in panels if p in METHODS and METHODS[p].attribution})
