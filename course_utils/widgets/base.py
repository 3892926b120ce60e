"""The explorers' common ground: the base class and the images they offer."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import ipywidgets as w
from matplotlib.figure import Figure

from .. import plotting
from ..images import SAMPLE_PHOTOS, ImageLoadError, load_image, sample_photo
from ..models import LoadedModel, load_model
from ..scenes import make_scene

__all__ = ["Explorer", "cached_model", "choose_image", "image_choices", "image_controls", "my_images_dir"]

#: Scenes offered by the explorers: (label, seed, index, objects).
_SCENES = [(f"scene {i}", 1, i, 1) for i in range(6)] + [(f"two objects {i}", 2, i, 2) for i in range(3)]
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def my_images_dir() -> Path:
    """The drop folder for your own pictures: ``datasets/my_images`` (or $COURSE_MY_IMAGES)."""
    default = Path(__file__).resolve().parents[2] / "datasets" / "my_images"
    return Path(os.environ.get("COURSE_MY_IMAGES", default))


def image_choices() -> list[str]:
    """The images an explorer offers: scenes, sample photos, then your own files."""
    folder = my_images_dir()
    mine = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) if folder.is_dir() else []
    return [s[0] for s in _SCENES] + [f"photo: {p}" for p in SAMPLE_PHOTOS] + [f"mine: {m}" for m in mine]


def choose_image(choice: str):
    """The RGB image behind an entry of :func:`image_choices`."""
    for label, seed, index, n in _SCENES:
        if label == choice:
            return make_scene(seed, index, n_objects=n, classes=[index % 6] if n == 1 else None).image
    if choice.startswith("photo: "):
        return sample_photo(choice.removeprefix("photo: "))
    if choice.startswith("mine: "):
        return load_image(my_images_dir() / choice.removeprefix("mine: "))
    raise ValueError(f"unknown image {choice!r}; choose one of {image_choices()}")


def image_controls(value: str = "scene 0") -> dict[str, w.Widget]:
    """The standard image picker: a dropdown of :func:`image_choices` and an upload button."""
    return {
        "image": w.Dropdown(options=image_choices(), value=value, description="Image"),
        "upload": w.FileUpload(accept="image/*", multiple=False, description="Your image"),
    }


_LOADED: dict[str, LoadedModel] = {}


def cached_model(name: str) -> LoadedModel:
    """Load a model once per kernel; every explorer shares it (none of them changes it)."""
    if name not in _LOADED:
        _LOADED[name] = load_model(name)
    return _LOADED[name]


class Explorer:
    """Base class: a grid of controls above a one-line message and a picture.

    Subclasses pass their controls (a dict of widgets) and implement
    ``draw() -> Figure``. A change of any control (or of those named in
    ``redraw_on``) redraws. A failure shows as a message under the controls
    instead of a traceback in front of the class. With the controls of
    :func:`image_controls`, :meth:`image` returns the chosen or uploaded image.
    """

    def __init__(self, controls: dict[str, w.Widget], columns: int = 3, redraw_on=None):
        self.controls = controls
        self.view = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.view.add_class("course-explorer-view")
        self.message = w.HTML()
        rows = list(controls.values())
        grid = w.GridBox(rows, layout=w.Layout(grid_template_columns=f"repeat({columns}, max-content)",
                                               grid_gap="4px 16px"))
        self.widget = w.VBox([grid, self.message, self.view])
        self.widget.add_class("course-explorer")
        if redraw_on is None:
            redraw_on = [name for name in controls if name != "upload"]
        for name in redraw_on:
            controls[name].observe(self._on_change, names="value")
        self._upload: tuple[str, bytes] | None = None
        if "upload" in controls:
            controls["upload"].observe(self._on_upload, names="value")
        self.renders = 0
        self._paused = False
        self.refresh()

    def image(self):
        """The RGB image picked in the ``image`` control (or uploaded)."""
        choice = self.controls["image"].value
        if choice.startswith("upload: ") and self._upload:
            return load_image(self._upload[1])
        return choose_image(choice)

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        self._upload = (files[0]["name"], bytes(files[0]["content"]))
        label = f"upload: {files[0]['name']}"
        with self.quietly():
            self.controls["image"].options = [*image_choices(), label]
            self.controls["image"].value = label

    @contextlib.contextmanager
    def quietly(self):
        """Change several controls inside the block with one redraw at the end,
        not one per change. Nested blocks redraw once, when the outermost ends."""
        if self._paused:
            yield
            return
        self._paused = True
        try:
            yield
        finally:
            self._paused = False
        self.refresh()

    def _on_change(self, change) -> None:
        if not self._paused:
            self.refresh()

    def refresh(self) -> None:
        """Redraw with the current control values."""
        try:
            fig = self.draw()
        except (ImageLoadError, ValueError, RuntimeError) as exc:
            self.message.value = f"<span style='color:#b00'>⚠ {_escape(str(exc))}</span>"
            return
        self.message.value = ""
        self.view.value = plotting.figure_to_png(fig)
        self.renders += 1

    def draw(self) -> Figure:  # pragma: no cover - abstract
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
