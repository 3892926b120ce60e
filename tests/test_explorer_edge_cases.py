"""Explorers in front of a room: a bad upload, a damaged weights file, a file uploaded
twice under one name, a control with nothing to choose. No callback may let an
exception out; the explorer says what is wrong and the next good choice draws again."""

from __future__ import annotations

import inspect

import ipywidgets as w
import pytest
from matplotlib.figure import Figure

import course_utils.widgets as widgets
from course_utils import models
from course_utils.widgets import base
from tests.conftest import small_boards
from tests.test_widgets import png_bytes, upload

EXPLORERS = sorted(n for n, obj in inspect.getmembers(widgets, inspect.isclass)
                   if issubclass(obj, widgets.Explorer) and obj not in (widgets.Explorer, widgets.ClassExplorer))
#: Explorers with an image picker and an upload button.
IMAGE_EXPLORERS = ["CAMExplorer", "CompareExplorer", "FeatureMapExplorer", "GradCAMExplorer",
                   "GuidedGradCAMExplorer", "PredictionExplorer", "SaliencyExplorer"]
#: Explorers that explain one class of one image (a class list per image).
CLASS_EXPLORERS = ["CAMExplorer", "CompareExplorer", "GradCAMExplorer", "GuidedGradCAMExplorer", "SaliencyExplorer"]
#: Explorers with a model control offering the ImageNet models whose weights are cached.
MODEL_EXPLORERS = [*CLASS_EXPLORERS, "ActivationMaxExplorer", "FilterExplorer", "GraphExplorer",
                   "PredictionExplorer"]
#: What each explorer is built with here: quick, and synchronous.
OPTIONS = {"ActivationMaxExplorer": {"threaded": False}, "EvaluationExplorer": {"n_scenes": 4},
           "LeaderboardExplorer": lambda: {"boards": small_boards()}}


def make(name: str, **options):
    made = OPTIONS.get(name, {})
    return getattr(widgets, name)(**{**(made() if callable(made) else made), **options})


def test_the_lists_name_real_explorers():
    assert set(IMAGE_EXPLORERS) | set(MODEL_EXPLORERS) <= set(EXPLORERS)


# --- 1. no callback lets an exception out -------------------------------------------------------


def test_feature_maps_survive_a_bad_upload_then_a_layer_change(empty_torch_home):
    ex = widgets.FeatureMapExplorer()
    ex.controls["layer"].value = "features.relu5"  # 64 channels
    ex.controls["page"].value = 48
    upload(ex, "notes.png", b"this is not an image")
    assert "cannot load" in ex.message.value
    ex.controls["layer"].value = "features.relu1"  # 16 channels: the page and channel controls must follow
    assert "cannot load" in ex.message.value
    assert [v for _, v in ex.controls["page"].options] == [0] and ex.controls["page"].value == 0
    assert ex.controls["channel"].max == 15
    renders, before = ex.renders, bytes(ex.view.value)
    ex.controls["image"].value = "scene 1"  # the next good image draws, and the message clears
    assert ex.message.value == "" and ex.renders == renders + 1 and bytes(ex.view.value) != before


@pytest.mark.parametrize("name", IMAGE_EXPLORERS)
def test_after_a_bad_upload_every_control_is_safe_and_a_good_image_draws(name, empty_torch_home):
    ex = make(name)
    upload(ex, "notes.png", b"this is not an image")
    assert "cannot load" in ex.message.value
    movable = {k: c for k, c in ex.controls.items() if k not in ("image", "upload") and not c.disabled}
    start = {k: c.value for k, c in movable.items()}
    for control, widget in movable.items():  # move every control but the image: nothing escapes
        if isinstance(widget, (w.Dropdown, w.SelectMultiple)) and len(widget.options) > 1:
            values = [v[1] if isinstance(v, tuple) else v for v in widget.options]
            widget.value = values[-1] if isinstance(widget, w.Dropdown) else tuple(values[:1])
        elif isinstance(widget, w.Checkbox):
            widget.value = not widget.value
        elif isinstance(widget, (w.IntSlider, w.FloatSlider)):
            widget.value = widget.max
        assert ex.message.value != "", control
    for control, value in start.items():  # back to the settings the explorer opened with
        movable[control].value = value
    renders = ex.renders
    ex.controls["image"].value = "scene 1"
    assert ex.message.value == "" and ex.renders == renders + 1


