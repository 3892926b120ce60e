"""What the explorers offer to choose from: images (scenes, sample photos, your own files),
models and layers (read from each model's record in :data:`course_utils.models.MODELS`)."""

from __future__ import annotations

import os
from pathlib import Path

import ipywidgets as w

from ..images import SAMPLE_PHOTOS, load_image, sample_photo
from ..models import MODELS, available_models
from ..scenes import make_scene

__all__ = ["block_layers", "cam_models", "choose_image", "image_choices", "image_controls", "my_images_dir",
           "offered_models", "opacity", "opening_model"]

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
    return {"image": w.Dropdown(options=image_choices(), value=value, description="Image"),
            "upload": w.FileUpload(accept="image/*", multiple=False, description="Your image")}


def offered_models(exclude=()) -> list[str]:
    """The models whose weights are on this machine (the course model always is)."""
    return [name for name, here in available_models().items() if here and name not in exclude]


def opening_model(models: list[str], model: str | None) -> str:
    """The model an explorer opens on: ``model`` if it is one of ``models``, else the first of them."""
    if model is not None and model not in models:
        raise ValueError(f"model {model!r} is not offered here; choose one of {models}")
    return model or models[0]


def cam_models() -> list[str]:
    """The offered models CAM applies to (their record names a CAM layer: global average pooling + one linear layer)."""
    return [name for name in offered_models() if MODELS[name].cam_layer is not None]


def block_layers(model: str) -> list[str]:
    """The outputs of a model's blocks, early to late: where Grad-CAM and the optimization look."""
    return list(MODELS[model].blocks)


def opacity(value: float = 0.5) -> w.FloatSlider:
    """The slider of an overlay's opacity."""
    return w.FloatSlider(value=value, min=0.0, max=1.0, step=0.05, description="Opacity", continuous_update=False)

