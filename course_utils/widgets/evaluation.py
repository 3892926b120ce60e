"""Lesson 09's explorer: one method, one metric, one scene — and where that scene
stands among the others.

The maps of a method are computed for the whole scene set at once and cached, and
so are its deletion / insertion curves; moving the scene slider only redraws.
"""

from __future__ import annotations

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import evaluation as ev
from .. import figures
from ..methods import METHODS, explain
from ..scenes import CLASSES, make_scenes
from .base import Cache, Explorer, cached_model

__all__ = ["EvaluationExplorer"]

METRICS = ["pointing game", "energy inside", "deletion", "insertion"]


def compared(record) -> dict[str, tuple[str, str | None]]:
    """What lesson 09 compares, by the label shown: every method of lessons 04–07 (``None``:
    at its default layer), and Grad-CAM twice, at the last block and at the block before.
    (Lesson 11's leaderboard ranks the others too.)"""
    out = {}
    for name in (name for name, m in METHODS.items() if m.lesson is not None and m.lesson <= 7):
        if name == "Grad-CAM":
            out.update({"Grad-CAM (last block)": (name, None), "Grad-CAM (block before)": (name, record.blocks[-2])})
        else:
            out[name] = (name, None)
    return out


class EvaluationExplorer(Explorer):
    """Method × metric × scene on a fixed set of held-out scenes of the course model
    (``n_scenes`` scenes of seed ``seed``, each explained for its true class)."""

    def __init__(self, n_scenes: int = 24, seed: int = 21, steps: int = 16, tolerance: int = 0):
        self.loaded = cached_model("course")
        self.scenes = make_scenes(n_scenes, seed=seed)
        self.x = self.loaded.batch(list(self.scenes.images))
        self.targets = [int(t) for t in self.scenes.labels[:, 0]]
        self.masks = torch.from_numpy(self.scenes.masks[:, 0])
        self.steps, self.tolerance = steps, tolerance
        self.methods = compared(self.loaded.record)
        self._maps, self._curves = Cache(), Cache()  # method -> maps; (method, metric) -> (fractions, curves)
        super().__init__()

    def make_controls(self) -> dict[str, w.Widget]:
        return {
            "method": w.Dropdown(options=list(self.methods), value="Grad-CAM (last block)", description="Method"),
            "metric": w.Dropdown(options=METRICS, value="pointing game", description="Metric"),
            "scene": w.IntSlider(value=0, min=0, max=len(self.scenes) - 1, description="Scene",
                                 continuous_update=False),
        }

    def maps(self, label: str) -> torch.Tensor:
        """The raw maps of the method shown as ``label``, for every scene (cached)."""
        method, layer = self.methods[label]
        options = {"samples": 16, "progress": False} if method == "SmoothGrad" else {}
        return self._maps.fetch(label, lambda: explain(self.loaded.model, self.x, method, self.targets, layer=layer,
                                                       **options))

    def scores(self, method: str, metric: str) -> torch.Tensor:
        """The metric for every scene: (N,) (the AUC for the curves)."""
        if metric == "pointing game":
            return ev.pointing_game(self.maps(method), self.masks, self.tolerance).float()
        if metric == "energy inside":
            return ev.energy_inside(self.maps(method), self.masks)
        return ev.auc(*self.curves(method, metric))

    def curves(self, method: str, metric: str):
        fn = ev.deletion_curve if metric == "deletion" else ev.insertion_curve
        return self._curves.fetch((method, metric), lambda: fn(self.loaded.model, self.x, self.maps(method),
                                                               self.targets, steps=self.steps))

    def draw(self) -> Figure:
        method, metric, i = (self.controls[k].value for k in ("method", "metric", "scene"))
        scene = self.scenes[i]
        curves = self.curves(method, metric) if metric in ("deletion", "insertion") else None
        return figures.evaluation_figure(scene.image, scene.masks, self.maps(method)[i], self.scores(method, metric),
                                         i, CLASSES[scene.label], method, metric, curves=curves)
