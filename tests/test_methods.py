"""The method registry: every method by name, what each needs, and the Explainer's shared passes."""

from __future__ import annotations

import pytest
import torch

from course_utils import cam, gradient_free, saliency
from course_utils.coursenet import CourseNet
from course_utils.methods import METHODS, Explainer, explain, method_layer
from course_utils.models import MODELS

from .conftest import ForwardCounter, all_hooks, assert_same_state, model_state


@pytest.fixture
def net():
    torch.manual_seed(0)
    return CourseNet().eval()


@pytest.fixture
def x():
    return torch.randn(2, 3, 40, 24, generator=torch.Generator().manual_seed(1))  # not square: 10x6 maps


def test_every_method_by_name_gives_one_map_per_image_at_its_resolution(net, x):
    for name, m in METHODS.items():
        opts = {"samples": 2, "progress": False} if name == "SmoothGrad" else {}
        maps = explain(net, x, name, [1, 2], **opts)
        assert maps.shape == ((2, 40, 24) if m.output == "gradient" or m.layer is None else (2, 10, 6)), name
        assert torch.isfinite(maps).all() and maps.max() > 0, name
    with pytest.raises(ValueError, match=r"unknown method 'LIME'; choose one of \['vanilla gradient'"):
        explain(net, x, "LIME")
    with pytest.raises(TypeError, match="deconvnet takes no option samples"):
        explain(net, x, "deconvnet", samples=3)
    with pytest.raises(TypeError, match="CAM takes no option rule"):
        Explainer(net, x)("CAM", 0, rule="guided")


def test_explain_equals_the_course_function_of_each_method(net, x):
    t = [3, 0]
    expected = {
        "vanilla gradient": saliency.vanilla_gradient(net, x, t).abs().amax(dim=1),
        "guided backprop": saliency.guided_backprop(net, x, t).abs().amax(dim=1),
        "deconvnet": saliency.deconvnet(net, x, t).abs().amax(dim=1),
        "SmoothGrad": saliency.smoothgrad(net, x, t, samples=3, seed=2, progress=False).abs().amax(dim=1),
        "CAM": cam.cam(net, x, t).maps,
        "Grad-CAM": cam.grad_cam(net, x, t).maps,
        "Guided Grad-CAM": cam.guided_grad_cam(net, x, t).abs().amax(dim=1),
        **{v: cam.grad_cam(net, x, t, variant=v).maps for v in ("Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM")},
        "Score-CAM": gradient_free.score_cam(net, x, t, "features.relu5", progress=False),
        "Ablation-CAM": gradient_free.ablation_cam(net, x, t, "features.relu5", progress=False),
        "Eigen-CAM": gradient_free.eigen_cam(net, x, t, "features.relu5"),
        "Input × Gradient": saliency.input_x_gradient(net, x, t).abs().amax(dim=1),
        "Integrated Gradients": saliency.integrated_gradients(net, x, t, steps=4, progress=False).abs().amax(dim=1),
        "Occlusion": gradient_free.occlusion(net, x, t, window=8, progress=False),
    }
    assert list(expected) == list(METHODS)
    options = {"SmoothGrad": {"samples": 3, "seed": 2}, "Integrated Gradients": {"steps": 4},
               "Occlusion": {"window": 8}}
    for name, want in expected.items():
        opts = {**options.get(name, {}), "progress": False} if METHODS[name].many_passes else {}
        torch.testing.assert_close(explain(net, x, name, t, **opts), want, rtol=0, atol=0, msg=name)
    # a layer given by name or module is the one used; options reach the method
    torch.testing.assert_close(explain(net, x, "Grad-CAM", t, layer=net.features.relu3),
                               cam.grad_cam(net, x, t, layer="features.relu3").maps)
    torch.testing.assert_close(explain(net, x, "Grad-CAM", t, layer="features.relu4", rule="guided"),
                               cam.grad_cam(net, x, t, layer="features.relu4", rule="guided").maps)


