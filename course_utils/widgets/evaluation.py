"""Lesson 09's explorer: one method, one metric, one scene — and where that scene
stands among the others.

The maps of a method are computed for the whole scene set at once and cached, and
so are its deletion / insertion curves; moving the scene slider only redraws.
"""

from __future__ import annotations

import ipywidgets as w
import numpy as np
import torch
from matplotlib.figure import Figure

from .. import evaluation as ev
from .. import plotting
from ..cam import normalize_maps, upsample
from ..scenes import CLASSES, make_scenes
from .base import Explorer, cached_model

__all__ = ["EvaluationExplorer"]

METRICS = ["pointing game", "energy inside", "deletion", "insertion"]


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
        self._maps: dict[str, torch.Tensor] = {}
        self._curves: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        controls = {
            "method": w.Dropdown(options=list(ev.METHODS), value="Grad-CAM (last block)", description="Method"),
            "metric": w.Dropdown(options=METRICS, value="pointing game", description="Metric"),
            "scene": w.IntSlider(value=0, min=0, max=n_scenes - 1, description="Scene", continuous_update=False),
        }
        super().__init__(controls, columns=3)

    def maps(self, method: str) -> torch.Tensor:
        if method not in self._maps:
            self._maps[method] = ev.explain(self.loaded.model, self.x, method, self.targets)
        return self._maps[method]

    def scores(self, method: str, metric: str) -> torch.Tensor:
        """The metric for every scene: (N,) (the AUC for the curves)."""
        if metric == "pointing game":
            return ev.pointing_game(self.maps(method), self.masks, self.tolerance).float()
        if metric == "energy inside":
            return ev.energy_inside(self.maps(method), self.masks)
        return ev.auc(*self.curves(method, metric))

    def curves(self, method: str, metric: str):
        key = (method, metric)
        if key not in self._curves:
            fn = ev.deletion_curve if metric == "deletion" else ev.insertion_curve
            self._curves[key] = fn(self.loaded.model, self.x, self.maps(method), self.targets, steps=self.steps)
        return self._curves[key]

    def draw(self) -> Figure:
        method, metric, i = (self.controls[k].value for k in ("method", "metric", "scene"))
        scene = self.scenes[i]
        raw = self.maps(method)[i]
        heat = normalize_maps(upsample(raw, 64) if raw.shape[-1] != 64 else raw)
        scores = self.scores(method, metric)
        fig = Figure(figsize=(10, 3.3))
        ax_in, ax_map, ax_metric = fig.subplots(1, 3, gridspec_kw=dict(width_ratios=[1, 1, 1.5]))
        plotting.outline_masks(scene.image, scene.masks, ax=ax_in, title=f"scene {i}: {CLASSES[scene.label]}")
        plotting.overlay_heatmap(scene.image, heat.numpy(), ax=ax_map, alpha=0.55, title=f"{method}\n+ = the peak")
        py, px = np.unravel_index(int(heat.argmax()), heat.shape)
        ax_map.plot(px, py, "w+", markersize=12, markeredgewidth=2)
        ax_map.contour(scene.masks[0].astype(float), levels=[0.5], colors=["white"], linewidths=1)
        if metric in ("deletion", "insertion"):
            fractions, curves = self.curves(method, metric)
            ax_metric.plot(fractions, curves.mean(0), "--", color="grey", label=f"mean of {len(curves)} scenes")
            ax_metric.plot(fractions, curves[i], color="#c44e00", label=f"scene {i}: AUC {scores[i]:.2f}")
            ax_metric.set_xlabel(f"share of pixels {'removed' if metric == 'deletion' else 'revealed'}, "
                                 "most important first", fontsize=8)
            ax_metric.set_ylabel("probability of the class", fontsize=8)
            ax_metric.set_ylim(-0.02, 1.02)
            ax_metric.legend(fontsize=7)
            better = "lower" if metric == "deletion" else "higher"
            ax_metric.set_title(f"{metric}: mean AUC {scores.mean():.2f} ({better} is better)", fontsize=9)
        else:
            colours = ["#c44e00" if j == i else "#9aa5b1" for j in range(len(scores))]
            ax_metric.bar(range(len(scores)), scores.numpy(), color=colours)
            ax_metric.axhline(float(scores.mean()), color="black", linewidth=1, linestyle="--")
            ax_metric.set_xlabel("scene", fontsize=8)
            ax_metric.set_ylim(0, 1.05)
            ax_metric.set_title(f"{metric}: this scene {scores[i]:.2f}, mean {scores.mean():.2f} (dashed)",
                                fontsize=9)
        ax_metric.tick_params(labelsize=7)
        fig.tight_layout()
        return fig
