"""CAM, Grad-CAM and Guided Grad-CAM (lessons 05–07)."""

from __future__ import annotations

import gc

import pytest
import torch
import torchvision
from torch import nn

from course_utils.cam import GradCAM, cam, grad_cam, guided_grad_cam, normalize_maps, upsample
from course_utils.coursenet import CourseNet
from course_utils.saliency import guided_backprop
from tests.conftest import all_hooks, assert_each_change_redraws, assert_same_state, model_state


@pytest.fixture(scope="module")
def course():
    from course_utils.models import load_model

    return load_model("course")


# --- a tiny network whose maps can be written down ---------------------------------------
#
# Two 2x2 feature maps, global average pooling, a linear layer with weights
#   class 0: ( 1, -1)      class 1: ( 2,  0)
#
#   A_1 = 4 0     A_2 = 0 0      (the input itself: the "conv" is the identity)
#         0 0           0 8
#
# logits: class 0 = (4/4)*1 + (8/4)*(-1) = -1;  class 1 = (4/4)*2 = 2
# CAM class 0 = 1*A_1 - 1*A_2 = 4  0      CAM class 1 = 2*A_1 = 8 0
#                               0 -8                            0 0
# Grad-CAM: dy/dA_k(x, y) = w_k / 4, so alpha_k = w_k / 4 and Grad-CAM = CAM / 4 (before the ReLU).


class TinyGAP(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Identity()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.0]]))

    def forward(self, x):
        return self.fc(self.gap(self.features(x)).flatten(1))


TINY_X = torch.tensor([[[[4.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 8.0]]]])


def test_cam_by_hand():
    res = cam(TinyGAP(), TINY_X, target=0, layer="features")
    assert res.logits.tolist() == [[-1.0, 2.0]]
    assert res.maps.tolist() == [[[4.0, 0.0], [0.0, -8.0]]]
    assert cam(TinyGAP(), TINY_X, target=None, layer="features").maps.tolist() == [[[8.0, 0.0], [0.0, 0.0]]]


def test_grad_cam_by_hand():
    g = GradCAM(TinyGAP(), TINY_X, "features")
    assert g.map(0, relu=False).maps.tolist() == [[[1.0, 0.0], [0.0, -2.0]]]  # CAM / 4
    assert g.map(0).maps.tolist() == [[[1.0, 0.0], [0.0, 0.0]]]              # the ReLU
    assert g.map(0, counterfactual=True).maps.tolist() == [[[0.0, 0.0], [0.0, 2.0]]]
    assert g.map(1).maps.tolist() == [[[2.0, 0.0], [0.0, 0.0]]]
    assert g.map(None).classes.tolist() == [1]


def test_grad_cam_equals_cam_on_the_course_model(course):
    """On a GAP + linear network alpha_k = w_k / (h w): Grad-CAM is CAM divided by h w = 256."""
    from course_utils.scenes import make_scenes

    x = course.batch(list(make_scenes(8, seed=5).images))
    c = cam(course.model, x, None)
    g = grad_cam(course.model, x, None, relu=False)
    assert torch.equal(c.classes, g.classes)
    assert c.maps.abs().max() > 1
    assert torch.allclose(g.maps * 256, c.maps, rtol=1e-4, atol=1e-4 * c.maps.abs().max().item())


def test_per_image_targets_in_a_batch(course):
    from course_utils.scenes import make_scenes

    x = course.batch(list(make_scenes(3, seed=5).images))
    targets = [5, 0, 3]
    batch = grad_cam(course.model, x, targets, relu=False)
    assert batch.classes.tolist() == targets
    for i, t in enumerate(targets):
        alone = grad_cam(course.model, x[i:i + 1], t, relu=False)
        assert torch.allclose(batch.maps[i], alone.maps[0], atol=1e-5)
    by_fn = grad_cam(course.model, x, lambda logits: logits[:, 2], relu=False)
    assert torch.allclose(by_fn.maps, grad_cam(course.model, x, 2, relu=False).maps)


