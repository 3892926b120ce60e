"""Lesson 00's explorer: an image and a model in, the model's top classes out."""

from __future__ import annotations

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import plotting
from ..images import load_image
from ..models import LoadedModel, available_models, load_model
from .base import Explorer, choose_image, image_choices

__all__ = ["PredictionExplorer"]


class PredictionExplorer(Explorer):
    """Pick an image (a scene, a sample photo, or your own upload) and a model:
    see the image as the model receives it and its top classes."""

    def __init__(self, models: list[str] | None = None, k: int = 5):
        if models is None:
            models = [name for name, here in available_models().items() if here]
        self._models: dict[str, LoadedModel] = {}
        self._upload = None
        controls = {
            "image": w.Dropdown(options=image_choices(), value="scene 0", description="Image"),
            "model": w.Dropdown(options=models, value=models[0], description="Model"),
            "k": w.IntSlider(value=k, min=1, max=10, description="Top k", continuous_update=False),
            "upload": w.FileUpload(accept="image/*", multiple=False, description="Your image"),
        }
        controls["upload"].observe(self._on_upload, names="value")
        super().__init__(controls, columns=2, redraw_on=["image", "model", "k"])

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        self._upload = (files[0]["name"], bytes(files[0]["content"]))
        label = f"upload: {files[0]['name']}"
        self._paused = True  # one redraw for the new image, not one per option change
        try:
            self.controls["image"].options = [*image_choices(), label]
            self.controls["image"].value = label
        finally:
            self._paused = False
        self.refresh()

    def model(self, name: str) -> LoadedModel:
        if name not in self._models:
            self._models[name] = load_model(name)
        return self._models[name]

    def image(self):
        choice = self.controls["image"].value
        if choice.startswith("upload: ") and self._upload:
            return load_image(self._upload[1])
        return choose_image(choice)

    def draw(self) -> Figure:
        m = self.model(self.controls["model"].value)
        x = m.batch([self.image()])
        with torch.no_grad():
            top = m.top_classes(m.model(x), k=self.controls["k"].value)[0]
        fig = Figure(figsize=(7, 2.8))
        ax_img, ax_bar = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1, 1.4]))
        plotting.show_image(m.to_display(x)[0], ax=ax_img, title=f"what {m.name} sees")
        plotting.topk_bars(top, ax=ax_bar, title=f"top {len(top)} classes")
        fig.tight_layout()
        return fig
