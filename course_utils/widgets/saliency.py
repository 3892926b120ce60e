"""Lesson 04's explorer: an image, a class and a method in; which pixels move
that class's score out, shown three ways (the input, the map, the map over the input).

One forward pass per image lists the classes with their scores; each gradient
(image × class × method) is computed once and cached, so the display and the
overlay's opacity only redraw.
"""

from __future__ import annotations

from collections import OrderedDict

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import plotting
from ..images import ImageLoadError
from ..models import available_models
from ..saliency import DISPLAYS, METHODS, saliency, saliency_map
from .base import Explorer, cached_model, image_controls

__all__ = ["SaliencyExplorer"]


class SaliencyExplorer(Explorer):
    """Pick an image, a class (its top ``k`` listed with probabilities), a method
    (vanilla gradient, guided backprop, deconvnet, SmoothGrad), a display and the
    overlay's opacity."""

    def __init__(self, models: list[str] | None = None, k: int = 6, cache_size: int = 32,
                 smoothgrad_samples: int = 16):
        if models is None:
            models = [name for name, here in available_models().items() if here]
        self.k = k
        self.cache_size = cache_size
        self.smoothgrad_samples = smoothgrad_samples
        self._upload = None
        self._inputs: OrderedDict = OrderedDict()  # (model, image) -> (x, shown, [(label, class)])
        self._grads: OrderedDict = OrderedDict()  # (model, image, class, method) -> gradient
        self.controls = {**image_controls(), "model": w.Dropdown(options=models, value=models[0],
                                                                description="Model")}
        controls = {
            **self.controls,
            "target": w.Dropdown(options=self._classes(), description="Class"),
            "method": w.Dropdown(options=list(METHODS), value="vanilla gradient", description="Method"),
            "display": w.Dropdown(options=list(DISPLAYS), value="abs", description="Display"),
            "alpha": w.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="Opacity",
                                   continuous_update=False),
        }
        redraw = ["target", "method", "display", "alpha"]
        super().__init__(controls, columns=3, redraw_on=redraw)
        for name in ("image", "model"):
            controls[name].observe(self._on_input, names="value")

    # --- the cached computations -----------------------------------------------------

    def _key(self):
        choice = self.controls["image"].value
        upload = hash(self._upload[1]) if choice.startswith("upload: ") and self._upload else None
        return self.controls["model"].value, choice, upload

    def _input(self):
        """(x, the input as the model sees it, class options): one forward pass per image."""
        key = self._key()
        if key not in self._inputs:
            m = cached_model(key[0])
            x = m.batch([self.image()])
            with torch.no_grad():
                probs = m.model(x).softmax(dim=1)[0]
            top = probs.topk(min(self.k, probs.numel()))
            options = [(f"{m.categories[c]} ({p:.2f})", c) for p, c in zip(top.values.tolist(), top.indices.tolist())]
            self._inputs[key] = (x, m.to_display(x)[0], options)
            _trim(self._inputs, self.cache_size)
        self._inputs.move_to_end(key)
        return self._inputs[key]

    def _classes(self):
        return self._input()[2]

    def gradient(self) -> torch.Tensor:
        """The gradient for the current image, class and method (cached)."""
        x = self._input()[0]
        target, method = self.controls["target"].value, self.controls["method"].value
        key = (*self._key(), target, method)
        if key not in self._grads:
            m = cached_model(key[0])
            options = {"samples": self.smoothgrad_samples, "progress": False} if method == "SmoothGrad" else {}
            self._grads[key] = saliency(m.model, x, method, target, **options)[0]
            _trim(self._grads, self.cache_size)
        self._grads.move_to_end(key)
        return self._grads[key]

    def _on_input(self, change) -> None:
        """A new image or model: list its classes and select its top class, then redraw once."""
        with self.quietly():
            try:
                options = self._classes()
            except (ImageLoadError, ValueError, RuntimeError):
                return  # the redraw at the end shows the error as the message
            self.controls["target"].options = options
            self.controls["target"].value = options[0][1]

    # --- the picture -----------------------------------------------------------------------

    def draw(self) -> Figure:
        _, shown, options = self._input()
        target = self.controls["target"].value
        if target not in [c for _, c in options]:  # e.g. a stale class while the image changes
            target = options[0][1]
        method, display = self.controls["method"].value, self.controls["display"].value
        smap = saliency_map(self.gradient(), display)
        label = dict((c, lab) for lab, c in options)[target]
        fig = Figure(figsize=(9.5, 3.4))
        ax_in, ax_map, ax_over = fig.subplots(1, 3)
        plotting.show_image(shown, ax=ax_in, title=f"the input\nclass: {label}")
        plotting.show_saliency(smap, display, ax=ax_map, title=f"{method}\n{display}: {_SHORT[display]}")
        over = display if display != "rgb" else "abs"
        over_map = smap if display != "rgb" else saliency_map(self.gradient(), "abs")
        plotting.show_saliency(over_map, over, ax=ax_over, image=shown, alpha=self.controls["alpha"].value,
                               title=f"{over} over the input\nopacity {self.controls['alpha'].value:.2f}")
        fig.tight_layout()
        return fig


_SHORT = {
    "abs": "|g|, max over colours",
    "positive": "raises the score",
    "signed": "red raises, blue lowers",
    "rgb": "g as colours, grey = 0",
}


def _trim(cache: OrderedDict, size: int) -> None:
    while len(cache) > size:
        cache.popitem(last=False)