def test_class_discriminative_on_two_object_scenes(course):
    """For each shape in a two-object scene, the peak of its Grad-CAM map falls on that shape."""
    from course_utils.scenes import make_scenes

    scenes = make_scenes(40, seed=11, n_objects=2)
    x = course.batch(list(scenes.images))
    g = GradCAM(course.model, x, "features.relu5")
    hits = total = 0
    for k in range(2):
        classes = [int(lab[k]) for lab in scenes.labels]
        heat = g.map(classes).upsampled(64)
        for i in range(len(classes)):
            peak = heat[i].argmax()
            hits += bool(scenes.masks[i][k].reshape(-1)[peak])
            total += 1
    assert hits / total >= 0.7, f"{hits}/{total}"


# --- errors are specific --------------------------------------------------------------------


def test_a_non_spatial_layer_is_refused(course):
    x = torch.zeros(1, 3, 64, 64)
    with pytest.raises(ValueError, match=r"layer 'gap' gives shape \(1, 64, 1, 1\)|spatial"):
        grad_cam(course.model, x, 0, layer="fc")
    with pytest.raises(ValueError, match="needs a spatial"):
        grad_cam(course.model, x, 0, layer="fc")


def test_a_layer_the_score_does_not_depend_on(course):
    class SideBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = CourseNet()
            self.unused = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            self.unused(x)  # runs, but the output goes nowhere
            return self.net(x)

    with pytest.raises(RuntimeError, match="does not depend on layer 'unused'"):
        grad_cam(SideBranch().eval(), torch.zeros(1, 3, 32, 32), 0, layer="unused")


def test_a_class_out_of_range_says_the_range(course):
    with pytest.raises(ValueError, match=r"class index 6 is out of range.*0\.\.5"):
        grad_cam(course.model, torch.zeros(1, 3, 64, 64), 6)
    with pytest.raises(ValueError, match=r"out of range"):
        cam(course.model, torch.zeros(1, 3, 64, 64), -1)


def test_cam_refuses_a_network_without_gap_and_linear():
    torch.manual_seed(0)
    vgg = torchvision.models.vgg11(weights=None).eval()
    with pytest.raises(ValueError, match="use Grad-CAM"):
        cam(vgg, torch.randn(1, 3, 64, 64), 0, layer="features.18", fc="classifier.6")


def test_cam_from_a_kept_forward_pass_is_cam_and_runs_nothing(course):
    from tests.conftest import ForwardCounter

    x = torch.stack([torch.zeros(3, 64, 64), torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))])
    g = GradCAM(course.model, x, ["features.relu4", "features.relu5"])
    expected = cam(course.model, x, [2, 5])
    with ForwardCounter(course.model) as counter:
        kept = g.cam([2, 5], "features.relu5")
        assert counter.calls == 0
    assert torch.allclose(kept.maps, expected.maps, atol=1e-5) and kept.classes.tolist() == [2, 5]
    with pytest.raises(ValueError, match="use Grad-CAM"):  # relu4 does not feed fc through GAP
        g.cam(0, "features.relu4")
    with pytest.raises(TypeError, match="one class per image"):
        g.cam(lambda logits: logits[:, 0], "features.relu5")
    vgg = torchvision.models.vgg11(weights=None).eval()
    with pytest.raises(ValueError, match="use Grad-CAM"):
        GradCAM(vgg, torch.randn(1, 3, 64, 64), "features.18").cam(0, fc="classifier.6")


def test_an_unknown_layer_lists_close_names(course):
    with pytest.raises(KeyError, match="features.relu5"):
        grad_cam(course.model, torch.zeros(1, 3, 64, 64), 0, layer="features.rlu5")


# --- the model comes back unchanged -----------------------------------------------------------


def _error_inside(model, x):
    handle = model.layer4.register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    try:
        grad_cam(model, x, 0, layer="layer3")
    finally:
        handle.remove()


