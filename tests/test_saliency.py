"""Saliency maps and the three ReLU backward rules (lesson 04)."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from course_utils.coursenet import CourseNet
from course_utils.hooks import RELU_RULES, relu_rule
from course_utils.saliency import (
    DISPLAYS,
    deconvnet,
    guided_backprop,
    input_gradient,
    input_gradients,
    saliency_map,
    smoothgrad,
    vanilla_gradient,
)
from tests.conftest import all_hooks, assert_each_change_redraws, assert_same_state, ForwardCounter, model_state


def close(a, b, rel=1e-4):
    """Equal up to rounding, relative to the size of b (random models give tiny gradients)."""
    assert b.abs().max() > 0, "comparing against an all-zero gradient proves nothing"
    return torch.allclose(a, b, rtol=rel, atol=rel * b.abs().max().item())


# --- one conv, one ReLU: every answer written out by hand ----------------------------
#
#   x = 2 1 0     w =  1 -1     z = conv(x, w) = 2  3    (z_ij = x_ij - x_i,j+1 - x_i+1,j + x_i+1,j+1)
#       0 1 3         -1  1                     -2 -1
#       1 0 1
#
#   logit = v . relu(z) with v = 1 -1   (the fc weights, flattened row by row)
#                                1 -1
#
# The gradient reaching the ReLU output is v. Each rule passes back to z:
#   plain     v * (z > 0)           =  1 -1      deconvnet  v * (v > 0) = 1 0     guided  both = 1 0
#                                      0  0                               1 0                    0 0
# and the conv spreads each entry back over its 2x2 window, times w:

X = [[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 1.0]]
EXPECTED = {
    "plain": [[1.0, -2.0, 1.0], [-1.0, 2.0, -1.0], [0.0, 0.0, 0.0]],
    "deconvnet": [[1.0, -1.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]],
    "guided": [[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
}


class FunctionalReLU(nn.Module):
    """The same network with a functional ReLU call instead of a module."""

    def __init__(self, conv, fc, inplace):
        super().__init__()
        self.conv, self.fc, self.inplace = conv, fc, inplace

    def forward(self, x):
        z = self.conv(x)
        z = F.relu(z, inplace=True) if self.inplace else z.relu()
        return self.fc(z.flatten(1))


def one_conv_one_relu(kind="module"):
    conv = nn.Conv2d(1, 1, 2, bias=False)
    fc = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, -1.0], [-1.0, 1.0]]]]))
        fc.weight.copy_(torch.tensor([[1.0, -1.0, 1.0, -1.0]]))
    if kind == "module":
        return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), fc)
    if kind == "inplace module":
        return nn.Sequential(conv, nn.ReLU(inplace=True), nn.Flatten(), fc)
    return FunctionalReLU(conv, fc, inplace=kind == "F.relu inplace")


@pytest.mark.parametrize("kind", ["module", "inplace module", "x.relu()", "F.relu inplace"])
@pytest.mark.parametrize("rule", list(RELU_RULES))
def test_each_rule_gives_the_hand_computed_gradient(rule, kind):
    model = one_conv_one_relu(kind)
    x = torch.tensor(X).view(1, 1, 3, 3)
    logits, grad = input_gradient(model, x, target=0, rule=rule)
    assert logits.item() == pytest.approx(2 - 3)  # v . relu(z) = 1*2 - 1*3
    assert grad.view(3, 3).tolist() == EXPECTED[rule]


def test_named_functions_match_the_rules():
    model = one_conv_one_relu()
    x = torch.tensor(X).view(1, 1, 3, 3)
    assert vanilla_gradient(model, x, 0).view(3, 3).tolist() == EXPECTED["plain"]
    assert guided_backprop(model, x, 0).view(3, 3).tolist() == EXPECTED["guided"]
    assert deconvnet(model, x, 0).view(3, 3).tolist() == EXPECTED["deconvnet"]


def test_the_relu_rule_leaves_the_forward_pass_alone():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
    for rule in RELU_RULES:
        with relu_rule(rule):
            y = F.relu(x)
            y2 = x.clone()
            torch.relu_(y2)
        assert y.tolist() == [0.0, 0.0, 0.0, 0.5, 2.0]
        assert torch.equal(y2, y)


def test_one_dimensional_toy_numbers():
    """The lesson's 1-D table: the same incoming gradient, three rules."""
    x = torch.tensor([-2.0, -1.0, 1.0, 2.0], requires_grad=True)
    g = torch.tensor([1.0, -1.0, 1.0, -1.0])
    out = {}
    for rule in RELU_RULES:
        with relu_rule(rule):
            y = torch.relu(x)
        (out[rule],) = torch.autograd.grad(y, x, g)
    assert out["plain"].tolist() == [0.0, 0.0, 1.0, -1.0]
    assert out["deconvnet"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert out["guided"].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_the_rule_is_read_when_the_gradient_is_taken():
    """One forward pass, three backward passes: each follows the rule mode.rule holds then. By hand:
    a ReLU6 passes a gradient where 0 < x < 6 (only at x = 2 of [-1, 0, 2, 7]); g = [1, 1, -1, 1]."""
    x = torch.tensor([-1.0, 0.0, 2.0, 7.0], requires_grad=True)
    g = torch.tensor([1.0, 1.0, -1.0, 1.0])
    with relu_rule("plain") as mode:
        y = F.relu6(x)
    out = {}
    for rule in ("guided", "plain", "deconvnet"):
        mode.rule = rule
        (out[rule],) = torch.autograd.grad(y, x, g, retain_graph=True)
    assert out["plain"].tolist() == [0.0, 0.0, -1.0, 0.0]  # 0 < x < 6 only at x = 2
    assert out["guided"].tolist() == [0.0, 0.0, 0.0, 0.0]  # ... and g > 0 there: no
    assert out["deconvnet"].tolist() == [1.0, 1.0, 0.0, 1.0]  # g > 0, whatever x
    with pytest.raises(ValueError, match="unknown ReLU rule 'up'"):
        mode.rule = "up"


def test_input_gradients_gives_each_rule_from_one_forward_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(), nn.Conv2d(4, 4, 3), nn.ReLU(inplace=True),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(2, 3, 7, 9)  # not square
    before = model_state(model)
    with ForwardCounter(model) as passes:
        logits, grads = input_gradients(model, x, [2, 1])
        assert passes.calls == 1 and list(grads) == ["plain", "guided", "deconvnet"]
    for rule, grad in grads.items():
        one_logits, one = input_gradient(model, x, [2, 1], rule)
        torch.testing.assert_close(grad, one, rtol=0, atol=0)
        torch.testing.assert_close(logits, one_logits, rtol=0, atol=0)
    assert not torch.equal(grads["plain"], grads["guided"]) and not torch.equal(grads["guided"], grads["deconvnet"])
    assert list(input_gradients(model, x, 0, ["deconvnet", "plain", "deconvnet"])[1]) == ["deconvnet", "plain"]
    with pytest.raises(ValueError, match="no ReLU rule given"):
        input_gradients(model, x, 0, [])
    with pytest.raises(ValueError, match=r"unknown ReLU rule\(s\) \['Guided'\]"):
        input_gradients(model, x, 0, ["plain", "Guided"])
    with pytest.raises(ValueError, match="out of range"):  # fails after the forward pass
        input_gradients(model, x, 7)
    assert_same_state(before, model_state(model))
    assert all_hooks(model) == 0
    linear = nn.Sequential(nn.Flatten(), nn.Linear(27, 2))
    assert list(input_gradients(linear, torch.zeros(1, 3, 3, 3), 0, ["plain"])[1]) == ["plain"]  # no ReLU needed
    with pytest.raises(ValueError, match="the deconvnet rule changes how ReLUs pass gradients back"):
        input_gradients(linear, torch.zeros(1, 3, 3, 3), 0, ["plain", "deconvnet"])


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="unknown ReLU rule 'backwards'.*plain"):
        with relu_rule("backwards"):
            pass
    with pytest.raises(ValueError, match="unknown ReLU rule"):
        input_gradient(one_conv_one_relu(), torch.zeros(1, 1, 3, 3), 0, rule="Guided")


