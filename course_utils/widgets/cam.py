"""The explorers of lessons 05–07: where in the image the evidence for a class is.

* :class:`CAMExplorer` (05): CAM's raw low-resolution map beside its upsampled overlay.
* :class:`GradCAMExplorer` (06): Grad-CAM at any block, for any class. The forward
  pass is kept per image (a :class:`~course_utils.cam.GradCAM` holding every block),
  so switching the class or the layer costs only a backward pass from the logits.
* :class:`GuidedGradCAMExplorer` (07): guided backprop, Grad-CAM, their product, and
  Grad-CAM with the ReLU rules of lesson 04 in its backward pass.
"""

from __future__ import annotations

from collections import OrderedDict

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import plotting
from ..cam import BLOCK_LAYERS, GradCAM, cam_all_classes, guided_grad_cam, normalize_maps, upsample
from ..saliency import guided_backprop, saliency_map
from .base import ClassExplorer, offered_models

__all__ = ["CAMExplorer", "GradCAMExplorer", "GuidedGradCAMExplorer"]

COLORMAPS = ["jet", "inferno", "viridis", "gray"]


def _look_controls(cmap: str = "jet", alpha: float = 0.5) -> dict[str, w.Widget]:
    return {
        "cmap": w.Dropdown(options=COLORMAPS, value=cmap, description="Colours"),
        "alpha": w.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="Opacity",
                               continuous_update=False),
    }


class _BlockLayers:
    """A "Layer" control listing the chosen model's blocks (:data:`BLOCK_LAYERS`),
    refitted when the model changes; ``default_block`` indexes the one selected."""

    default_block = -1

    def _layer_control(self, models: list[str], layer: str | None = None) -> w.Dropdown:
        layers = BLOCK_LAYERS[models[0]]
        return w.Dropdown(options=layers, value=layer if layer in layers else layers[self.default_block],
                          description="Layer")

    def fit_controls(self) -> None:
        layers = BLOCK_LAYERS[self.controls["model"].value]
        if list(self.controls["layer"].options) != layers:
            self.controls["layer"].options = layers
            self.controls["layer"].value = layers[self.default_block]


def _show_raw(ax, raw: torch.Tensor, cmap: str, title: str) -> None:
    """The map at the layer's own resolution: one square per position, no smoothing."""
    ax.imshow(normalize_maps(raw).numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=9)


class CAMExplorer(ClassExplorer):
    """Pick an image and a class: CAM's map at the last block (raw) and laid over the image.
    CAM needs global average pooling + one linear layer, so VGG-16 is not offered."""

    def __init__(self, models: list[str] | None = None, k: int = 6):
        models = offered_models(exclude=("vgg16",)) if models is None else models
        super().__init__(_look_controls(), models=models, k=k)

    def prepare(self, loaded, x):
        # One forward pass gives every class's map: a class switch only picks another one.
        logits, maps = cam_all_classes(loaded.model, x, layer=loaded.last_conv_layer)
        return logits, maps[0]

    def maps(self) -> torch.Tensor:
        """The raw CAM of the chosen class, (h, w)."""
        return self._input()[3][self.target()[0]]

    def draw(self) -> Figure:
        shown = self._input()[1]
        label = self.target()[1]
        cmap, alpha = self.controls["cmap"].value, self.controls["alpha"].value
        raw = self.maps()
        h, w_ = raw.shape
        heat = normalize_maps(upsample(raw, shown.shape[:2]))
        fig = Figure(figsize=(9.5, 3.4))
        ax_in, ax_raw, ax_over = fig.subplots(1, 3)
        plotting.show_image(shown, ax=ax_in, title=f"the input\nclass: {label}")
        _show_raw(ax_raw, raw, cmap, f"CAM at {self.loaded.last_conv_layer}\nraw, {h}×{w_}")
        plotting.overlay_heatmap(shown, heat, ax=ax_over, alpha=alpha, cmap=cmap,
                                 title=f"upsampled to {shown.shape[0]}×{shown.shape[1]}\nopacity {alpha:.2f}")
        fig.tight_layout()
        return fig


