"""Lesson 10's explorer: put a shape on any background and ask two models what they
see, and where they look — the shortcut model (trained on biased scenes) or the
course model (trained on ordinary ones)."""

from __future__ import annotations

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import evaluation as ev
from .. import plotting
from ..cam import normalize_maps, upsample
from ..scenes import CLASSES, make_scene
from .base import Explorer, cached_model

__all__ = ["ShortcutExplorer"]

OWN, ORDINARY = "its own class's", "ordinary (random)"
EXPLAIN = ["Grad-CAM (last block)", "guided backprop", "vanilla gradient"]


class ShortcutExplorer(Explorer):
    """Model × shape × background × scene × method: the input, the explanation of the
    model's top class, and its top classes."""

    def __init__(self, seed: int = 31, n_scenes: int = 20):
        self.seed = seed
        controls = {
            "model": w.Dropdown(options=["shortcut", "course"], value="shortcut", description="Model"),
            "shape": w.Dropdown(options=list(CLASSES), value="star", description="Shape"),
            "background": w.Dropdown(options=[OWN, *[f"{c}'s" for c in CLASSES], ORDINARY], value=OWN,
                                     description="Background"),
            "scene": w.IntSlider(value=0, min=0, max=n_scenes - 1, description="Scene", continuous_update=False),
            "method": w.Dropdown(options=EXPLAIN, value=EXPLAIN[0], description="Method"),
        }
        super().__init__(controls, columns=3)

    def scene(self):
        shape = CLASSES.index(self.controls["shape"].value)
        bg = self.controls["background"].value
        background = shape if bg == OWN else None if bg == ORDINARY else CLASSES.index(bg.removesuffix("'s"))
        return make_scene(self.seed, self.controls["scene"].value, classes=[shape], background=background)

    def draw(self) -> Figure:
        m = cached_model(self.controls["model"].value)
        scene = self.scene()
        x = m.batch([scene.image])
        with torch.no_grad():
            logits = m.model(x)
        top = m.top_classes(logits, k=3)[0]
        method = self.controls["method"].value
        raw = ev.explain(m.model, x, method, None)[0]
        heat = normalize_maps(upsample(raw, 64) if raw.shape[-1] != 64 else raw)
        inside = float(ev.energy_inside(raw[None], scene.masks[:1])[0])
        fig = Figure(figsize=(9.5, 3.2))
        ax_in, ax_map, ax_bar = fig.subplots(1, 3, gridspec_kw=dict(width_ratios=[1, 1, 1.2]))
        plotting.outline_masks(scene.image, scene.masks, ax=ax_in,
                               title=f"a {scene.names[0]}, background: {self.controls['background'].value}")
        plotting.overlay_heatmap(scene.image, heat.numpy(), ax=ax_map, alpha=0.55,
                                 title=f"{method} for '{top[0][0]}'\n{inside:.0%} of it on the shape")
        ax_map.contour(scene.masks[0].astype(float), levels=[0.5], colors=["white"], linewidths=1)
        plotting.topk_bars(top, ax=ax_bar, title=f"{m.name} model: top classes", highlight=scene.names[0])
        fig.tight_layout()
        return fig
