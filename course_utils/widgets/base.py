"""The explorers' common ground: the base class and the images they offer."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import plotting
from ..hooks import LayerNotFoundError
from ..images import SAMPLE_PHOTOS, ImageLoadError, load_image, sample_photo
from ..models import LoadedModel, available_models, load_model
from ..scenes import make_scene

__all__ = ["ClassExplorer", "Explorer", "cached_model", "disable_if_fixed", "offered_models", "choose_image",
           "image_choices", "image_controls", "my_images_dir"]

#: Scenes offered by the explorers: (label, seed, index, objects).
_SCENES = [(f"scene {i}", 1, i, 1) for i in range(6)] + [(f"two objects {i}", 2, i, 2) for i in range(3)]
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def my_images_dir() -> Path:
    """The drop folder for your own pictures: $COURSE_MY_IMAGES if set, else the
    course's ``datasets/my_images``: beside the source (an editable install) or, for
    a course installed as a package, the nearest one above the working directory
    (a notebook in ``notebooks/`` finds ``../datasets/my_images``)."""
    if "COURSE_MY_IMAGES" in os.environ:
        return Path(os.environ["COURSE_MY_IMAGES"])
    beside_source = Path(__file__).resolve().parents[2] / "datasets" / "my_images"
    if beside_source.is_dir():
        return beside_source
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "datasets" / "my_images").is_dir():
            return folder / "datasets" / "my_images"
    return beside_source


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


def offered_models(exclude=()) -> list[str]:
    """The models whose weights are on this machine (the course model always is)."""
    return [name for name, here in available_models().items() if here and name not in exclude]


_LOADED: dict[str, LoadedModel] = {}

#: Errors a lesson expects (a bad file, a bad choice, missing or damaged weights): shown as
#: their message alone. Any other error also becomes a message, named by its type.
_EXPECTED = (ImageLoadError, LayerNotFoundError, ValueError, RuntimeError)


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
    instead of a traceback in front of the class: every callback a subclass adds
    goes through :meth:`on_change` (or :meth:`reporting`), which does that for it. A
    control left with one value to take is disabled (:func:`disable_if_fixed`). With
    the controls of :func:`image_controls`, :meth:`image` returns the chosen or
    uploaded image.
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
            self.on_change(name, self._on_change)
        self._upload: tuple[str, bytes, str] | None = None  # (file name, content, digest of the content)
        if "upload" in controls:
            self.on_change("upload", self._on_upload)
        for control in controls.values():
            ranges = [t for t in ("min", "max", "options") if control.has_trait(t)]
            if ranges and control.has_trait("disabled"):
                disable_if_fixed(control)
                control.observe(lambda change: disable_if_fixed(change["owner"]), names=ranges)
        self.renders = 0
        self._paused = False
        self.refresh()

    # --- errors become messages ---------------------------------------------------------

    @contextlib.contextmanager
    def reporting(self):
        """Run the block; an exception raised in it ends the block and is shown as the
        message under the controls instead of escaping (the last picture stays)."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - nothing may reach the room as a traceback
            text = str(exc) if isinstance(exc, _EXPECTED) else f"{type(exc).__name__}: {exc}"
            self.message.value = f"<span style='color:#b00'>⚠ {_escape(text)}</span>"

    def on_change(self, name: str, callback) -> None:
        """Call ``callback(change)`` when control ``name`` changes value, inside
        :meth:`reporting`: whatever it raises becomes the message."""

        def reported(change):
            with self.reporting():
                callback(change)

        self.controls[name].observe(reported, names="value")

    # --- the image ------------------------------------------------------------------------

    def image(self):
        """The RGB image picked in the ``image`` control (or uploaded)."""
        choice = self.controls["image"].value
        if choice.startswith("upload: ") and self._upload:
            return load_image(self._upload[1])
        return choose_image(choice)

    def image_key(self) -> tuple:
        """The chosen image as a cache key: its name, and for an upload a digest of its
        content (a new file under the same name is a new image)."""
        choice = self.controls["image"].value
        digest = self._upload[2] if choice.startswith("upload: ") and self._upload else None
        return choice, digest

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        content = bytes(files[0]["content"])
        self._upload = (files[0]["name"], content, hashlib.sha256(content).hexdigest())
        label = f"upload: {files[0]['name']}"
        image = self.controls["image"]
        with self.quietly():
            same_name = image.value == label
            image.options = [*image_choices(), label]
            image.value = label
            if same_name:  # the value did not change, so no callback heard of the new content
                self._on_input(None)

    def _on_input(self, change) -> None:
        """A new image is chosen (or uploaded under the name already chosen). Here the
        redraw is enough; subclasses also fit controls to the new input."""

    # --- redrawing --------------------------------------------------------------------------

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
        with self.reporting():
            fig = self.draw()
            self.view.value = plotting.figure_to_png(fig)
            self.message.value = ""
            self.renders += 1

    def draw(self) -> Figure:  # pragma: no cover - abstract
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


