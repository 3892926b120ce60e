"""Lesson 04's explorer: an image, a class and a method in; which pixels move
that class's score out, shown three ways (the input, the map, the map over the input).
Each gradient (image × class × method) is computed once and cached, so the display and
the overlay's opacity only redraw.
"""

from __future__ import annotations

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import figures
from ..methods import METHODS, Explainer
from ..saliency import DISPLAYS
from .base import Cache, ClassExplorer
from .choices import opacity

__all__ = ["SaliencyExplorer"]

#: Lesson 04's methods: those of the registry that lesson teaches (each explains the input, at no layer).
INPUT_METHODS = [name for name, m in METHODS.items() if m.lesson == 4]


class SaliencyExplorer(ClassExplorer):
    """Pick an image, a class (its top ``k`` listed), a method, a display and the overlay's opacity."""

    def __init__(self, models: list[str] | None = None, k: int = 6, cache_size: int = 32,
                 smoothgrad_samples: int = 16):
        self.smoothgrad_samples = smoothgrad_samples
        self._grads = Cache(cache_size)  # (model, image, upload, class, method) -> gradient
        super().__init__(models, k=k, cache_size=cache_size)

    def make_controls(self) -> dict[str, w.Widget]:
        return {
            **super().make_controls(),
            "method": w.Dropdown(options=INPUT_METHODS, value="vanilla gradient", description="Method"),
            "display": w.Dropdown(options=list(DISPLAYS), value="abs", description="Display"),
            "alpha": opacity(0.6),
        }

    def prepare(self, loaded, x):
        """One pass for a new image: the logits (the class list) and the top class's
        gradient by the chosen method, which is the picture the image opens with."""
        ex = Explainer(loaded.model, x, [])
        if self.controls["method"].value == "SmoothGrad":  # its gradients come from noisy copies, not from this pass
            return super().prepare(loaded, x)[0], ex
        ex(self.controls["method"].value)  # the Explainer keeps the gradient, and the logits of its pass
        return ex.logits, ex

    def gradient(self) -> torch.Tensor:
        """The gradient for the current image, class and method (cached)."""
        target, method = self.target()[0], self.controls["method"].value
        options = {"samples": self.smoothgrad_samples, "progress": False} if method == "SmoothGrad" else {}
        return self._grads.fetch((*self.image_key(), target, method),
                                 lambda: self.prepared().kept(method, target, **options)[0])

    def draw(self) -> Figure:
        c = self.controls
        return figures.saliency_figure(self.prepared().shown, self.gradient(), self.target()[1], c["method"].value,
                                       c["display"].value, c["alpha"].value)