def test_a_model_without_relu_cannot_be_guided():
    model = nn.Sequential(nn.Conv2d(1, 1, 2), nn.Flatten(), nn.Linear(4, 2))
    x = torch.randn(1, 1, 3, 3)
    assert vanilla_gradient(model, x, 1).shape == x.shape  # plain works
    with pytest.raises(ValueError, match="no ReLU ran"):
        guided_backprop(model, x, 1)


# --- the vanilla gradient is the gradient -------------------------------------------


def test_vanilla_gradient_agrees_with_finite_differences():
    torch.manual_seed(0)
    model = CourseNet(width=4).double().eval()
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    grad = vanilla_gradient(model, x, target=2)
    eps = 1e-6
    numeric = torch.zeros_like(x)
    with torch.no_grad():
        for i in range(x.numel()):
            d = torch.zeros(x.numel(), dtype=x.dtype)
            d[i] = eps
            d = d.view_as(x)
            numeric.view(-1)[i] = (model(x + d)[0, 2] - model(x - d)[0, 2]) / (2 * eps)
    assert grad.abs().max() > 1e-5  # a gradient worth checking
    assert close(grad, numeric, rel=1e-5), (grad - numeric).abs().max()


def test_batches_with_one_target_per_image():
    torch.manual_seed(0)
    model = CourseNet().eval()
    x = torch.randn(3, 3, 32, 32)
    targets = [4, 0, 2]
    batch = guided_backprop(model, x, targets)
    for i, t in enumerate(targets):
        alone = guided_backprop(model, x[i:i + 1], t)
        assert close(batch[i], alone[0])
    top = model(x).argmax(1).tolist()
    assert torch.equal(vanilla_gradient(model, x, None), vanilla_gradient(model, x, top))


