"""CAM, Grad-CAM and Guided Grad-CAM (lessons 05–07)."""

from __future__ import annotations

import gc

import pytest
import torch
import torchvision
from torch import nn

from course_utils.cam import GradCAM, cam, cam_all_classes, grad_cam, guided_grad_cam, normalize_maps, upsample
from course_utils.coursenet import CourseNet
from course_utils.saliency import guided_backprop, smoothgrad
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
    res = cam(TinyGAP(), TINY_X, target=0, layer="features", fc="fc")
    assert res.logits.tolist() == [[-1.0, 2.0]]
    assert res.maps.tolist() == [[[4.0, 0.0], [0.0, -8.0]]]
    assert cam(TinyGAP(), TINY_X, target=None, layer="features", fc="fc").maps.tolist() == [[[8.0, 0.0], [0.0, 0.0]]]


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


def _unusual_state(model):
    """Put the model in a state the guard must hand back: train mode, one ReLU not in
    place, one weight frozen. Returns that state."""
    model.train()
    model.layer1[1].relu.inplace = False
    model.layer2[0].conv1.weight.requires_grad_(False)
    return model_state(model)


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
    before = _unusual_state(model)
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


def test_a_relu_rule_with_no_relu_after_the_layer_is_an_error(course):
    """After relu5 the course model runs only gap and fc: a rule would change nothing, so it
    is refused (as guided_backprop refuses a model without ReLUs). The five ReLUs that ran
    before (relu5 itself included) do not count."""
    x = torch.randn(1, 3, 64, 64)
    for rule in ("guided", "deconvnet"):
        with pytest.raises(ValueError, match=rf"rule='{rule}'.*no ReLU runs after layer 'features\.relu5'.*earlier"):
            grad_cam(course.model, x, 2, layer="features.relu5", rule=rule)
        with pytest.raises(ValueError, match=r"no ReLU runs after layer 'features\.relu5'"):
            GradCAM(course.model, x, ["features.relu3", "features.relu5"], rule=rule)
        # relu4 and relu5 run after relu3: the rule applies
        assert grad_cam(course.model, x, 2, layer="features.relu3", rule=rule).layer == "features.relu3"
    assert grad_cam(course.model, x, 2, layer="features.relu5").layer == "features.relu5"  # plain: fine


# --- under torch.no_grad() and torch.inference_mode() ------------------------------------------

INFERENCE_MODE_MESSAGE = ("{} cannot take gradients inside torch.inference_mode(): "
                          "run it outside that block (torch.no_grad() is fine)")


def _grad_cam_family(model, x):
    """Every gradient result of the Grad-CAM family for x, as one list of tensors."""
    g = GradCAM(model, x, ["features.relu3", "features.relu5"])
    grad, classes = g.gradients([1, 4], "features.relu3")
    return [grad_cam(model, x, [1, 4]).maps, grad_cam(model, x, 2, layer="features.relu3", rule="guided").maps,
            g.map([1, 4], "features.relu3").maps, g.map(None).maps, grad, classes, g.cam([1, 4], "features.relu5").maps,
            guided_grad_cam(model, x, [1, 4])]


