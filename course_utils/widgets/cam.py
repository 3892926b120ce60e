"""The explorers of lessons 05–07 (CAM, Grad-CAM, Guided Grad-CAM): where in the image the evidence
for a class is. Grad-CAM's forward pass is kept per image (a :class:`~course_utils.cam.GradCAM` holding
every block), so switching the class or the layer costs only a backward pass from the logits.
"""

from __future__ import annotations

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import figures
from ..cam import GradCAM, cam_all_classes, normalize_maps, upsample
from ..methods import METHODS, Explainer
from ..saliency import saliency_map
from .base import Cache, ClassExplorer
from .choices import block_layers, cam_models, opacity

__all__ = ["CAMExplorer", "GradCAMExplorer", "GuidedGradCAMExplorer"]

COLORMAPS = ["jet", "inferno", "viridis", "gray"]


def _look_controls() -> dict[str, w.Widget]:
    return {"cmap": w.Dropdown(options=COLORMAPS, value="jet", description="Colours"), "alpha": opacity()}


class _BlockLayers:
    """A "Layer" control listing the chosen model's blocks (:func:`~.choices.block_layers`),
    refitted when the model changes; ``default_block`` indexes the one selected."""

    default_block = -1

    def layer_control(self, layer: str | None = None) -> w.Dropdown:
        layers = block_layers(self.models[0])
        return w.Dropdown(options=layers, value=layer if layer in layers else layers[self.default_block],
                          description="Layer")

    def fit_to_input(self) -> None:
        super().fit_to_input()
        layers = block_layers(self.controls["model"].value)
        if list(self.controls["layer"].options) != layers:
            self.controls["layer"].options = layers
            self.controls["layer"].value = layers[self.default_block]


class CAMExplorer(ClassExplorer):
    """Pick an image and a class: CAM's map at the last block (raw) and laid over the image.
    CAM needs global average pooling + one linear layer, so VGG-16 is not offered."""

    def __init__(self, models: list[str] | None = None, k: int = 6):
        super().__init__(cam_models() if models is None else models, k=k)

    def make_controls(self) -> dict[str, w.Widget]:
        return {**super().make_controls(), **_look_controls()}

    def prepare(self, loaded, x):
        # One forward pass gives every class's map: a class switch only picks another one.
        logits, maps = cam_all_classes(loaded.model, x, layer=loaded.record.cam_layer)
        return logits, maps[0]

    def draw(self) -> Figure:
        c, (target, label), p = self.controls, self.target(), self.prepared()
        return figures.class_map_figure(p.shown, p.kept[target], label, self.loaded.record.cam_layer, "CAM",
                                        cmap=c["cmap"].value, alpha=c["alpha"].value)


class GradCAMExplorer(_BlockLayers, ClassExplorer):
    """Pick an image, a class, a layer (a block, early to late), colours and opacity."""

    def __init__(self, models: list[str] | None = None, k: int = 6, counterfactual: bool = False):
        self.counterfactual = counterfactual
        super().__init__(models, k=k)

    def make_controls(self) -> dict[str, w.Widget]:
        return {**super().make_controls(), "layer": self.layer_control(), "counterfactual": w.Checkbox(
            value=self.counterfactual, description="counterfactual (−gradient)"), **_look_controls()}

    def prepare(self, loaded, x):
        g = GradCAM(loaded.model, x, block_layers(loaded.name))
        return g.logits, g

    def draw(self) -> Figure:
        c, (target, label), p = self.controls, self.target(), self.prepared()
        res = p.kept.map(target, c["layer"].value, counterfactual=c["counterfactual"].value)
        kind = "counterfactual Grad-CAM" if c["counterfactual"].value else "Grad-CAM"
        return figures.class_map_figure(p.shown, res.maps[0], label, res.layer, kind, cmap=c["cmap"].value,
                                        alpha=c["alpha"].value)


#: The methods of lesson 07's explorer, by the label shown: the registry's method and its options.
GUIDED_METHODS = {"Guided Grad-CAM": ("Guided Grad-CAM", {}), "guided backprop": ("guided backprop", {}),
                  "Grad-CAM": ("Grad-CAM", {}), "Grad-CAM, guided ReLUs": ("Grad-CAM", {"rule": "guided"}),
                  "Grad-CAM, deconvnet ReLUs": ("Grad-CAM", {"rule": "deconvnet"})}


class GuidedGradCAMExplorer(_BlockLayers, ClassExplorer):
    """Pick an image, a class, a method and a layer: Guided Grad-CAM and its two
    parts, or Grad-CAM computed with lesson 04's ReLU rules in its backward pass.

    The layer starts at the second-to-last block: the ReLU rules only act on ReLUs
    *after* the layer, and after the last block there is none in the course model
    or the ResNets (only pooling and the linear layer)."""

    default_block = -2

    def __init__(self, models: list[str] | None = None, k: int = 6, layer: str | None = None):
        self.layer = layer
        self._results = Cache(32)  # (model, image, upload, class, method, layer) -> picture data
        super().__init__(models, k=k)

    def make_controls(self) -> dict[str, w.Widget]:
        return {**super().make_controls(),
                "method": w.Dropdown(options=list(GUIDED_METHODS), value="Guided Grad-CAM", description="Method"),
                "layer": self.layer_control(self.layer)}

    def picture(self) -> torch.Tensor:
        """(H, W, 3) or (H, W) picture data in [0, 1] for the current image, class, method and layer (cached)."""
        c, method, layer = self.target()[0], self.controls["method"].value, self.controls["layer"].value
        return self._results.fetch((*self.image_key(), c, method, layer), lambda: self._compute(c, method, layer))

    def prepare(self, loaded, x):
        ex = Explainer(loaded.model, x, to_input=True)  # guided backprop from the kept pass: no forward pass
        return ex.kept.logits, ex

    def _compute(self, c: int, label: str, layer: str) -> torch.Tensor:
        ex, (method, options) = self.prepared().kept, GUIDED_METHODS[label]
        out = ex(method, c, layer if METHODS[method].layer else None, **options)
        if METHODS[method].output == "gradient":
            return saliency_map(out, "rgb")[0]
        return normalize_maps(upsample(out, ex.x.shape[-2:]))[0]

    def draw(self) -> Figure:
        return figures.guided_grad_cam_figure(self.prepared().shown, self.picture(), self.target()[1],
                                              self.controls["method"].value, self.controls["layer"].value)