class GradCAMExplorer(_BlockLayers, ClassExplorer):
    """Pick an image, a class, a layer (a block, early to late), colours and opacity.
    Each image runs forward once; a new class or layer needs only a backward pass."""

    def __init__(self, models: list[str] | None = None, k: int = 6, counterfactual: bool = False):
        models = offered_models() if models is None else models
        controls = {
            "layer": self._layer_control(models),
            "counterfactual": w.Checkbox(value=counterfactual, description="counterfactual (−gradient)"),
            **_look_controls(),
        }
        super().__init__(controls, models=models, k=k)

    def prepare(self, loaded, x):
        g = GradCAM(loaded.model, x, BLOCK_LAYERS[loaded.name])
        return g.logits, g

    def result(self):
        g = self._input()[3]
        return g.map(self.target()[0], self.controls["layer"].value, counterfactual=self.controls["counterfactual"].value)

    def draw(self) -> Figure:
        shown = self._input()[1]
        label = self.target()[1]
        cmap, alpha = self.controls["cmap"].value, self.controls["alpha"].value
        res = self.result()
        raw = res.maps[0]
        heat = normalize_maps(upsample(raw, shown.shape[:2]))
        kind = "counterfactual Grad-CAM" if self.controls["counterfactual"].value else "Grad-CAM"
        fig = Figure(figsize=(9.5, 3.4))
        ax_in, ax_raw, ax_over = fig.subplots(1, 3)
        plotting.show_image(shown, ax=ax_in, title=f"the input\nclass: {label}")
        _show_raw(ax_raw, raw, cmap, f"{kind} at {res.layer}\nraw, {raw.shape[0]}×{raw.shape[1]}"
                  + ("  (all zero)" if raw.max() <= 0 else ""))
        plotting.overlay_heatmap(shown, heat, ax=ax_over, alpha=alpha, cmap=cmap,
                                 title=f"upsampled, opacity {alpha:.2f}")
        fig.tight_layout()
        return fig


#: The methods of lesson 07's explorer: what is computed and which ReLU rule it uses.
GUIDED_METHODS = ["Guided Grad-CAM", "guided backprop", "Grad-CAM", "Grad-CAM, guided ReLUs",
                  "Grad-CAM, deconvnet ReLUs"]


class GuidedGradCAMExplorer(_BlockLayers, ClassExplorer):
    """Pick an image, a class, a method and a layer: Guided Grad-CAM and its two
    parts, or Grad-CAM computed with lesson 04's ReLU rules in its backward pass.

    The layer starts at the second-to-last block: the ReLU rules only act on ReLUs
    *after* the layer, and after the last block there is none in the course model
    or the ResNets (only pooling and the linear layer)."""

    default_block = -2

    def __init__(self, models: list[str] | None = None, k: int = 6, layer: str | None = None):
        models = offered_models() if models is None else models
        controls = {
            "method": w.Dropdown(options=GUIDED_METHODS, value="Guided Grad-CAM", description="Method"),
            "layer": self._layer_control(models, layer),
        }
        self._results: OrderedDict = OrderedDict()
        super().__init__(controls, models=models, k=k)

    def _compute(self, method: str, layer: str) -> torch.Tensor:
        """(H, W, 3) or (H, W) picture data in [0, 1] for the current image and class (cached)."""
        x = self._input()[0]
        c = self.target()[0]
        key = (*self.image_key(), c, method, layer)
        if key not in self._results:
            model = self.loaded.model
            rule = {"Grad-CAM, guided ReLUs": "guided", "Grad-CAM, deconvnet ReLUs": "deconvnet"}.get(method, "plain")
            if method == "guided backprop":
                out = saliency_map(guided_backprop(model, x, c), "rgb")[0]
            elif method == "Guided Grad-CAM":
                out = saliency_map(guided_grad_cam(model, x, c, layer=layer), "rgb")[0]
            else:
                out = normalize_maps(GradCAM(model, x, layer, rule=rule).map(c).upsampled(x.shape[-2:]))[0]
            self._results[key] = out
            while len(self._results) > 32:
                self._results.popitem(last=False)
        return self._results[key]

    def draw(self) -> Figure:
        shown = self._input()[1]
        label = self.target()[1]
        method, layer = self.controls["method"].value, self.controls["layer"].value
        pic = self._compute(method, layer)
        fig = Figure(figsize=(6.6, 3.4))
        ax_in, ax_out = fig.subplots(1, 2)
        plotting.show_image(shown, ax=ax_in, title=f"the input\nclass: {label}")
        where = "" if method == "guided backprop" else f" at {layer}"
        if pic.ndim == 3:
            plotting.show_image(pic, ax=ax_out, title=f"{method}{where}\n(grey = 0)")
        else:
            flat = "\n(all zero: no positive evidence at this layer)" if pic.max() <= 0 else ""
            plotting.overlay_heatmap(shown, pic, ax=ax_out, alpha=0.5, title=f"{method}{where}{flat}")
        fig.tight_layout()
        return fig