@pytest.mark.parametrize("call", [
    lambda m, x: grad_cam(m, x, 0, layer="layer4"),
    lambda m, x: grad_cam(m, x, 0, layer="layer3", rule="guided"),
    lambda m, x: cam(m, x, 0, layer="layer4"),
    lambda m, x: guided_grad_cam(m, x, 0, layer="layer4"),
    lambda m, x: grad_cam(m, x, 1000, layer="layer4"),
    lambda m, x: grad_cam(m, x, 0, layer="fc"),
    _error_inside,
], ids=["grad-cam", "guided rule", "cam", "guided grad-cam", "bad class", "non-spatial", "error inside"])
def test_resnet_comes_back_unchanged(call, resnet18_random):
    model = resnet18_random
    model.train()
    model.layer1[1].relu.inplace = False
    model.layer2[0].conv1.weight.requires_grad_(False)
    before = model_state(model)
    try:
        call(model, torch.randn(1, 3, 64, 64))
    except (ValueError, RuntimeError):
        pass
    assert_same_state(before, model_state(model))
    assert all_hooks(model) == 0 and all(p.grad is None for p in model.parameters())


def test_resnet_cam_equals_grad_cam(resnet18_random):
    x = torch.randn(2, 3, 64, 64)
    c = cam(resnet18_random, x, [3, 9], layer="layer4")
    g = grad_cam(resnet18_random, x, [3, 9], layer="layer4", relu=False)
    hw = c.maps.shape[-1] * c.maps.shape[-2]
    assert torch.allclose(g.maps * hw, c.maps, rtol=1e-4, atol=1e-4 * c.maps.abs().max().item())


def test_memory_stays_flat_over_repeated_calls(course):
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    x = torch.randn(1, 3, 64, 64)
    for _ in range(20):  # warm up: allocator pools, first-call caches
        grad_cam(course.model, x, 1)
    gc.collect()
    before = proc.memory_info().rss
    for i in range(200):
        grad_cam(course.model, x, i % 6)
        GradCAM(course.model, x, ["features.relu4", "features.relu5"]).map(i % 6, "features.relu4")
    gc.collect()
    grown = (proc.memory_info().rss - before) / 2**20
    assert grown < 5, f"RSS grew by {grown:.1f} MB over 200 calls"
    assert all_hooks(course.model) == 0


# --- one forward pass, many classes -------------------------------------------------------------


def test_grad_cam_reuses_its_forward_pass(course):
    from tests.conftest import ForwardCounter

    x = torch.randn(1, 3, 64, 64)
    with ForwardCounter(course.model) as counter:
        g = GradCAM(course.model, x, ["features.relu3", "features.relu5"])
        maps = [g.map(c, layer).maps for c in range(6) for layer in g.layers]
    assert counter.calls == 1
    for c in range(6):
        assert torch.allclose(maps[2 * c + 1], grad_cam(course.model, x, c).maps)
    with pytest.raises(ValueError, match="was not captured"):
        g.map(0, "features.relu1")


def test_parameters_are_not_in_the_graph_below_the_layer(course):
    """Grad-CAM costs about one forward pass: nothing below the layer is recorded."""
    g = GradCAM(course.model, torch.randn(1, 3, 64, 64), "features.relu5")
    assert g.acts["features.relu5"].is_leaf and g.acts["features.relu5"].requires_grad
    assert all(p.requires_grad for p in course.model.parameters())  # restored


# --- rules and Guided Grad-CAM ----------------------------------------------------------------


def test_grad_cam_with_relu_rules_differs_only_after_the_layer(course):
    x = torch.randn(1, 3, 64, 64)
    # After relu5 there is no ReLU in the course model: every rule gives the same map.
    base = grad_cam(course.model, x, 2, layer="features.relu5").maps
    for rule in ("guided", "deconvnet"):
        assert torch.equal(grad_cam(course.model, x, 2, layer="features.relu5", rule=rule).maps, base)
    # At relu3, relu4 and relu5 come after: the rules change the map.
    plain = grad_cam(course.model, x, 2, layer="features.relu3", relu=False).maps
    guided = grad_cam(course.model, x, 2, layer="features.relu3", relu=False, rule="guided").maps
    assert not torch.allclose(plain, guided)


