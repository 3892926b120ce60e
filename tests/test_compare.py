"""The compare dashboard (notebooks/compare.ipynb, also a Voilà app), and the speed
promises every explorer keeps: sliders act on release, a forward pass only for a new input."""

from __future__ import annotations

import inspect

import ipywidgets as w
import numpy as np
import pytest
import torch

import course_utils.widgets as widgets
from course_utils.cam import grad_cam, guided_grad_cam, guided_product, normalize_maps, upsample
from course_utils.cam import cam as class_activation_map
from course_utils.features import feature_maps, normalize
from course_utils.saliency import deconvnet, guided_backprop, saliency_map, vanilla_gradient
from course_utils.widgets.compare import default_panels, offered_panels
from tests.conftest import (ForwardCounter, all_hooks, assert_each_change_redraws, assert_same_state, model_state,
                            small_boards)


@pytest.fixture
def dashboard(empty_torch_home):
    return widgets.CompareExplorer()


def test_every_control_redraws_once_with_a_new_picture(dashboard):
    assert dashboard.renders == 1 and dashboard.message.value == ""
    assert dashboard.controls["methods"].value == tuple(default_panels())
    other_class = dashboard.controls["target"].options[1][1]
    assert_each_change_redraws(dashboard, [
        ("target", other_class), ("layer", "features.relu3"), ("alpha", 0.9),
        ("methods", ("vanilla gradient", "Grad-CAM")), ("image", "photo: cat"), ("methods", ("CAM",)),
        ("image", "two objects 0"),
    ])


def test_each_panel_is_what_the_course_functions_compute(dashboard):
    ex = dashboard
    ex.controls["image"].value = "two objects 1"
    c = ex.controls["target"].options[1][1]  # not the top class: the target must follow the control
    ex.controls["target"].value = c
    ex.controls["layer"].value = "features.relu4"
    model, x = widgets.cached_model("course").model, ex.prepared().x
    for method, fn in (("vanilla gradient", vanilla_gradient), ("guided backprop", guided_backprop),
                       ("deconvnet", deconvnet)):
        expected = saliency_map(fn(model, x, c), "abs")[0].numpy()
        np.testing.assert_allclose(ex.result(method), expected, atol=1e-6)
    gc_map = grad_cam(model, x, c, layer="features.relu4").maps
    np.testing.assert_allclose(ex.result("Grad-CAM"), normalize_maps(upsample(gc_map, 64))[0].numpy(), atol=1e-6)
    cam_map = class_activation_map(model, x, c).maps
    np.testing.assert_allclose(ex.result("CAM"), normalize_maps(upsample(cam_map, 64))[0].numpy(), atol=1e-6)
    expected = saliency_map(guided_grad_cam(model, x, c, layer="features.relu4"), "abs")[0].numpy()
    np.testing.assert_allclose(ex.result("Guided Grad-CAM"), expected, atol=1e-6)
    tiles = ex.result("feature maps")
    assert tiles.shape == (4 * 16 + 3, 4 * 16 + 3)  # 16 of relu4's 16×16 maps, 1-px gaps
    acts = feature_maps(model, x, "features.relu4")["features.relu4"][0]
    strongest = acts.mean(dim=(1, 2)).argmax()
    np.testing.assert_allclose(tiles[:16, :16], normalize(acts[strongest]), atol=1e-6)  # the first tile
    with pytest.raises(ValueError, match="unknown panel"):
        ex.result("LRP")


def test_the_model_runs_only_for_what_is_new(dashboard):
    ex = dashboard
    model = widgets.cached_model("course").model
    first, second = (c for _, c in ex.controls["target"].options[:2])
    with ForwardCounter(model) as counter:
        ex.controls["layer"].value = "features.relu2"
        ex.controls["alpha"].value = 0.2
        ex.controls["methods"].value = ("Grad-CAM", "feature maps")
        assert counter.calls == 0, "layer, opacity and panels reuse the kept forward pass"
        ex.controls["methods"].value = tuple(default_panels())
        ex.controls["target"].value = second
        # a new class: the CAMs, and a backward pass each for vanilla (shared with Input × Gradient),
        # guided (shared with Guided Grad-CAM) and deconvnet, all from the kept forward pass, which
        # reaches the input; Eigen-CAM reads the kept maps
        ex.controls["target"].value = first
        ex.controls["target"].value = second
        ex.controls["image"].value = "scene 3"
        assert counter.calls == 1  # the new image's kept forward pass, and nothing else
        assert ex.message.value == ""
    assert all_hooks(model) == 0