def test_works_under_no_grad_and_on_a_frozen_model():
    torch.manual_seed(0)
    model = CourseNet().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        g = guided_backprop(model, x, 1)
    assert g.abs().sum() > 0
    assert all(not p.requires_grad for p in model.parameters())


SALIENCY_METHODS = {
    "input_gradient": lambda m, x, t: input_gradient(m, x, t, "deconvnet")[1],
    "vanilla_gradient": vanilla_gradient,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "smoothgrad": lambda m, x, t: smoothgrad(m, x, t, rule="guided", samples=3, batch_size=2, progress=False),
}


@pytest.mark.parametrize("mode", ["no_grad", "set_grad_enabled(False)"])
def test_every_method_works_with_gradients_switched_off(mode):
    """Pinned: as after a notebook cell that switched gradients off. Same results, mode left as it was."""
    torch.manual_seed(0)
    model = CourseNet().eval()
    x = torch.randn(2, 3, 32, 32)
    expected = {name: f(model, x, [1, 4]) for name, f in SALIENCY_METHODS.items()}
    switch_off = torch.no_grad() if mode == "no_grad" else _grad_mode_off()
    with switch_off:
        got = {name: f(model, x, [1, 4]) for name, f in SALIENCY_METHODS.items()}
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    for name in SALIENCY_METHODS:
        assert expected[name].abs().sum() > 0 and torch.equal(got[name], expected[name]), name


class _grad_mode_off:
    """torch.set_grad_enabled(False) as a notebook cell leaves it, switched back on after the test."""

    def __enter__(self):
        torch.set_grad_enabled(False)

    def __exit__(self, *exc):
        torch.set_grad_enabled(True)


@pytest.mark.parametrize("name", list(SALIENCY_METHODS))
def test_every_method_refuses_inference_mode_with_one_message(name):
    model = one_conv_one_relu()
    with torch.inference_mode():
        with pytest.raises(RuntimeError) as err:
            SALIENCY_METHODS[name](model, torch.tensor(X).view(1, 1, 3, 3), 0)
    assert str(err.value) == (f"{name} cannot take gradients inside torch.inference_mode(): "
                              "run it outside that block (torch.no_grad() is fine)")
    assert all_hooks(model) == 0