def test_guided_grad_cam_is_the_product(course):
    x = torch.randn(2, 3, 64, 64)
    ggc = guided_grad_cam(course.model, x, [1, 4])
    heat = normalize_maps(grad_cam(course.model, x, [1, 4]).upsampled(64))
    expected = guided_backprop(course.model, x, [1, 4]) * heat[:, None]
    assert ggc.shape == x.shape and torch.allclose(ggc, expected, atol=1e-7)


# --- upsampling and normalization ------------------------------------------------------------------


def test_normalize_maps_per_map_shared_and_flat():
    m = torch.tensor([[[0.0, 2.0], [1.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 8.0]]])
    per = normalize_maps(m)
    assert per[0].tolist() == [[0.0, 0.5], [0.25, 1.0]]
    assert per[1].tolist() == [[0.0, 0.0], [0.0, 0.0]]  # flat: zeros, not NaN
    shared = normalize_maps(m, shared=True)
    assert shared[0].tolist() == [[0.0, 0.25], [0.125, 0.5]] and shared[2, 1, 1] == 1.0
    assert normalize_maps(torch.zeros(3, 3)).tolist() == [[0.0] * 3] * 3
    assert not torch.isnan(normalize_maps(torch.zeros(2, 4, 4), shared=True)).any()


def test_upsample_bilinear():
    m = torch.tensor([[0.0, 1.0]]).expand(2, 2)  # columns 0 and 1
    up = upsample(m, (2, 4))
    assert up.tolist() == [[0.0, 0.25, 0.75, 1.0]] * 2
    assert upsample(torch.zeros(3, 7, 7), 224).shape == (3, 224, 224)
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        upsample(torch.zeros(1, 1, 2, 2), 4)


# --- the explorers -------------------------------------------------------------------------------

EXPLORER_CHANGES = {
    "CAMExplorer": [("target", 3), ("cmap", "inferno"), ("alpha", 0.2), ("image", "two objects 1")],
    "GradCAMExplorer": [("target", 3), ("layer", "features.relu4"), ("counterfactual", True), ("cmap", "gray"),
                        ("alpha", 0.8), ("image", "photo: cat")],
    "GuidedGradCAMExplorer": [("method", "guided backprop"), ("method", "Grad-CAM, guided ReLUs"),
                              ("method", "Grad-CAM, deconvnet ReLUs"), ("layer", "features.relu5"),
                              ("method", "Grad-CAM"), ("target", 2), ("image", "scene 4")],
}


@pytest.mark.parametrize("name", list(EXPLORER_CHANGES))
def test_explorers_redraw_once_per_control_and_the_picture_changes(name, empty_torch_home):
    import course_utils.widgets as widgets

    ex = getattr(widgets, name)()
    assert ex.renders == 1 and ex.message.value == ""
    assert_each_change_redraws(ex, EXPLORER_CHANGES[name])


@pytest.mark.parametrize("name", ["CAMExplorer", "GradCAMExplorer"])
def test_a_class_or_layer_switch_does_not_run_the_model(name, empty_torch_home):
    import course_utils.widgets as widgets
    from tests.conftest import ForwardCounter

    ex = getattr(widgets, name)()
    with ForwardCounter(widgets.cached_model("course").model) as counter:
        for c in range(6):
            ex.controls["target"].value = c
        if "layer" in ex.controls:
            ex.controls["layer"].value = "features.relu2"
        assert counter.calls == 0
        ex.controls["image"].value = "scene 5"
        assert counter.calls == 1
    assert all_hooks(widgets.cached_model("course").model) == 0


def test_cam_explorer_does_not_offer_vgg(imagenet_cache):
    from course_utils.widgets import CAMExplorer, GradCAMExplorer

    assert CAMExplorer().controls["model"].options == ("course", "resnet18", "resnet50")
    ex = GradCAMExplorer(k=3)
    assert ex.controls["model"].options == ("course", "resnet18", "resnet50", "vgg16")
    ex.controls["image"].value = "photo: cat"
    ex.controls["model"].value = "vgg16"
    assert ex.controls["layer"].options == ("features.3", "features.8", "features.15", "features.22", "features.29")
    assert ex.controls["layer"].value == "features.29" and ex.message.value == ""
    assert len(ex.controls["target"].options) == 3