def test_default_layers_come_from_the_record():
    net = CourseNet()
    assert method_layer(net, "Grad-CAM") == MODELS["course"].blocks[-1] == "features.relu5"
    assert method_layer(net, "CAM") == MODELS["course"].cam_layer
    assert method_layer(net, "vanilla gradient") is None
    assert method_layer(net, "Grad-CAM", net.features.relu2) == "features.relu2"
    with pytest.raises(ValueError, match="vanilla gradient explains the input, at no layer"):
        method_layer(net, "vanilla gradient", "features.relu2")
    vgg = MODELS["vgg16"].build()
    with pytest.raises(ValueError, match="CAM does not apply to vgg16: fully connected layers"):
        method_layer(vgg, "CAM")
    assert method_layer(vgg, "Grad-CAM") == "features.29"
    with pytest.raises(ValueError, match="Sequential is not one of the course's models"):
        method_layer(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3)), "Grad-CAM")


def _every_map_from_one_pass(ex, passes) -> None:
    assert passes.calls == 0  # nothing runs before it is asked
    for c in (0, 4):
        for layer in MODELS["course"].blocks:
            assert ex("Grad-CAM", c, layer).shape[0] == 2
        ex("CAM", c)
    assert passes.calls == 1  # one kept pass: five layers, two classes, CAM too


def test_the_explainer_runs_one_forward_pass_for_every_map_and_reuses_gradients(net, x):
    ex = Explainer(net, x)
    with ForwardCounter(net) as passes:
        _every_map_from_one_pass(ex, passes)
        guided = ex("guided backprop", 4)
        assert passes.calls == 2
        ggc = ex("Guided Grad-CAM", 4, "features.relu4")
        assert passes.calls == 2  # the guided gradient and the kept pass are reused
        ex("guided backprop", 3)  # another class: a pass of its own
        assert passes.calls == 3
        ex("vanilla gradient", [1, 2])
        assert torch.equal(ex("vanilla gradient", [1, 2]), ex("vanilla gradient", (1, 2)))
        assert passes.calls == 4  # a list, a tuple: the same classes, kept
        top = ex.logits.argmax(dim=1).tolist()
        assert torch.equal(ex("deconvnet"), ex("deconvnet", top))  # None is each image's top class
        assert passes.calls == 5
        ex("deconvnet", lambda z: z[:, 0])
        ex("deconvnet", lambda z: z[:, 0])
        assert passes.calls == 7  # a function of the logits is not kept
    one = Explainer(net, x[:1])
    with ForwardCounter(net) as passes:
        first = one("vanilla gradient")  # the first pass gives the logits: the top class is known after it
        assert torch.equal(one("vanilla gradient", int(one.logits.argmax())), first) and passes.calls == 1
    torch.testing.assert_close(ggc, cam.guided_grad_cam(net, x, 4, layer="features.relu4"), rtol=0, atol=0)
    torch.testing.assert_close(guided, saliency.guided_backprop(net, x, 4), rtol=0, atol=0)
    with pytest.raises(ValueError, match="was not captured"):
        Explainer(net, x, ["features.relu2"])("Grad-CAM", 0, "features.relu3")


def test_with_to_input_every_input_gradient_comes_from_the_kept_pass(net, x):
    ex = Explainer(net, x, to_input=True)
    with ForwardCounter(net) as passes:
        _every_map_from_one_pass(ex, passes)
        guided = ex("guided backprop", 4)  # from the kept pass, which reaches the input
        ggc = ex("Guided Grad-CAM", 4, "features.relu4")  # the guided gradient and the kept pass again
        ex("guided backprop", 3)
        ex("vanilla gradient", [1, 2])
        assert torch.equal(ex("vanilla gradient", [1, 2]), ex("vanilla gradient", (1, 2)))  # kept, by class
        top = ex.logits.argmax(dim=1).tolist()
        assert torch.equal(ex("deconvnet"), ex("deconvnet", top))  # None is each image's top class
        ex("deconvnet", lambda z: z[:, 0])
        assert passes.calls == 1 and len(ex._gradients) == 4  # a function of the logits is not kept
    one = Explainer(net, x[:1], to_input=True)
    with ForwardCounter(net) as passes:
        first = one("vanilla gradient")  # no kept pass yet: a pass of its own, which gives the logits
        assert torch.equal(one("vanilla gradient", int(one.logits.argmax())), first) and passes.calls == 1
        one("guided backprop")
        assert passes.calls == 2
        one("Grad-CAM")  # the kept pass runs now; gradients come from it from then on
        one("deconvnet")
        assert passes.calls == 3
    torch.testing.assert_close(ggc, cam.guided_grad_cam(net, x, 4, layer="features.relu4"), rtol=0, atol=0)
    torch.testing.assert_close(guided, saliency.guided_backprop(net, x, 4), rtol=0, atol=0)
    with pytest.raises(ValueError, match="was not captured"):
        Explainer(net, x, ["features.relu2"])("Grad-CAM", 0, "features.relu3")