# --- torchvision ResNets: in-place ReLUs, one ReLU module used several times ------------


class _HookedRule(torch.autograd.Function):
    """An independent reference: the rule applied by forward hooks on ReLU modules."""

    @staticmethod
    def forward(ctx, x, rule):
        ctx.rule = rule
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.rule == "deconvnet":
            return g.clamp(min=0), None
        if ctx.rule == "guided":
            g = g.clamp(min=0)
        return g * (x > 0), None


def reference_gradient(model, x, target, rule):
    """Deep copy, every ReLU made out-of-place, then a hook per ReLU call swaps in the rule.
    (A hook fires on every call, so a reused module is handled call by call.)"""
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
            m.register_forward_hook(lambda mod, inp, out: _HookedRule.apply(inp[0], rule))
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ref(xg)[0, target], xg)
    return g


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_resnet_in_place_and_reused_relus_follow_the_rule(arch, rule):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    assert model.layer1[0].relu.inplace  # torchvision's ReLUs are in place ...
    x = torch.randn(1, 3, 64, 64)
    expected = reference_gradient(model, x, 7, rule)
    before = model_state(model)
    with relu_rule(rule) as mode:
        _, got = input_gradient(model, x, 7, rule)
    # ... and each block calls its one ReLU module two (BasicBlock) or three (Bottleneck) times
    n_blocks = sum(len(getattr(model, f"layer{i}")) for i in range(1, 5))
    per_block = 2 if arch == "resnet18" else 3
    assert mode.calls == 0  # the outer block saw nothing: input_gradient ran its own
    assert close(got, expected)
    assert not close(got, vanilla_gradient(model, x, 7), rel=0.01)
    assert_same_state(before, model_state(model))
    with relu_rule(rule) as mode:
        model(x)
    assert mode.calls == 1 + per_block * n_blocks


def test_plain_rule_is_ordinary_autograd_on_a_resnet(resnet18_random):
    x = torch.randn(2, 3, 64, 64)
    xg = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(resnet18_random(xg)[:, 3].sum(), xg)
    assert torch.equal(input_gradient(resnet18_random, x, 3, "plain")[1], expected)


def _fails_half_way(model, x):
    """A forward pass that raises inside the model, after some ReLUs have run."""
    def boom(*args):
        raise RuntimeError("boom")
    handle = model.layer3.register_forward_hook(boom)
    try:
        guided_backprop(model, x, 0)
    finally:
        handle.remove()


@pytest.mark.parametrize("call", [
    lambda m, x: guided_backprop(m, x, 0),
    lambda m, x: smoothgrad(m, x, 0, rule="deconvnet", samples=3, progress=False),
    lambda m, x: guided_backprop(m, x, 1000),          # class out of range: after the forward pass
    lambda m, x: guided_backprop(m, x[:, :2], 0),      # two channels: the first conv fails
    _fails_half_way,
], ids=["normal", "smoothgrad", "bad class", "bad input", "error inside"])
def test_resnet_comes_back_unchanged(call, resnet18_random):
    model = resnet18_random
    model.train()  # a training-mode model must come back in training mode
    model.layer2[0].relu.inplace = False  # a flag the caller set must survive
    before = model_state(model)
    x = torch.randn(1, 3, 64, 64)
    try:
        call(model, x)
    except (ValueError, RuntimeError):
        pass
    assert_same_state(before, model_state(model))
    assert all_hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())
    # and no rule is left active: a plain gradient outside is ordinary autograd again
    z = torch.randn(5, requires_grad=True)
    (g,) = torch.autograd.grad(torch.relu(z), z, -torch.ones(5))
    assert g.tolist() == [-1.0 if v > 0 else 0.0 for v in z.tolist()]