@pytest.mark.parametrize("mode", ["no_grad", "set_grad_enabled(False)"])
def test_grad_cam_family_works_with_gradients_switched_off(mode, course):
    """As after a notebook cell that switched gradients off: same results, and the mode is left as it was."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    expected = _grad_cam_family(course.model, x)
    if mode == "no_grad":
        with torch.no_grad():
            got = _grad_cam_family(course.model, x)
            assert not torch.is_grad_enabled()
    else:
        torch.set_grad_enabled(False)
        try:
            got = _grad_cam_family(course.model, x)
            assert not torch.is_grad_enabled()
        finally:
            torch.set_grad_enabled(True)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("name, call", [
    ("grad_cam", lambda m, x, kept: grad_cam(m, x, 0)),
    ("GradCAM", lambda m, x, kept: GradCAM(m, x, "features.relu5")),
    ("GradCAM.map", lambda m, x, kept: kept.map(0)),
    ("GradCAM.gradients", lambda m, x, kept: kept.gradients(0)),
    ("guided_grad_cam", lambda m, x, kept: guided_grad_cam(m, x, 0)),
])
def test_grad_cam_family_refuses_inference_mode_with_one_message(name, call, course):
    x = torch.randn(1, 3, 64, 64)
    kept = GradCAM(course.model, x, "features.relu5")  # built outside, used inside
    with torch.inference_mode():
        with pytest.raises(RuntimeError) as err:
            call(course.model, x, kept)
    assert str(err.value) == INFERENCE_MODE_MESSAGE.format(name)


def test_cam_takes_no_gradient_and_works_under_inference_mode(course):
    x = torch.randn(2, 3, 64, 64)
    kept = GradCAM(course.model, x, "features.relu5")
    expected = cam(course.model, x, [1, 4]).maps
    with torch.inference_mode():
        assert torch.equal(cam(course.model, x, [1, 4]).maps, expected)
        assert torch.allclose(kept.cam([1, 4]).maps, expected, atol=1e-5)


# --- a layer given as a module ------------------------------------------------------------------


def test_a_layer_given_as_a_module_is_resolved_to_its_name(course):
    m = course.model
    x = torch.randn(2, 3, 64, 64)
    by_module = grad_cam(m, x, [1, 4], layer=m.features.relu5)
    assert by_module.layer == "features.relu5"
    assert torch.equal(by_module.maps, grad_cam(m, x, [1, 4], layer="features.relu5").maps)
    g = GradCAM(m, x, [m.features.relu4, "features.relu5"])
    assert g.layers == ["features.relu4", "features.relu5"]
    assert g.map(1, m.features.relu4).layer == "features.relu4"
    assert torch.equal(g.map(1, m.features.relu4).maps, g.map(1, "features.relu4").maps)
    assert cam(m, x, 1, layer=m.features.relu5, fc=m.fc).layer == "features.relu5"
    assert g.cam(1, m.features.relu5, fc=m.fc).layer == "features.relu5"
    ggc = guided_grad_cam(m, x, [1, 4], layer=m.features.relu4)
    assert torch.equal(ggc, guided_grad_cam(m, x, [1, 4], layer="features.relu4"))


def test_a_container_given_as_the_layer_is_itself_not_its_first_child(course):
    m = course.model
    x = torch.randn(1, 3, 64, 64)
    res = grad_cam(m, x, 3, layer=m.features)
    assert res.layer == "features" and res.maps.shape == (1, 16, 16)  # not conv1's 64 x 64
    assert torch.equal(res.maps, grad_cam(m, x, 3, layer="features.relu5").maps)  # features ends with relu5


def test_layers_left_out_are_the_records(course, resnet18_random):
    """Grad-CAM looks at the last block, CAM at the record's CAM layer and head: on the course
    model features.relu5 and fc, on a ResNet layer4 and fc (given as None, or not given)."""
    x = torch.randn(1, 3, 64, 48)
    for model, last in ((course.model, "features.relu5"), (resnet18_random, "layer4")):
        assert torch.equal(grad_cam(model, x, 2).maps, grad_cam(model, x, 2, layer=last).maps)
        assert grad_cam(model, x, 2, layer=None).layer == last
        assert torch.equal(cam(model, x, 2).maps, cam(model, x, 2, layer=last, fc="fc").maps)
        assert torch.equal(cam_all_classes(model, x)[1], cam_all_classes(model, x, last, "fc")[1])
        assert torch.equal(guided_grad_cam(model, x, 2), guided_grad_cam(model, x, 2, layer=last))
        assert torch.equal(GradCAM(model, x, last).cam(2).maps, cam(model, x, 2).maps)


@pytest.mark.parametrize("call, error, message", [
    (lambda m, x: grad_cam(nn.Sequential(m), x, 0), ValueError,
     r"a Sequential is not one of the course's models \(course, .*\), so it has no default layer: give the layer"),
    (lambda m, x: GradCAM(m, x, None), TypeError, r"a dotted name.*a module of the model.*or a list of these, got None"),
    (lambda m, x: GradCAM(m, x, []), ValueError, r"GradCAM needs at least one layer"),
    (lambda m, x: grad_cam(m, x, 0, layer=["features.relu5"]), TypeError, r"got list \['features.relu5'\]"),
    (lambda m, x: cam(nn.Sequential(m), x, 0, layer="0.features.relu5"), ValueError,
     r"Sequential is not one of the course's models .* \(and for CAM the linear head fc\) by name"),
    (lambda m, x: cam(m, x, 0, fc=3), TypeError, r"named by a string.*got int 3"),
    (lambda m, x: grad_cam(m, x, 0, layer=nn.ReLU()), KeyError,
     r"the ReLU given as a layer is not part of this model \(CourseNet\)"),
    (lambda m, x: grad_cam(m, x, 0, layer=m), KeyError, r"the model itself is not one of its layers"),
])
def test_a_layer_that_is_missing_or_not_in_the_model_is_refused_clearly(call, error, message, course):
    with pytest.raises(error, match=message):
        call(course.model, torch.randn(1, 3, 64, 64))


# --- every new error path leaves the model as it was ------------------------------------------------


def _inside_inference_mode(call):
    def run(m, x):
        with torch.inference_mode():
            call(m, x)
    return run


@pytest.mark.parametrize("call", [
    _inside_inference_mode(lambda m, x: grad_cam(m, x, 0, layer="layer4")),
    _inside_inference_mode(lambda m, x: guided_grad_cam(m, x, 0, layer="layer4")),
    _inside_inference_mode(lambda m, x: guided_backprop(m, x, 0)),
    _inside_inference_mode(lambda m, x: smoothgrad(m, x, 0, samples=2, progress=False)),
    lambda m, x: cam(m, x, 0, layer=m.layer3),
    lambda m, x: grad_cam(m, x, 0, layer=nn.Conv2d(3, 3, 1)),
    lambda m, x: cam(m, x, 0, layer=m.layer4, fc=m.layer4),
    lambda m, x: grad_cam(m, x, 0, layer=m.layer4, rule="guided"),
    lambda m, x: GradCAM(m, x, [m.layer3, "layer4"], rule="deconvnet"),
    lambda m, x: smoothgrad(m, x, -1, samples=2, progress=False),
    lambda m, x: grad_cam(m, x, 1000, layer=m.layer4),
], ids=["grad-cam in inference mode", "guided grad-cam in inference mode", "guided backprop in inference mode",
        "smoothgrad in inference mode", "CAM layer not feeding fc", "foreign layer", "fc not linear",
        "rule, no ReLU after",
        "rule, no ReLU after the last layer", "smoothgrad class -1", "class 1000"])
def test_new_error_paths_leave_the_model_unchanged(call, resnet18_random):
    model = resnet18_random
    before = _unusual_state(model)
    with pytest.raises((ValueError, TypeError, RuntimeError, KeyError)):
        call(model, torch.randn(1, 3, 64, 64))
    assert_same_state(before, model_state(model))
    assert all_hooks(model) == 0 and all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


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
    # (the layer moves to relu5 only with a method that has no ReLU rule: after relu5 no ReLU runs)
    "GuidedGradCAMExplorer": [("method", "guided backprop"), ("method", "Grad-CAM, guided ReLUs"),
                              ("method", "Grad-CAM, deconvnet ReLUs"), ("method", "Grad-CAM"),
                              ("layer", "features.relu5"), ("target", 2), ("image", "scene 4")],
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

    assert CAMExplorer().controls["model"].options == ("course", "efficientnet_lite0", "resnet18", "resnet50")
    ex = GradCAMExplorer(k=3)
    assert ex.controls["model"].options == ("course", "efficientnet_lite0", "resnet18", "resnet50", "vgg16")
    ex.controls["image"].value = "photo: cat"
    ex.controls["model"].value = "vgg16"
    assert ex.controls["layer"].options == ("features.3", "features.8", "features.15", "features.22", "features.29")
    assert ex.controls["layer"].value == "features.29" and ex.message.value == ""
    assert len(ex.controls["target"].options) == 3


def test_normalize_maps_subtracts_the_minimum_and_divides_by_the_range():
    """Maps whose minimum is not 0 (negative, or positive): (m - min) / (max - min), by hand."""
    m = torch.tensor([[[-2.0, 0.0], [1.0, 2.0]],     # min -2, max 2: range 4
                      [[-1.0, 3.0], [7.0, -1.0]],    # min -1, max 7: range 8
                      [[2.0, 3.0], [4.0, 6.0]],      # min 2, max 6: range 4
                      [[-6.0, -5.0], [-4.0, -2.0]]])  # all negative: min -6, max -2, range 4
    per = normalize_maps(m)
    assert per.tolist() == [[[0.0, 0.5], [0.75, 1.0]],
                            [[0.0, 0.5], [1.0, 0.0]],
                            [[0.0, 0.25], [0.5, 1.0]],
                            [[0.0, 0.25], [0.5, 1.0]]]
    assert normalize_maps(m[1]).tolist() == [[0.0, 0.5], [1.0, 0.0]]  # one (h, w) map
    # shared: one scale over all maps, min -6 and max 7, range 13
    shared = normalize_maps(m, shared=True)
    torch.testing.assert_close(shared, (m + 6) / 13, rtol=0, atol=1e-7)
    assert shared[3, 0, 0] == 0.0 and shared[1, 1, 0] == 1.0
    torch.testing.assert_close(shared[0], torch.tensor([[4.0, 6.0], [7.0, 8.0]]) / 13, rtol=0, atol=1e-7)
    # shared over maps that are all negative: min -6, max -1, range 5
    neg = normalize_maps(torch.tensor([[[-6.0, -1.0]], [[-3.5, -6.0]]]), shared=True)
    assert neg.tolist() == [[[0.0, 1.0]], [[0.5, 0.0]]]


# --- pinned by mutation testing ---


@pytest.mark.parametrize("call", [
    lambda x: cam(TinyGAP(), x, 0, layer="features", fc="fc"),
    lambda x: grad_cam(TinyGAP(), x, 0, layer="features"),
    lambda x: GradCAM(TinyGAP(), x, "features"),
], ids=["cam", "grad_cam", "GradCAM"])
def test_the_input_must_be_a_float_batch_of_images(call):
    """One image without its batch axis, integer pixels or a NumPy array: each refused
    before the model runs, with a message that says what came instead."""
    with pytest.raises(ValueError, match=r"float batch of images \(N, C, H, W\), got \(2, 2, 2\)"):
        call(TINY_X[0])
    with pytest.raises(ValueError, match=r"float batch of images \(N, C, H, W\), got \(1, 2, 2, 2\)"):
        call(TINY_X.long())
    with pytest.raises(ValueError, match=r"float batch of images \(N, C, H, W\), got ndarray"):
        call(TINY_X.numpy())


def test_a_target_function_explains_no_single_class_minus_one_per_image():
    """Score = logit 0 - logit 1 on TinyGAP, three images (more than its 2 classes):
    d score / d A_k = (w_k^0 - w_k^1) / 4 = (-1/4, -1/4), so the map before the ReLU is
    -(A_1 + A_2) / 4, and each image's class is -1 (no class: a function of the logits)."""
    x = torch.cat([TINY_X, 2 * TINY_X, TINY_X.flip(1)])  # A_1 + A_2 = (4 0; 0 8), twice that, the same
    res = grad_cam(TinyGAP(), x, lambda logits: logits[:, 0] - logits[:, 1], layer="features", relu=False)
    assert res.classes.tolist() == [-1, -1, -1]
    assert res.maps.tolist() == [[[-1.0, 0.0], [0.0, -2.0]], [[-2.0, 0.0], [0.0, -4.0]], [[-1.0, 0.0], [0.0, -2.0]]]
    _, classes = GradCAM(TinyGAP(), x, "features").gradients(lambda logits: logits.sum(1))
    assert classes.tolist() == [-1, -1, -1]