class ClassExplorer(Explorer):
    """Base for explorers that explain one class of one image: an image picker, a
    model picker and a class list (the top ``k`` classes with their probabilities),
    plus the subclass's own controls.

    Each image (per model) runs through :meth:`prepare` once; its result is cached
    with the input, so that changing the class or a display control does not run
    the model again. A new image or model lists its classes and selects its top
    class, then redraws once.
    """

    def __init__(self, controls: dict[str, w.Widget], models: list[str] | None = None, k: int = 6,
                 cache_size: int = 16, columns: int = 3):
        models = offered_models() if models is None else models
        self.k = k
        self.cache_size = cache_size
        self._upload = None
        self._inputs: OrderedDict = OrderedDict()  # (model, image) -> (x, shown, class options, prepared)
        self.controls = {**image_controls(), "model": w.Dropdown(options=models, value=models[0],
                                                                description="Model")}
        all_controls = {**self.controls, "target": w.Dropdown(options=self._input()[2], description="Class"),
                        **controls}
        redraw = [name for name in all_controls if name not in ("upload", "image", "model")]
        super().__init__(all_controls, columns=columns, redraw_on=redraw)
        for name in ("image", "model"):
            self.on_change(name, self._on_input)

    def prepare(self, loaded: LoadedModel, x: torch.Tensor):
        """Run the model on ``x`` once: return ``(logits, anything to keep)``. The
        default keeps nothing; subclasses keep, e.g., a forward pass to reuse."""
        with torch.no_grad():
            return loaded.model(x), None

    @property
    def loaded(self) -> LoadedModel:
        return cached_model(self.controls["model"].value)

    def image_key(self) -> tuple:
        """(model, image, digest of an upload's content): what :meth:`prepare` ran on."""
        return self.controls["model"].value, *super().image_key()

    def _input(self):
        """(x, the input as the model sees it, class options, prepared) for the current image."""
        key = self.image_key()
        if key not in self._inputs:
            m = self.loaded
            x = m.batch([self.image()])
            logits, prepared = self.prepare(m, x)
            probs = logits.detach().softmax(dim=1)[0]
            top = probs.topk(min(self.k, probs.numel()))
            options = [(f"{m.categories[c]} ({p:.2f})", c) for p, c in zip(top.values.tolist(), top.indices.tolist())]
            self._inputs[key] = (x, m.to_display(x)[0], options, prepared)
            while len(self._inputs) > self.cache_size:
                self._inputs.popitem(last=False)
        self._inputs.move_to_end(key)
        return self._inputs[key]

    def target(self) -> tuple[int, str]:
        """The chosen class and its label (the top class while a new image is being set up)."""
        options = self._input()[2]
        labels = {c: label for label, c in options}
        c = self.controls["target"].value
        return (c, labels[c]) if c in labels else (options[0][1], options[0][0])

    def _on_input(self, change) -> None:
        """A new image or model: list its classes, select the top one, fit the other
        controls, then redraw once. (An image that cannot be read, or a model that
        cannot be loaded, raises here: the message says why.)"""
        with self.quietly():
            options = self._input()[2]
            self.controls["target"].options = options
            self.controls["target"].value = options[0][1]
            self.fit_controls()

    def fit_controls(self) -> None:
        """Called (inside one quiet block) after a new image or model: subclasses fit
        controls that depend on the model, such as a layer list."""


def disable_if_fixed(control: w.Widget) -> None:
    """Disable a control that can take one value only (a slider whose minimum is its
    maximum, a list of one option) and enable it again when it offers more. Every
    explorer's controls are kept so by :class:`Explorer`."""
    if control.has_trait("options"):
        control.disabled = len(control.options) <= 1
    else:
        control.disabled = control.min >= control.max


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