class _Fragile(widgets.Explorer):
    """An explorer whose picture fails with an error nobody planned for."""

    def make_controls(self):
        return {"n": w.IntSlider(value=1, min=0, max=3)}

    def draw(self) -> Figure:
        if self.controls["n"].value == 0:
            raise KeyError("no such thing")
        return Figure(figsize=(1, 1))


def test_an_unexpected_error_is_a_message_too():
    ex = _Fragile()
    ex.controls["n"].value = 0
    assert "no such thing" in ex.message.value and ex.renders == 1
    ex.controls["n"].value = 2
    assert ex.message.value == "" and ex.renders == 2


# --- 2. a damaged weights file ------------------------------------------------------------------


@pytest.fixture
def damaged_resnet18(tmp_path, monkeypatch):
    """A torch cache holding a garbage file under resnet18's weights file name (and no
    model loaded yet in this kernel)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = models.weights_path("resnet18")  # the file name torchvision's download has, in this torch home
    assert tmp_path in path.parents
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a download")
    monkeypatch.setattr(base, "MODEL_CACHE", base.Cache())
    assert models.available_models()["resnet18"]  # it exists, so it is offered
    return tmp_path


@pytest.mark.parametrize("name", MODEL_EXPLORERS)
def test_a_damaged_weights_file_is_a_message_and_the_course_model_still_draws(name, damaged_resnet18):
    ex = make(name)
    assert "resnet18" in ex.controls["model"].options
    ex.controls["model"].value = "resnet18"
    assert "resnet18" in ex.message.value and "damaged" in ex.message.value
    renders = ex.renders
    ex.controls["model"].value = "course"
    assert ex.message.value == "" and ex.renders == renders + 1


# --- 3. the same file name, new content -------------------------------------------------------


@pytest.mark.parametrize("name", CLASS_EXPLORERS)
def test_a_new_image_under_the_same_name_gets_its_own_classes(name, empty_torch_home):
    ex = make(name)
    upload(ex, "x.png", png_bytes(widgets.choose_image("scene 0")))  # a circle
    assert ex.controls["target"].options[0][0].startswith("circle")
    first = bytes(ex.view.value)
    upload(ex, "x.png", png_bytes(widgets.choose_image("scene 1")))  # a square, same name
    assert ex.controls["target"].options[0][0].startswith("square")
    assert ex.controls["target"].value == ex.controls["target"].options[0][1]
    assert ex.message.value == "" and bytes(ex.view.value) != first


def test_feature_maps_show_a_new_image_under_the_same_name(empty_torch_home):
    ex = widgets.FeatureMapExplorer()
    upload(ex, "x.png", png_bytes(widgets.choose_image("scene 0")))
    first = bytes(ex.view.value)
    upload(ex, "x.png", png_bytes(widgets.choose_image("scene 1")))
    assert ex.message.value == "" and bytes(ex.view.value) != first
    ex.controls["image"].value = "scene 2"
    ex.controls["image"].value = "upload: x.png"  # from the cache: still the second image
    assert bytes(ex.view.value) != first


# --- 4. a control with nothing to choose is disabled ------------------------------------------


def _single_valued(control) -> bool:
    if isinstance(control, (w.Dropdown, w.SelectMultiple)):
        return len(control.options) <= 1
    if isinstance(control, (w.IntSlider, w.FloatSlider)):
        return control.min >= control.max
    return False


@pytest.mark.parametrize("name", EXPLORERS)
def test_no_explorer_offers_a_control_with_a_single_value(name, empty_torch_home):
    ex = make(name, **{"n_scenes": 1} if name in ("EvaluationExplorer", "ShortcutExplorer") else {})
    fixed = [k for k, c in ex.controls.items() if _single_valued(c) and not c.disabled]
    assert not fixed, f"{name}: {fixed} can take one value only but are enabled"


def test_graph_pages_are_enabled_only_for_a_model_with_several(imagenet_cache):
    ex = widgets.GraphExplorer()
    page = ex.controls["page"]
    assert page.max == 0 and page.disabled  # the course model: one page of operations
    ex.controls["model"].value = "resnet18"
    assert page.max > 0 and not page.disabled
    ex.controls["model"].value = "course"
    assert page.disabled and ex.message.value == ""


def test_feature_map_pages_are_enabled_only_for_a_wide_layer(empty_torch_home):
    ex = widgets.FeatureMapExplorer(layer="features.relu1")  # 16 channels: one page
    assert ex.controls["page"].disabled
    ex.controls["layer"].value = "features.relu5"
    assert not ex.controls["page"].disabled
    ex.controls["layer"].value = "features.relu1"
    assert ex.controls["page"].disabled
