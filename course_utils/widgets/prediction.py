"""Lesson 00's explorer: an image and a model in, the model's top classes out."""

from __future__ import annotations

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import figures
from .base import Explorer, cached_model
from .choices import image_controls, offered_models

__all__ = ["PredictionExplorer"]


class PredictionExplorer(Explorer):
    """Pick an image (a scene, a sample photo, or your own upload) and a model:
    see the image as the model receives it and its top classes."""

    columns = 2

    def __init__(self, models: list[str] | None = None, k: int = 5):
        self.models, self.k = offered_models() if models is None else models, k
        super().__init__()

    def make_controls(self) -> dict[str, w.Widget]:
        return {
            **image_controls(),
            "model": w.Dropdown(options=self.models, value=self.models[0], description="Model"),
            "k": w.IntSlider(value=self.k, min=1, max=10, description="Top k", continuous_update=False),
        }

    def draw(self) -> Figure:
        m = cached_model(self.controls["model"].value)
        x = m.batch([self.image()])
        with torch.no_grad():
            top = m.top_classes(m.model(x), k=self.controls["k"].value)[0]
        return figures.prediction_figure(m.to_display(x)[0], top, m.name)
