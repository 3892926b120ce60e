"""The explorers' common ground: the base classes and their cache."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import ipywidgets as w
import numpy as np
import torch
from matplotlib.figure import Figure

from .. import plotting
from ..hooks import LayerNotFoundError
from ..images import ImageLoadError, load_image
from ..models import LoadedModel, load_model
from .choices import choose_image, image_choices, image_controls, offered_models, opening_model

__all__ = ["MODEL_CACHE", "Cache", "ClassExplorer", "Explorer", "Prepared", "cached_model", "disable_if_fixed"]


class Cache(OrderedDict):
    """The explorers' cache, least recently used first; beyond ``size`` entries (``None``: no bound)
    the least recently used one goes."""

    def __init__(self, size: int | None = None):
        super().__init__()
        self.size = size

    def fetch(self, key, compute):
        """The value under ``key`` (now the most recently used); ``compute()`` makes it if it is not kept."""
        if key in self:
            self.move_to_end(key)
            return self[key]
        return self.put(key, compute())

    def put(self, key, value):
        """Keep ``value`` under ``key`` as the most recently used entry; return it."""
        self[key] = value
        self.move_to_end(key)
        while self.size is not None and len(self) > self.size:
            self.popitem(last=False)
        return value


#: The models loaded in this kernel, by name: every explorer shares them (none of them changes a model).
MODEL_CACHE = Cache()


def cached_model(name: str) -> LoadedModel:
    """Load a model once per kernel (:data:`MODEL_CACHE`)."""
    return MODEL_CACHE.fetch(name, lambda: load_model(name))


#: Errors a lesson expects (a bad file, a bad choice, missing or damaged weights): shown as
#: their message alone. Any other error also becomes a message, named by its type.
_EXPECTED = (ImageLoadError, LayerNotFoundError, ValueError, RuntimeError)


class Explorer:
    """Base class: a grid of controls (``columns`` wide) above a one-line message and a picture.

    A subclass sets its options as attributes, calls ``super().__init__()``, and implements
    ``make_controls()`` and ``draw() -> Figure`` (state in, a :mod:`course_utils.figures`
    function out). A failure is a message under the controls, not a traceback: callbacks go
    through :meth:`on_change` (or :meth:`reporting`). A control left with one value is disabled.
    """

    columns = 3

    def __init__(self):
        self._upload: tuple[str, bytes, str] | None = None  # (file name, content, digest of the content)
        self.controls: dict[str, w.Widget] = self.make_controls()
        self.view = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.view.add_class("course-explorer-view")
        self.message = w.HTML()
        grid = w.GridBox(list(self.controls.values()), layout=w.Layout(
            grid_template_columns=f"repeat({self.columns}, max-content)", grid_gap="4px 16px"))
        self.widget = w.VBox([grid, self.message, self.view])
        self.widget.add_class("course-explorer")
        self.renders, self._paused = 0, False
        self.wire()
        with self.quietly():  # the first picture, once the controls fit the first input
            self.fit_to_input()

    def make_controls(self) -> dict[str, w.Widget]:  # pragma: no cover - abstract
        raise NotImplementedError

    def callbacks(self) -> dict:
        """What a change of a control does, by name: a callback of the change, or ``None`` for
        nothing; a control not named redraws. An upload becomes the image, a new image a new input."""
        return {"upload": self._on_upload, "image": self._on_input}

    def wire(self) -> None:
        """Connect each control to its callback and keep single-valued controls disabled."""
        special = self.callbacks()
        for name, control in self.controls.items():
            callback = special.get(name, self._on_change)
            if callback is not None:
                self.on_change(name, callback)
            ranges = [t for t in ("min", "max", "options") if control.has_trait(t)]
            if ranges and control.has_trait("disabled"):
                disable_if_fixed(control)
                control.observe(lambda change: disable_if_fixed(change["owner"]), names=ranges)

    def fit_to_input(self) -> None:
        """Called in one quiet block for a new input (and the first): subclasses fit controls to it."""

    @contextlib.contextmanager
    def reporting(self):
        """Run the block; an exception ends it and becomes the message (the last picture stays)."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - nothing may reach the room as a traceback
            text = str(exc) if isinstance(exc, _EXPECTED) else f"{type(exc).__name__}: {exc}"
            self.message.value = f"<span style='color:#b00'>⚠ {html.escape(text, quote=False)}</span>"

    def on_change(self, name: str, callback) -> None:
        """Call ``callback(change)`` when control ``name`` changes value, inside :meth:`reporting`."""

        def reported(change):
            with self.reporting():
                callback(change)

        self.controls[name].observe(reported, names="value")

    def image(self):
        """The RGB image picked in the ``image`` control (or uploaded)."""
        choice, digest = Explorer.image_key(self)
        return load_image(self._upload[1]) if digest else choose_image(choice)

    def image_key(self) -> tuple:
        """The chosen image as a cache key: its name, and for an upload a digest of its content."""
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
        """A new input: fit the controls to it, then redraw once."""
        with self.quietly():
            self.fit_to_input()

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

    def draw(self) -> Figure:  # pragma: no cover - abstract (a PIL image will do too)
        raise NotImplementedError

    def caches(self) -> dict[str, Cache]:
        """The explorer's caches by name (``inputs``, ``results``, ...): what it keeps between changes."""
        return {name.lstrip("_"): v for name, v in vars(self).items() if isinstance(v, Cache)}

    def _repr_mimebundle_(self, **kwargs):
        """The live widget for JupyterLab, and for viewers that run no widget code (GitHub's
        notebook view, nbconvert without JavaScript) the picture it shows now, as a plain PNG,
        and a sentence in place of the widgets' repr."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if self.view.value:
            bundle["image/png"] = base64.b64encode(self.view.value).decode("ascii")
        bundle["text/plain"] = (f"{type(self).__name__}: an explorer; run the notebook in JupyterLab "
                                "to use its controls")
        return bundle


@dataclass(frozen=True)
class Prepared:
    """One image run through one model, as a :class:`ClassExplorer` keeps it."""
    x: torch.Tensor  # the batch of one the model sees
    shown: np.ndarray  # that input for display, (H, W, 3) in [0, 1]
    options: list[tuple[str, int]]  # the class list: (name with probability, class), the most likely first
    logits: torch.Tensor  # (1, classes), detached
    kept: Any = None  # what :meth:`ClassExplorer.prepare` kept: a forward pass to reuse, every class's map, ...


class ClassExplorer(Explorer):
    """Base for explorers that explain one class of one image: an image picker, a model picker
    and a class list (the top ``k`` classes with their probabilities), then the subclass's controls.

    Each image (per model) runs through :meth:`prepare` once, after every control exists, and its
    :class:`Prepared` record is kept for ``cache_size`` inputs: a new class or display does not
    run the model again. ``model`` and ``image`` choose what it opens on (the first model offered
    and the first scene by default).
    """

    def __init__(self, models: list[str] | None = None, k: int = 6, cache_size: int = 16, columns: int = 3, *,
                 model: str | None = None, image: str = "scene 0"):
        self.models = offered_models() if models is None else models
        if image not in image_choices():
            raise ValueError(f"unknown image {image!r}; choose one of {image_choices()}")
        self.start = (opening_model(self.models, model), image)
        self.k, self.cache_size, self.columns = k, cache_size, columns
        self._inputs = Cache(cache_size)  # (model, image, upload digest) -> Prepared
        super().__init__()

    def make_controls(self) -> dict[str, w.Widget]:
        model, image = self.start
        return {**image_controls(image), "model": w.Dropdown(options=self.models, value=model, description="Model"),
                "target": w.Dropdown(options=[], description="Class")}

    def callbacks(self) -> dict:
        return {**super().callbacks(), "model": self._on_input}

    def prepare(self, loaded: LoadedModel, x: torch.Tensor):
        """Run the model on ``x`` once: ``(logits, anything to keep)``, e.g. a forward pass to reuse."""
        with torch.no_grad():
            return loaded.model(x), None

    @property
    def loaded(self) -> LoadedModel:
        return cached_model(self.controls["model"].value)

    def image_key(self) -> tuple:
        """(model, image, digest of an upload's content): what :meth:`prepare` ran on."""
        return self.controls["model"].value, *super().image_key()

    def prepared(self) -> Prepared:
        """The chosen image as the chosen model saw it (run once, then from the cache)."""
        return self._inputs.fetch(self.image_key(), self._prepare)

    def _prepare(self) -> Prepared:
        m = self.loaded
        x = m.batch([self.image()])
        logits, kept = self.prepare(m, x)
        logits = logits.detach()
        top = logits.softmax(dim=1)[0].topk(min(self.k, logits.shape[1]))
        options = [(f"{m.categories[c]} ({p:.2f})", c) for p, c in zip(top.values.tolist(), top.indices.tolist())]
        return Prepared(x, m.to_display(x)[0], options, logits, kept)

    def target(self) -> tuple[int, str]:
        """The chosen class and its label (the top class while a new image is being set up)."""
        options = self.prepared().options
        labels = {c: label for label, c in options}
        c = self.controls["target"].value
        return (c, labels[c]) if c in labels else (options[0][1], options[0][0])

    def fit_to_input(self) -> None:
        """A new image or model: list its classes and select the top one (subclasses fit more)."""
        options = self.prepared().options
        self.controls["target"].options = options
        self.controls["target"].value = options[0][1]


def disable_if_fixed(control: w.Widget) -> None:
    """Disable a control that can take one value only (a slider whose minimum is its maximum, a
    list of one option) and enable it again when it offers more (:class:`Explorer` does it)."""
    if control.has_trait("options"):
        control.disabled = len(control.options) <= 1
    else:
        control.disabled = control.min >= control.max
