"""Lesson 04's explorer: an image, a class and a method in; which pixels move
that class's score out, shown three ways (the input, the map, the map over the input).

A new image runs the model once: that pass lists the classes with their
probabilities and gives the first picture, the top class's gradient by the
chosen method. Each gradient (image × class × method) is computed once and
cached, so the display and the overlay's opacity only redraw.
"""

from __future__ import annotations

from collections import OrderedDict

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import plotting
from ..saliency import DISPLAYS, METHODS, input_gradient, saliency, saliency_map
from .base import ClassExplorer

__all__ = ["SaliencyExplorer"]

_SHORT = {
    "abs": "|g|, max over colours",
    "positive": "raises the score",
    "signed": "red raises, blue lowers",
    "rgb": "g as colours, grey = 0",
}


class SaliencyExplorer(ClassExplorer):
    """Pick an image, a class (its top ``k`` listed with probabilities), a method
    (vanilla gradient, guided backprop, deconvnet, SmoothGrad), a display and the
    overlay's opacity."""

    def __init__(self, models: list[str] | None = None, k: int = 6, cache_size: int = 32,
                 smoothgrad_samples: int = 16):
        self.smoothgrad_samples = smoothgrad_samples
        self._grads: OrderedDict = OrderedDict()  # (model, image, class, method) -> gradient
        controls = {
            "method": w.Dropdown(options=list(METHODS), value="vanilla gradient", description="Method"),
            "display": w.Dropdown(options=list(DISPLAYS), value="abs", description="Display"),
            "alpha": w.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="Opacity",
                                   continuous_update=False),
        }
        super().__init__(controls, models=models, k=k, cache_size=cache_size)

    def prepare(self, loaded, x):
        """One pass for a new image: the logits (the class list) and the top class's
        gradient by the chosen method, which is the picture the image opens with."""
        method = self.controls["method"].value if "method" in self.controls else "vanilla gradient"
        if method == "SmoothGrad":  # its gradients come from noisy copies, not from this pass
            return super().prepare(loaded, x)
        logits, grad = input_gradient(loaded.model, x, None, METHODS[method])
        key = (*self.image_key(), int(logits[0].argmax()), method)
        self._grads[key] = grad[0]
        return logits, None

    def gradient(self) -> torch.Tensor:
        """The gradient for the current image, class and method (cached)."""
        x = self._input()[0]
        target, method = self.target()[0], self.controls["method"].value
        key = (*self.image_key(), target, method)
        if key not in self._grads:
            options = {"samples": self.smoothgrad_samples, "progress": False} if method == "SmoothGrad" else {}
            self._grads[key] = saliency(self.loaded.model, x, method, target, **options)[0]
            while len(self._grads) > self.cache_size:
                self._grads.popitem(last=False)
        self._grads.move_to_end(key)
        return self._grads[key]

    def draw(self) -> Figure:
        shown = self._input()[1]
        label = self.target()[1]
        method, display = self.controls["method"].value, self.controls["display"].value
        alpha = self.controls["alpha"].value
        grad = self.gradient()
        smap = saliency_map(grad, display)
        fig = Figure(figsize=(9.5, 3.4))
        ax_in, ax_map, ax_over = fig.subplots(1, 3)
        plotting.show_image(shown, ax=ax_in, title=f"the input\nclass: {label}")
        plotting.show_saliency(smap, display, ax=ax_map, title=f"{method}\n{display}: {_SHORT[display]}")
        over = "abs" if display == "rgb" else display  # a colour gradient is not laid over a photo
        over_map = saliency_map(grad, "abs") if display == "rgb" else smap
        plotting.show_saliency(over_map, over, ax=ax_over, image=shown, alpha=alpha,
                               title=f"{over} over the input\nopacity {alpha:.2f}")
        fig.tight_layout()
        return fig