def test_class_out_of_range_says_the_range(resnet18_random):
    with pytest.raises(ValueError, match=r"class index 1000 is out of range.*0\.\.999"):
        vanilla_gradient(resnet18_random, torch.randn(1, 3, 32, 32), 1000)


@pytest.mark.parametrize("target", [-1, 6])
@pytest.mark.parametrize("method", ["smoothgrad", "grad_cam", "vanilla_gradient", "guided_backprop", "cam"])
def test_a_class_out_of_range_states_the_real_range_for_every_method(method, target, course_random):
    from course_utils import cam

    call = {
        "smoothgrad": lambda m, x, t: smoothgrad(m, x, t, samples=2, progress=False),
        "grad_cam": cam.grad_cam,
        "vanilla_gradient": vanilla_gradient,
        "guided_backprop": guided_backprop,
        "cam": cam.cam,
    }[method]
    with pytest.raises(ValueError) as err:
        call(course_random, torch.randn(1, 3, 32, 32), target)
    hint = " (a negative index does not count from the end)" if target < 0 else ""
    assert str(err.value) == f"class index {target} is out of range: this model has classes 0..5{hint}"


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(3, 8, 8), r"batch of images \(N, C, H, W\).*unsqueeze"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "floating point"),
    ([[0.0]], r"float batch of images \(N, C, H, W\), got list"),
])
def test_bad_inputs_are_named(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        vanilla_gradient(CourseNet(), bad, 0)


# --- SmoothGrad --------------------------------------------------------------------------


@pytest.fixture
def course_random():
    torch.manual_seed(0)
    return CourseNet().eval()


def test_smoothgrad_without_noise_is_the_gradient(course_random):
    x = torch.randn(2, 3, 32, 32)
    sg = smoothgrad(course_random, x, [1, 4], noise=0.0, samples=4, progress=False)
    assert close(sg, vanilla_gradient(course_random, x, [1, 4]))


def test_smoothgrad_is_seeded_and_batch_size_does_not_matter(course_random):
    x = torch.randn(2, 3, 32, 32)
    a = smoothgrad(course_random, x, None, samples=10, batch_size=20, seed=3, progress=False)
    b = smoothgrad(course_random, x, None, samples=10, batch_size=3, seed=3, progress=False)
    c = smoothgrad(course_random, x, None, samples=10, seed=4, progress=False)
    assert close(a, b)
    assert not close(a, c, rel=0.01)


def test_smoothgrad_is_the_mean_over_the_documented_noisy_copies(course_random):
    """Rebuild it by hand from the docstring's recipe (the lesson's exercise)."""
    x = torch.randn(1, 3, 32, 32)
    noise, samples = 0.2, 6
    gen = torch.Generator().manual_seed(0)
    sigma = noise * (x.max() - x.min())
    z = torch.randn((1, samples, 3, 32, 32), generator=gen)[0]
    target = course_random(x).argmax().item()
    by_hand = torch.stack([vanilla_gradient(course_random, x + sigma * z[s:s + 1], target)[0]
                           for s in range(samples)]).mean(0)
    sg = smoothgrad(course_random, x, None, noise=noise, samples=samples, progress=False)
    assert close(sg[0], by_hand)


def test_smoothgrad_keeps_the_clean_images_top_class(course_random):
    x = torch.randn(1, 3, 32, 32)
    top = course_random(x).argmax().item()
    a = smoothgrad(course_random, x, None, noise=1.0, samples=8, progress=False)
    b = smoothgrad(course_random, x, top, noise=1.0, samples=8, progress=False)
    assert torch.equal(a, b)


def test_smoothgrad_runs_the_clean_image_only_to_find_its_top_class(course_random):
    x = torch.randn(2, 3, 32, 32)
    with ForwardCounter(course_random) as counter:
        smoothgrad(course_random, x, [1, 4], samples=5, batch_size=4, progress=False)
        assert counter.calls == 3  # 10 noisy copies in batches of 4
        smoothgrad(course_random, x, None, samples=5, batch_size=4, progress=False)
        assert counter.calls == 3 + 1 + 3
    with pytest.raises(ValueError, match="class index 6 is out of range"):
        smoothgrad(course_random, x, 6, samples=2, progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"noise": -0.1}, "noise"), ({"samples": 0}, "samples"), ({"batch_size": 0}, "batch_size"),
])
def test_smoothgrad_bad_options(course_random, kwargs, message):
    with pytest.raises(ValueError, match=message):
        smoothgrad(course_random, torch.randn(1, 3, 16, 16), 0, progress=False, **kwargs)