def test_vgg_says_cam_does_not_apply_and_models_are_handed_back_unchanged(imagenet_cache):
    ex = widgets.CompareExplorer(k=3)
    assert ex.controls["model"].options == ("course", "efficientnet_lite0", "resnet18", "resnet50", "vgg16")
    vgg = widgets.cached_model("vgg16").model
    before = model_state(vgg)
    ex.controls["model"].value = "vgg16"
    assert ex.message.value == ""
    assert ex.controls["layer"].value == "features.29"
    assert "CAM does not apply to vgg16" in ex.result("CAM")
    ex.controls["layer"].value = "features.22"
    assert all(isinstance(ex.result(p), np.ndarray) for p in default_panels() if p != "CAM")
    assert_same_state(before, model_state(vgg))


def test_the_methods_of_many_passes_are_offered_not_shown_and_work_when_chosen(dashboard):
    heavy = [p for p in offered_panels() if p not in default_panels()]
    assert heavy == ["SmoothGrad", "Score-CAM", "Ablation-CAM", "Integrated Gradients", "Occlusion"]
    assert not set(heavy) & set(dashboard.controls["methods"].value)
    dashboard.controls["methods"].value = ("Grad-CAM", *heavy)
    assert dashboard.message.value == ""
    for p in heavy:
        picture = dashboard.result(p)
        assert picture.shape == (64, 64) and 0 <= picture.min() < picture.max() == 1, p


def test_attributions_are_titled_as_attributions_and_maps_laid_over_the_image(dashboard, monkeypatch):
    seen = {}
    monkeypatch.setattr(widgets.compare.figures, "compare_panels",
                        lambda *args, **kwargs: seen.update(args=args) or ([np.zeros((8, 8, 3))], ["input"], {}))
    dashboard.controls["methods"].value = ("vanilla gradient", "Input × Gradient", "Grad-CAM", "Eigen-CAM")
    *_, maps, attributions = seen["args"]
    assert attributions == {"Input × Gradient"} and maps == {"Grad-CAM", "Eigen-CAM"}


def test_guided_product_is_guided_backprop_times_the_scaled_map():
    guided = torch.ones(1, 3, 4, 4)
    maps = torch.tensor([[[0.0, 2.0], [4.0, 4.0]]])  # scaled to 0, 0.5, 1, 1 before upsampling
    out = guided_product(guided, maps)
    heat = normalize_maps(upsample(maps, 4))
    assert torch.equal(out, heat[:, None].expand(1, 3, 4, 4))
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 3, 3] == 1
    with pytest.raises(ValueError, match="same N"):
        guided_product(guided, maps[0])


def test_unknown_panels_are_refused(empty_torch_home):
    with pytest.raises(ValueError, match="unknown panel"):
        widgets.CompareExplorer(panels=["Grad-CAM", "occlusion"])


# --- every explorer: heavy controls act on release -------------------------------------------

_CONTINUOUS = (w.IntSlider, w.FloatSlider, w.FloatLogSlider, w.IntRangeSlider, w.FloatRangeSlider,
               w.Text, w.Textarea, w.IntText, w.FloatText, w.BoundedIntText, w.BoundedFloatText)
EXPLORERS = sorted(n for n, obj in inspect.getmembers(widgets, inspect.isclass)
                   if issubclass(obj, widgets.Explorer) and obj not in (widgets.Explorer, widgets.ClassExplorer))


def test_every_explorer_is_checked():
    assert len(EXPLORERS) == 13 and "CompareExplorer" in EXPLORERS and "LeaderboardExplorer" in EXPLORERS


@pytest.mark.parametrize("name", EXPLORERS)
def test_sliders_and_text_fields_update_on_release_only(name, empty_torch_home):
    """A slider dragged across 50 values must cost one redraw, not 50."""
    options = {"ActivationMaxExplorer": {"threaded": False}, "EvaluationExplorer": {"n_scenes": 4},
               "LeaderboardExplorer": {"boards": small_boards()} if name == "LeaderboardExplorer" else {}}
    ex = getattr(widgets, name)(**options.get(name, {}))
    continuous = [k for k, c in ex.controls.items() if isinstance(c, _CONTINUOUS) and c.continuous_update]
    assert not continuous, f"{name}: {continuous} redraw on every step of a drag"
    assert any(isinstance(c, _CONTINUOUS) for c in ex.controls.values()) or name in _NO_SLIDERS


#: Explorers made of dropdowns and checkboxes only (nothing to drag).
_NO_SLIDERS = {"CAMExplorer", "GradCAMExplorer", "GuidedGradCAMExplorer"}