def test_prefetch_gives_every_rule_from_one_forward_pass_and_the_same_gradients(net, x):
    ex = Explainer(net, x)
    with ForwardCounter(net) as passes:
        ex.prefetch(["Grad-CAM", "vanilla gradient", "guided backprop", "deconvnet", "Guided Grad-CAM"], 2)
        assert passes.calls == 1
        got = {name: ex(name, 2) for name in ("vanilla gradient", "guided backprop", "deconvnet")}
        ex.prefetch(["guided backprop", "CAM"], 2)  # kept: nothing runs
        ex.prefetch(["Grad-CAM", "CAM"], 3)  # no input gradient among them: nothing runs
        assert passes.calls == 1
        ex.gradients(["guided", "plain"], 3)  # a new class: one pass for both rules
        assert passes.calls == 2
    for name, f in [("vanilla gradient", saliency.vanilla_gradient), ("guided backprop", saliency.guided_backprop),
                    ("deconvnet", saliency.deconvnet)]:
        torch.testing.assert_close(got[name], f(net, x, 2), rtol=0, atol=0)
    assert not torch.equal(got["guided backprop"], got["vanilla gradient"])
    assert not torch.equal(got["deconvnet"], got["guided backprop"])
    assert [m for m, method in METHODS.items() if method.rule] == [
        "vanilla gradient", "guided backprop", "deconvnet", "Guided Grad-CAM", "Input × Gradient"]


def test_the_model_is_handed_back_unchanged_even_when_a_method_fails(net, x):
    net.train()
    net.fc.weight.requires_grad_(False)
    before = model_state(net)
    ex = Explainer(net, x)
    for name in METHODS:
        opts = {"samples": 2, "progress": False} if name == "SmoothGrad" else {}
        ex(name, 1, **opts)
    with pytest.raises(ValueError, match="no ReLU runs after layer 'features.relu5'"):
        ex("Grad-CAM", 1, rule="guided")
    with pytest.raises(ValueError, match="out of range"):
        ex("vanilla gradient", 9)
    assert_same_state(before, model_state(net))
    assert all_hooks(net) == 0


def test_forget_drops_the_kept_gradients_but_not_the_kept_pass(net, x):
    ex = Explainer(net, x)
    ex("Grad-CAM", 1)
    first = ex("guided backprop", 1)
    with ForwardCounter(net) as passes:
        ex.forget()
        assert torch.equal(ex("guided backprop", 1), first) and passes.calls == 1  # computed again
        ex("Grad-CAM", 2)
        assert passes.calls == 1  # the kept pass stayed


def test_forget_with_to_input_recomputes_from_the_kept_pass(net, x):
    ex = Explainer(net, x, to_input=True)
    ex("Grad-CAM", 1)
    first = ex("guided backprop", 1)
    with ForwardCounter(net) as passes:
        ex.forget()
        assert ex._gradients == {}
        assert torch.equal(ex("guided backprop", 1), first) and len(ex._gradients) == 1  # computed again
        ex("Grad-CAM", 2)
        assert passes.calls == 0  # from the kept pass, which stayed