# --- what is shown -----------------------------------------------------------------------


def test_saliency_map_displays_by_hand():
    g = torch.zeros(1, 3, 1, 2)
    g[0, :, 0, 0] = torch.tensor([-4.0, 1.0, 2.0])   # pixel 0: abs max 4, positive max 2, sum -1
    g[0, :, 0, 1] = torch.tensor([1.0, 1.0, 0.0])    # pixel 1: abs max 1, positive max 1, sum 2
    assert saliency_map(g, "abs", percentile=100).tolist() == [[[1.0, 0.25]]]
    assert saliency_map(g, "positive", percentile=100).tolist() == [[[1.0, 0.5]]]
    assert saliency_map(g, "signed", percentile=100).tolist() == [[[-0.5, 1.0]]]
    rgb = saliency_map(g, "rgb", percentile=100)
    assert rgb.shape == (1, 1, 2, 3)
    assert rgb[0, 0, 0].tolist() == [0.0, 0.625, 0.75]  # 0.5 + 0.5 * g / 4


def test_saliency_map_percentile_clips_outliers():
    g = torch.ones(1, 3, 20, 20)
    g[0, 0, 0, 0] = 100.0  # one extreme pixel in 400: the 99th percentile is still 1
    m = saliency_map(g, "abs", percentile=99)
    assert m[0, 0, 0] == 1.0 and m[0, 5, 5] == 1.0  # the rest is not left black
    assert saliency_map(g, "abs", percentile=100)[0, 5, 5] == pytest.approx(0.01)


def test_saliency_map_flat_maps_are_zero_never_nan():
    for display in DISPLAYS:
        m = saliency_map(torch.zeros(2, 3, 4, 4), display)
        assert not torch.isnan(m).any()
        assert torch.all(m == (0.5 if display == "rgb" else 0.0))


def test_saliency_map_shared_scale_keeps_magnitudes():
    g = torch.stack([torch.ones(3, 2, 2), 4 * torch.ones(3, 2, 2)])
    assert saliency_map(g, "abs").amax(dim=(1, 2)).tolist() == [1.0, 1.0]
    assert saliency_map(g, "abs", shared=True).amax(dim=(1, 2)).tolist() == [0.25, 1.0]
    assert saliency_map(g[0], "abs").shape == (2, 2)


def test_saliency_map_bad_options():
    with pytest.raises(ValueError, match="unknown display 'heat'"):
        saliency_map(torch.zeros(1, 3, 2, 2), "heat")
    with pytest.raises(ValueError, match="percentile"):
        saliency_map(torch.zeros(1, 3, 2, 2), percentile=0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        saliency_map(torch.zeros(2, 2))


# --- the explorer ------------------------------------------------------------------------


@pytest.fixture
def explorer(empty_torch_home):
    from course_utils.widgets import SaliencyExplorer

    return SaliencyExplorer()


def test_explorer_lists_every_course_class_with_its_probability(explorer):
    options = explorer.controls["target"].options
    assert len(options) == 6 and sorted(c for _, c in options) == list(range(6))
    probs = [float(label.rsplit("(", 1)[1].rstrip(")")) for label, _ in options]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=0.03)
    assert explorer.controls["target"].value == options[0][1]  # the top class first
    assert explorer.renders == 1 and explorer.message.value == ""


def test_explorer_redraws_once_per_control_and_the_picture_changes(explorer):
    assert_each_change_redraws(explorer, [("method", "guided backprop"), ("display", "signed"), ("alpha", 0.2),
                        ("target", 3), ("method", "SmoothGrad"), ("display", "rgb"), ("method", "deconvnet"),
                        ("image", "two objects 0")])


