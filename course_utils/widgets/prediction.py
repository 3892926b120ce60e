"""Lesson 00's explorer: an image and a model in, the model's top classes out."""

from __future__ import annotations

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import plotting
from ..models import available_models
from .base import Explorer, cached_model, image_controls

__all__ = ["PredictionExplorer"]


class PredictionExplorer(Explorer):
    """Pick an image (a scene, a sample photo, or your own upload) and a model:
    see the image as the model receives it and its top classes."""

    def __init__(self, models: list[str] | None = None, k: int = 5):
        if models is None:
            models = [name for name, here in available_models().items() if here]
        controls = {
            **image_controls(),
            "model": w.Dropdown(options=models, value=models[0], description="Model"),
            "k": w.IntSlider(value=k, min=1, max=10, description="Top k", continuous_update=False),
        }
        super().__init__(controls, columns=2)

    def draw(self) -> Figure:
        m = cached_model(self.controls["model"].value)
        x = m.batch([self.image()])
        with torch.no_grad():
            top = m.top_classes(m.model(x), k=self.controls["k"].value)[0]
        fig = Figure(figsize=(7, 2.8))
        ax_img, ax_bar = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1, 1.4]))
        plotting.show_image(m.to_display(x)[0], ax=ax_img, title=f"what {m.name} sees")
        plotting.topk_bars(top, ax=ax_bar, title=f"top {len(top)} classes")
        fig.tight_layout()
        return fig