def test_guided_grad_cam_with_a_target_function(course):
    """A function of the logits goes to guided backprop as it is (there is no class to pass)."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))

    def score(logits):
        return logits[:, 2] - logits[:, 0]

    heat = normalize_maps(grad_cam(course.model, x, score).upsampled(64))
    expected = guided_backprop(course.model, x, score) * heat[:, None]
    assert torch.allclose(guided_grad_cam(course.model, x, score), expected, atol=1e-7)


class ShiftedGAP(TinyGAP):
    """TinyGAP whose logits are then scaled and shifted: ``scale * fc(GAP(x)) + shift``."""

    def __init__(self, scale=1.0, shift=0.0):
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x):
        return super().forward(x) * self.scale + self.shift


def test_cam_allows_rounding_but_not_a_real_change_after_the_linear_layer():
    """The check that CAM applies compares the logits with fc(spatial means) with a relative
    tolerance of 1e-3 and an absolute one of 1e-4. Here A_1 = (4 0; 0 0), A_2 = (0 0; 0 4):
    logits (0, 2). A shift of 5e-5 (rounding-sized, even on the logit that is 0) and a scale
    of 1.0005 pass; a scale of 1.0015 (0.003 off on the logit 2) is a layer CAM cannot see."""
    x = torch.tensor([[[[4.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 4.0]]]])
    exact = cam(TinyGAP(), x, 1, layer="features", fc="fc")
    assert exact.logits.tolist() == [[0.0, 2.0]] and exact.maps.tolist() == [[[8.0, 0.0], [0.0, 0.0]]]
    for model in (ShiftedGAP(shift=5e-5), ShiftedGAP(scale=1.0005)):
        assert torch.equal(cam(model, x, 1, layer="features", fc="fc").maps, exact.maps)
    with pytest.raises(ValueError, match="CAM does not apply: use Grad-CAM"):
        cam(ShiftedGAP(scale=1.0015), x, 1, layer="features", fc="fc")
    with pytest.raises(ValueError, match="CAM does not apply: use Grad-CAM"):
        cam(ShiftedGAP(shift=3e-4), x, 1, layer="features", fc="fc")


def test_guided_product_by_hand_and_its_shapes():
    """Map (0 2) upsampled to 1 x 4 is (0 0.5 1.5 2), scaled to [0, 1]: (0 0.25 0.75 1),
    times the guided gradient (1 2 3 4): (0 0.5 2.25 4). Shapes that do not fit are refused."""
    from course_utils.cam import guided_product

    guided = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])  # (1, 1, 1, 4)
    assert guided_product(guided, torch.tensor([[[0.0, 2.0]]])).tolist() == [[[[0.0, 0.5, 2.25, 4.0]]]]
    message = r"expected guided \(N, C, H, W\) and maps \(N, h, w\) for the same N"
    with pytest.raises(ValueError, match=message):  # guided without its channel axis
        guided_product(torch.ones(2, 4, 4), torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match=message):  # 2 gradients, 3 maps
        guided_product(torch.ones(2, 3, 4, 4), torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match=message):  # one map without its batch axis
        guided_product(torch.ones(1, 3, 4, 4), torch.ones(2, 2))


def test_normalize_maps_stretches_a_small_range_to_one():
    """A range below 1 is divided by too: the maximum becomes 1, per map and shared."""
    m = torch.tensor([[[0.25, 0.5], [0.375, 0.75]]])  # min 0.25, range 0.5
    assert normalize_maps(m).tolist() == [[[0.0, 0.5], [0.25, 1.0]]]
    pair = torch.tensor([[[0.25, 0.5]], [[0.375, 0.75]]])
    assert normalize_maps(pair).tolist() == [[[0.0, 1.0]], [[0.0, 1.0]]]
    assert normalize_maps(pair, shared=True).tolist() == [[[0.0, 0.5]], [[0.25, 1.0]]]


# --- input gradients from a kept pass that reaches the input (to_input=True) --------------------


def _relu6_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(), nn.Conv2d(4, 4, 3), nn.ReLU(inplace=True),
                         nn.Conv2d(4, 5, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))


def test_a_kept_pass_to_the_input_gives_each_rules_gradient_and_the_same_grad_cam():
    from course_utils.saliency import input_gradient

    net, x = _relu6_net(), torch.randn(2, 3, 9, 7)  # not square
    before = model_state(net)
    kept = GradCAM(net, x, ["2", "4"], to_input=True)
    plain = GradCAM(net, x, ["2", "4"])
    for rule in ("guided", "plain", "deconvnet", "guided"):  # the rule of each asks in turn, not the first one's
        torch.testing.assert_close(kept.input_gradient([2, 0], rule), input_gradient(net, x, [2, 0], rule)[1],
                                   rtol=0, atol=0)
    for layer in ("2", "4"):  # Grad-CAM sees the plain rule after a gradient of another rule was taken
        torch.testing.assert_close(kept.map(1, layer).maps, plain.map(1, layer).maps, rtol=0, atol=0)
    with pytest.raises(ValueError, match="out of range"):
        kept.input_gradient(7, "guided")
    torch.testing.assert_close(kept.map(1, "4").maps, plain.map(1, "4").maps, rtol=0, atol=0)  # the rule restored
    with pytest.raises(ValueError, match="unknown ReLU rule 'Guided'"):
        kept.input_gradient(1, "Guided")
    with pytest.raises(ValueError, match=r"kept without the input: make it with GradCAM\(\.\.\., to_input=True\)"):
        plain.input_gradient(1)
    assert_same_state(before, model_state(net))
    assert all_hooks(net) == 0


def test_a_kept_pass_without_relu_gives_the_plain_gradient_only():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    x = torch.randn(1, 3, 5, 5)
    kept = GradCAM(net, x, "0", to_input=True)
    grad = kept.input_gradient(1)
    assert grad.shape == x.shape and grad.abs().sum() > 0
    with pytest.raises(ValueError, match="the deconvnet rule changes how ReLUs pass gradients back, but no ReLU ran"):
        kept.input_gradient(1, "deconvnet")
