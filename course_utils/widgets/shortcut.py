"""Lesson 10's explorer: put a shape on any background and ask a model what it
sees, and where it looks — the shortcut model (trained on biased scenes), the same
model retrained on balanced scenes (``debiased``, the lesson's fix) or the course
model (trained on ordinary ones)."""

from __future__ import annotations

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import evaluation as ev
from .. import figures
from ..methods import explain
from ..scenes import CLASSES, make_scene
from .base import Explorer, cached_model

__all__ = ["ShortcutExplorer"]

OWN, ORDINARY = "its own class's", "ordinary (random)"
#: The methods offered, by the label shown -> the registry's name (each at its default layer).
EXPLAIN = {"Grad-CAM (last block)": "Grad-CAM", "guided backprop": "guided backprop",
           "vanilla gradient": "vanilla gradient"}


class ShortcutExplorer(Explorer):
    """Model × shape × background × scene × method: the input, the explanation of the
    model's top class, and its top classes."""

    def __init__(self, seed: int = 31, n_scenes: int = 20):
        self.seed, self.n_scenes = seed, n_scenes
        super().__init__()

    def make_controls(self) -> dict[str, w.Widget]:
        return {
            "model": w.Dropdown(options=["shortcut", "debiased", "course"], value="shortcut", description="Model"),
            "shape": w.Dropdown(options=list(CLASSES), value="star", description="Shape"),
            "background": w.Dropdown(options=[OWN, *[f"{c}'s" for c in CLASSES], ORDINARY], value=OWN,
                                     description="Background"),
            "scene": w.IntSlider(value=0, min=0, max=self.n_scenes - 1, description="Scene", continuous_update=False),
            "method": w.Dropdown(options=list(EXPLAIN), value="Grad-CAM (last block)", description="Method"),
        }

    def scene(self):
        shape = CLASSES.index(self.controls["shape"].value)
        bg = self.controls["background"].value
        background = shape if bg == OWN else None if bg == ORDINARY else CLASSES.index(bg.removesuffix("'s"))
        return make_scene(self.seed, self.controls["scene"].value, classes=[shape], background=background)

    def draw(self) -> Figure:
        m, scene, method = cached_model(self.controls["model"].value), self.scene(), self.controls["method"].value
        x = m.batch([scene.image])
        with torch.no_grad():
            top = m.top_classes(m.model(x), k=3)[0]
        raw = explain(m.model, x, EXPLAIN[method])[0]
        inside = float(ev.energy_inside(raw[None], scene.masks[:1])[0])
        return figures.shortcut_figure(scene.image, scene.masks, raw, top, scene.names[0],
                                       self.controls["background"].value, method, m.name, inside)
