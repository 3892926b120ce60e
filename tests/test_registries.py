"""Adding a model is one record, adding a method one entry: each test adds one and
checks that the compute functions, the explainer and the explorers pick it up."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
import torch
import torchvision

from course_utils import cam, methods, models
from course_utils.methods import Explainer, Method, explain


@pytest.fixture
def resnet34(tmp_path, monkeypatch):
    """A model the course does not know, added as one record, its (random) weights in a fresh torch cache."""
    record = models.ModelRecord(
        "resnet34", torchvision.models.ResNet, functools.partial(torchvision.models.resnet34, weights=None),
        "ResNet34_Weights.IMAGENET1K_V1", 224, models.IMAGENET_MEAN, models.IMAGENET_STD,
        ("layer1", "layer2", "layer3", "layer4"), "layer4", "fc")
    monkeypatch.setitem(models.MODELS, "resnet34", record)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert models.available_models()["resnet34"] is False
    path = models.weights_path("resnet34")
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(record.build().state_dict(), path)
    assert path.name == os.path.basename(record.tv_weights.url)
    return record


def test_a_new_model_is_one_record(resnet34):
    from course_utils import widgets
    from course_utils.widgets.choices import block_layers, cam_models, offered_models

    assert models.available_models()["resnet34"] is True
    m = models.load_model("resnet34")
    assert m.record is resnet34 and m.input_size == 224 and len(m.categories) == 1000
    x = m.batch([torch.randint(0, 256, (300, 260, 3), dtype=torch.uint8).numpy()])
    assert x.shape == (1, 3, 224, 224)
    assert cam.grad_cam(m.model, x, 3).layer == "layer4" and cam.cam(m.model, x, 3).maps.shape == (1, 7, 7)
    assert explain(m.model, x, "Guided Grad-CAM", 3).shape == (1, 224, 224)
    assert "resnet34" in offered_models() and "resnet34" in cam_models()
    assert block_layers("resnet34") == list(resnet34.blocks)
    ex = widgets.GradCAMExplorer(models=["resnet34"])
    assert ex.controls["layer"].options == resnet34.blocks and ex.message.value == ""
    widgets.base.MODEL_CACHE.pop("resnet34", None)


def hires_cam(e: Explainer, target, layer):
    """HiResCAM (Draelos & Carin 2020): the gradient times the maps, summed over channels, no averaging."""
    grad = e.kept.gradients(target, layer)[0]
    return (grad * e.kept.acts[layer].detach()).sum(dim=1).clamp(min=0).cpu()


def test_a_new_method_is_one_entry(monkeypatch):
    from course_utils.widgets.evaluation import compared

    course = models.load_model("course")
    monkeypatch.setitem(methods.METHODS, "Fake-CAM", Method(hires_cam, "map", "gradcam_layer", kept=True, lesson=6))
    x = course.batch([torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8).numpy()] * 2)
    g = cam.GradCAM(course.model, x, "features.relu4")
    by_hand = (g.gradients([1, 2])[0] * g.acts["features.relu4"]).sum(dim=1).clamp(min=0)
    torch.testing.assert_close(explain(course.model, x, "Fake-CAM", [1, 2], layer="features.relu4"), by_hand)
    ex = Explainer(course.model, x)
    assert ex("Fake-CAM", 2).shape == (2, 16, 16) and ex("Grad-CAM", 2).shape == (2, 16, 16)
    assert "Fake-CAM" in compared(course.record)
    from course_utils import widgets

    dashboard = widgets.CompareExplorer(panels=["Grad-CAM", "Fake-CAM"])
    dashboard.controls["layer"].value = "features.relu4"
    c = dashboard.target()[0]
    shown = hires_cam(Explainer(course.model, dashboard.prepared().x), c, "features.relu4")
    expected = cam.normalize_maps(cam.upsample(shown, 64))[0].numpy()
    assert "Fake-CAM" in dashboard.controls["methods"].options and dashboard.message.value == ""
    np.testing.assert_allclose(dashboard.result("Fake-CAM"), expected, atol=1e-6)