def test_a_new_image_selects_its_top_class(explorer):
    from course_utils.scenes import CLASSES

    explorer.controls["image"].value = "scene 3"  # a star
    label, top = explorer.controls["target"].options[0]
    assert explorer.controls["target"].value == top and label.startswith(CLASSES[top])
    assert CLASSES[top] == "star"


def test_only_a_new_image_class_or_method_runs_the_model(explorer):
    from course_utils.widgets import cached_model

    model = cached_model("course").model
    with ForwardCounter(model) as counter:
        explorer.controls["display"].value = "positive"
        explorer.controls["alpha"].value = 0.9
        assert counter.calls == 0
        explorer.controls["method"].value = "guided backprop"
        assert counter.calls == 1  # one forward (and backward) pass for the new gradient
        explorer.controls["method"].value = "vanilla gradient"  # seen before: cached
        explorer.controls["display"].value = "abs"
        assert counter.calls == 1
        explorer.controls["image"].value = "scene 2"
        assert counter.calls == 2  # one pass: the class list and the top class's gradient
        explorer.controls["method"].value = "guided backprop"
        explorer.controls["image"].value = "scene 3"
        assert counter.calls == 4  # guided for scene 2's top class; then scene 3 in one guided pass
        x, top = explorer.prepared().x, explorer.target()[0]
        assert torch.equal(explorer.gradient(), guided_backprop(model, x, top)[0])
        assert counter.calls == 5  # (the reference above)
    assert all_hooks(model) == 0 and all(p.grad is None for p in model.parameters())


def test_explorer_offers_imagenet_models_when_present(imagenet_cache):
    from course_utils.widgets import SaliencyExplorer

    ex = SaliencyExplorer(k=4)
    assert ex.controls["model"].options == ("course", "efficientnet_lite0", "resnet18", "resnet50", "vgg16")
    ex.controls["image"].value = "photo: coffee"
    ex.controls["model"].value = "resnet18"
    assert ex.message.value == "" and len(ex.controls["target"].options) == 4
    assert ex.controls["target"].value == ex.controls["target"].options[0][1]


# --- pinned by mutation testing ---


def test_smoothgrad_defaults_are_15_percent_noise_and_25_copies_in_one_batch(course_random):
    x = torch.randn(1, 3, 32, 32)
    with ForwardCounter(course_random) as counter:
        default = smoothgrad(course_random, x, 3, progress=False)
        assert counter.calls == 1  # 25 copies, batches of 25
    explicit = smoothgrad(course_random, x, 3, noise=0.15, samples=25, batch_size=25, progress=False)
    assert torch.equal(default, explicit)


def test_smoothgrad_shows_a_progress_bar_over_its_batches_by_default(course_random, capsys):
    x = torch.randn(1, 3, 16, 16)
    one_by_one = smoothgrad(course_random, x, 2, samples=3, batch_size=1)  # batches of one copy are fine
    err = capsys.readouterr().err
    assert "SmoothGrad (3 samples)" in err and "3/3" in err  # every batch counted
    at_once = smoothgrad(course_random, x, 2, samples=3, batch_size=3, progress=False)
    assert capsys.readouterr() == ("", "")
    assert close(one_by_one, at_once)


def test_saliency_map_divides_by_the_given_percentile_of_the_magnitudes():
    g = torch.arange(101.0).view(1, 1, 1, 101)  # magnitudes 0, 1, ..., 100: the p-th percentile is p
    m = saliency_map(g, "abs", percentile=50)[0, 0]
    assert m[25].item() == 0.5 and m[50].item() == 1.0 and m[100].item() == 1.0
    m = saliency_map(-g, "signed", percentile=50)[0, 0]
    assert m[25].item() == -0.5 and m[100].item() == -1.0
    m = saliency_map(g, "abs")[0, 0]  # by default the 99th percentile
    assert m[33].item() == pytest.approx(1 / 3) and m[99].item() == pytest.approx(1.0)
