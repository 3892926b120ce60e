"""The exercise checks of lessons 04-06 and lesson 04's unit projection.

For every exercise: the solution (as in notebooks/solutions/) gets "✓", and a plausible wrong
answer, the mistake a student would really make, gets "✗" with a message naming it. The
functions and classes are called by the checks on inputs the lessons do not show.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_utils import cam as cam_module
from course_utils import checks, saliency
from course_utils.cam import GradCAM, grad_cam
from course_utils.hooks import capture
from course_utils.models import load_model
from course_utils.scenes import CLASSES, make_scene
from tests.conftest import all_hooks, assert_same_state, model_state


@pytest.fixture(scope="module")
def course():
    return load_model("course")


@pytest.fixture(scope="module")
def six(course):
    """Lesson 04's six scenes, scene k showing class k."""
    scenes = [make_scene(seed=1, index=3 + k, classes=[c]) for k, c in enumerate(CLASSES)]
    return course.batch([s.image for s in scenes])


def said(capsys) -> str:
    """What a check printed: exactly one line."""
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- lesson 04, exercise 1: DeconvReLU ---


def make_relu_function(backward_rule, forward=lambda x: x.clamp(min=0)):
    class StudentReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, rule):
            ctx.save_for_backward(x)
            return forward(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return backward_rule(x, g), None

    return StudentReLU


DECONV = make_relu_function(lambda x, g: torch.where(g > 0, g, 0.0))  # the solution


def hooked_gradient(model, x, targets, relu_function):
    """The lesson's gradient_with_rule: forward hooks make every nn.ReLU run ``relu_function``."""
    handles = [m.register_forward_hook(lambda module, inputs, output: relu_function.apply(inputs[0], "deconvnet"))
               for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        xg = x.clone().requires_grad_(True)
        return torch.autograd.grad(model(xg)[range(len(x)), targets].sum(), xg)[0]
    finally:
        for h in handles:
            h.remove()


def test_deconvnet_solution_passes(course, six, capsys):
    mine = hooked_gradient(course.model, six, list(range(6)), DECONV)
    checks.check_deconvnet(DECONV, mine, course.model, six, list(range(6)))
    assert said(capsys) == "✓ deconvnet: DeconvReLU is right, and your deconvnet matches course_utils"


@pytest.mark.parametrize("rule, words", [
    (lambda x, g: torch.where(x > 0, g, 0.0), "backward gates by the forward input (that is plain backprop)"),
    (lambda x, g: torch.where((x > 0) & (g > 0), g, 0.0), "forward input and the sign (guided backprop)"),
    (lambda x, g: g, "passes every gradient, negative ones too"),
    (lambda x, g: g.abs(), "lets something through where g < 0"),
    (lambda x, g: torch.where(g > 0, 2 * g, 0.0), "changes or blocks positive gradients"),
])
def test_deconv_relu_with_the_wrong_backward_gate_fails_whatever_the_map(course, six, capsys, rule, words):
    """The issue's case: the library's map pasted in, the student's own rule wrong."""
    checks.check_deconvnet(make_relu_function(rule), saliency.deconvnet(course.model, six, list(range(6))),
                           course.model, six, list(range(6)))
    out = said(capsys)
    assert out.startswith("✗ deconvnet: forward is right, but backward") and words in out


def test_deconv_relu_that_is_not_a_relu_going_forward_fails(course, six, capsys):
    checks.check_deconvnet(make_relu_function(lambda x, g: g.clamp(min=0), forward=lambda x: x.clone()),
                           None, course.model, six, 0)
    assert said(capsys) == "✗ deconvnet: forward is not a ReLU: it should give max(x, 0)"


def test_deconv_relu_answers_in_progress(course, six, capsys):
    checks.check_deconvnet(None, saliency.deconvnet(course.model, six, 0), course.model, six, 0)
    checks.check_deconvnet(DECONV, None, course.model, six, 0)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "… deconvnet: not answered yet (replace the None of DeconvReLU)"
    assert out[1].startswith("… deconvnet: forward and backward are right; now compute my_deconvnet")


def test_deconv_relu_whose_backward_returns_one_value_is_reported_not_raised(course, six, capsys):
    class OneValue(DECONV):
        @staticmethod
        def backward(ctx, g):
            return g.clamp(min=0)  # forgot the None for `rule`

    checks.check_deconvnet(OneValue, None, course.model, six, 0)
    assert said(capsys).startswith("✗ deconvnet: your code raised RuntimeError")


def test_deconvnet_map_of_the_plain_gradient_fails(course, six, capsys):
    """A right DeconvReLU but the map computed with the lesson's RuleReLU (plain rule)."""
    plain = saliency.vanilla_gradient(course.model, six, list(range(6)))
    checks.check_deconvnet(DECONV, plain, course.model, six, list(range(6)))
    assert said(capsys).startswith("✗ deconvnet: DeconvReLU is right, and your deconvnet does not match course_utils")


# --- lesson 04, exercise 2: SmoothGrad by hand ---


def smoothgrad_solution(model, x, targets, noise, samples, seed, range_of=lambda x: x.flatten(1)):
    n = len(x)
    gen = torch.Generator().manual_seed(seed)
    sigma = noise * (range_of(x).amax(dim=1) - range_of(x).amin(dim=1))
    z = torch.randn((n, samples, *x.shape[1:]), generator=gen)
    copies = x.unsqueeze(1) + sigma.reshape(-1, 1, 1, 1, 1) * z
    g = saliency.vanilla_gradient(model, copies.flatten(0, 1), [t for t in targets for _ in range(samples)])
    return g.view(n, samples, *x.shape[1:]).mean(dim=1)


def test_smoothgrad_solution_passes(course, capsys):
    checks.check_smoothgrad(smoothgrad_solution, course.model)
    assert said(capsys) == "✓ SmoothGrad: right on two images, classes and settings of the check's own"


@pytest.mark.parametrize("wrong, words", [
    (lambda m, x, t, noise, s, seed: smoothgrad_solution(m, x, t, noise, s, seed, range_of=lambda x: x.reshape(1, -1)),
     "σ should come from each image's own range, not the whole batch's"),
    (lambda m, x, t, noise, s, seed: smoothgrad_solution(m, x, t, noise, s, seed) * s,
     "you summed the copies' gradients: average them"),
    (lambda m, x, t, noise, s, seed: saliency.smoothgrad(m, x, t, noise=noise, samples=s, seed=seed, progress=False),
     "your code calls saliency.smoothgrad, which the exercise asks you to build by hand"),
])
def test_smoothgrad_mistakes_are_named(course, capsys, wrong, words):
    checks.check_smoothgrad(wrong, course.model)
    assert said(capsys) == f"✗ SmoothGrad: {words}"


def test_smoothgrad_noise_not_scaled_by_the_range_is_named(course, capsys):
    def unscaled(model, x, targets, noise, samples, seed):
        gen = torch.Generator().manual_seed(seed)
        copies = x.unsqueeze(1) + noise * torch.randn((len(x), samples, *x.shape[1:]), generator=gen)
        g = saliency.vanilla_gradient(model, copies.flatten(0, 1), [t for t in targets for _ in range(samples)])
        return g.view(len(x), samples, *x.shape[1:]).mean(dim=1)

    checks.check_smoothgrad(unscaled, course.model)
    assert said(capsys) == "✗ SmoothGrad: σ should be noise × (max − min) of each image, not noise alone"


def test_smoothgrad_stub_is_not_answered_and_the_library_is_back_afterwards(course, capsys):
    real = saliency.smoothgrad
    checks.check_smoothgrad(lambda *args: None, course.model)
    assert said(capsys) == "… SmoothGrad: not answered yet (your function returns None)"
    assert saliency.smoothgrad is real


# --- lesson 04, exercise 3: the abs display ---


def abs_display_solution(g):
    m = g.abs().amax(dim=0)
    return (m / torch.quantile(m.flatten(), 0.99)).clamp(0, 1)


def test_abs_display_solution_passes_and_the_hand_case_is_the_librarys(capsys):
    checks.check_abs_display(abs_display_solution)
    assert said(capsys) == "✓ abs display: right on a gradient of the check's own"
    g = torch.randn(3, 10, 10)
    assert torch.allclose(abs_display_solution(g), saliency.saliency_map(g, "abs"))


@pytest.mark.parametrize("wrong, words", [
    (lambda g: g.abs().amax(dim=0) / g.abs().amax(), "you divided by the largest value: divide by the 99th percentile"),
    (lambda g: g.abs().amax(dim=0) / torch.quantile(g.abs().amax(dim=0).flatten(), 0.99), "values above 1"),
    (lambda g: (g.amax(dim=0) / torch.quantile(g.amax(dim=0).flatten(), 0.99)).clamp(0, 1),
     "take |g| before the largest over colours"),
    (lambda g: (g.abs().sum(0) / torch.quantile(g.abs().sum(0).flatten(), 0.99)).clamp(0, 1), "not their sum"),
    (lambda g: (g.abs().amax(dim=0) / torch.quantile(g.abs().amax(dim=0).flatten(), 99)).clamp(0, 1),
     "your code raised RuntimeError"),  # the percentile as 99 instead of 0.99
    (lambda g: saliency.saliency_map(g, "abs"), "your code calls saliency.saliency_map"),
])
def test_abs_display_mistakes_are_named(capsys, wrong, words):
    checks.check_abs_display(wrong)
    out = said(capsys)
    assert out.startswith("✗ abs display: ") and words in out


# --- lesson 05 ---


@pytest.fixture(scope="module")
def duo05(course):
    x3 = course.batch([make_scene(seed=2, index=13, n_objects=2).image])
    with capture(course.model, "features.relu5") as acts, torch.no_grad():
        logits = course.model(x3)
    return x3, logits, acts["features.relu5"][0], course.model.fc.weight.detach(), course.model.fc.bias.detach()


def test_second_class_and_its_cam(course, duo05, capsys):
    x3, logits, a, w, b = duo05
    second, top = int(logits[0].argsort()[-2]), int(logits[0].argmax())
    cam2 = torch.einsum("k,khw->hw", w[second], a)
    cases = [(second, cam2), (top, cam2), (int(logits[0].argsort()[1]), cam2),
             (second, cam2 + b[second]), (second, F.interpolate(cam2[None, None], size=64)[0, 0]), (second, None)]
    for my_second, my_cam2 in cases:
        checks.check_second_cam(my_second, my_cam2, course.model, x3)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "✓ second class and its CAM: the class is right, and so is its CAM",
        "✗ second class and its CAM: that is the most likely class; the second is the next one",
        "✗ second class and its CAM: that is the second *least* likely class (argsort sorts ascending)",
        "✗ second class and its CAM: the class is right, but you added the bias: CAM is Σ_k w_k A_k alone",
        "✗ second class and its CAM: the class is right, but your map has shape (64, 64): the raw CAM is (16, 16)",
        "… second class and its CAM: the class is right; now build its CAM (replace the None of my_cam2)",
    ]
    checks.check_second_cam(logits[0].argsort()[-2], cam2, course.model, x3)   # a one-number tensor will do
    checks.check_second_cam(float(second), cam2, course.model, x3)              # a float will not
    assert capsys.readouterr().out.splitlines() == [
        "✓ second class and its CAM: the class is right, and so is its CAM",
        "✗ second class and its CAM: my_second should be a class index (an int), got float"]


def test_logits_from_the_six_cams(course, capsys):
    x = course.batch([make_scene(seed=1, index=3, classes=["star"]).image])
    with capture(course.model, "features.relu5") as acts, torch.no_grad():
        course.model(x)
    maps6 = torch.einsum("ck,khw->chw", course.model.fc.weight.detach(), acts["features.relu5"][0])
    b = course.model.fc.bias.detach()
    for answer in [(maps6.mean(dim=(1, 2)) + b)[None], maps6.mean(dim=(1, 2))[None],
                   (maps6.sum(dim=(1, 2)) + b)[None], maps6.mean(dim=(1, 2)) + b]:
        checks.check_logits_from_cams(answer, course.model, x)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "✓ logits from the six CAMs: the means of the six CAMs plus the biases are the model's logits"
    assert out[1:] == ["✗ logits from the six CAMs: you left out the biases b",
                       "✗ logits from the six CAMs: you summed each map: the logit is its mean",
                       "✗ logits from the six CAMs: the right numbers in shape (6,): make it (1, 6)"]


def test_cam_of_pooled_features(course, capsys):
    x = course.batch([make_scene(seed=1, index=3, classes=["star"]).image])
    star = CLASSES.index("star")
    with capture(course.model, "features.relu5") as acts, torch.no_grad():
        course.model(x)
    a, w = acts["features.relu5"], course.model.fc.weight.detach()
    for pooled, c in [(F.avg_pool2d(a, 4), star), (F.max_pool2d(a, 4), star), (F.avg_pool2d(a, 4), 0)]:
        checks.check_pooled_cam(torch.einsum("k,khw->hw", w[c], pooled[0]), course.model, x, star)
    checks.check_pooled_cam(torch.einsum("k,khw->hw", w[star], a[0]), course.model, x, star)   # not pooled
    assert capsys.readouterr().out.splitlines() == [
        "✓ CAM of pooled features: the CAM of the pooled features is the pooled CAM",
        "✗ CAM of pooled features: you max-pooled the features: average-pool them (F.avg_pool2d)",
        "✗ CAM of pooled features: this is the pooled CAM of class 0, not of the star (3)",
        "✗ CAM of pooled features: shape (16, 16): pool the 16×16 features to 4×4 (F.avg_pool2d(A, 4)) first",
    ]


# --- lesson 06 ---


def grad_cam_solution(model, x, target, layer, relu=True, remove=True, backward=False):
    kept = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda module, inputs, output: kept.update(A=output))
    try:
        logits = model(x)
    finally:
        if remove:
            handle.remove()
    if backward:
        kept["A"].retain_grad()
        logits[:, target].sum().backward()
        dA = kept["A"].grad
    else:
        (dA,) = torch.autograd.grad(logits[:, target].sum(), kept["A"])
    weighted = (dA.mean(dim=(2, 3))[:, :, None, None] * kept["A"]).sum(dim=1).detach()
    return torch.relu(weighted) if relu else weighted


def test_grad_cam_solution_passes_and_the_model_is_unchanged(course, capsys):
    before = model_state(course.model)
    checks.check_grad_cam(grad_cam_solution, course.model)
    assert said(capsys) == "✓ Grad-CAM by hand: right on images, a class and a layer of the check's own; no hook left"
    assert_same_state(before, model_state(course.model))


@pytest.mark.parametrize("wrong, words", [
    (lambda m, x, t, layer: grad_cam_solution(m, x, t, layer, relu=False), "you left out the ReLU of eq. 2"),
    (lambda m, x, t, layer: grad_cam_solution(m, x, t, "features.relu4"), "you used features.relu4 whatever"),
    (lambda m, x, t, layer: grad_cam_solution(m, x, t, layer, remove=False), "1 hook(s) left on the model"),
    (lambda m, x, t, layer: grad_cam_solution(m, x, t, layer, backward=True), "wrote the parameters' .grad"),
    (lambda m, x, t, layer: grad_cam(m, x, t, layer=layer).maps, "your code calls cam.grad_cam"),
    (lambda m, x, t, layer: GradCAM(m, x, layer).map(t).maps, "your code calls cam.GradCAM"),
])
def test_grad_cam_mistakes_are_named_and_the_model_is_cleaned_up(course, capsys, wrong, words):
    before = model_state(course.model)
    checks.check_grad_cam(wrong, course.model)
    out = said(capsys)
    assert out.startswith("✗ Grad-CAM by hand: ") and words in out
    assert_same_state(before, model_state(course.model))
    assert all_hooks(course.model) == 0
    assert (grad_cam.__name__, GradCAM.__name__, cam_module.grad_cam.__name__) == ("grad_cam", "GradCAM", "grad_cam")


@pytest.fixture(scope="module")
def duo06(course):
    duo = make_scene(seed=2, index=11, n_objects=2)
    return course.batch([duo.image]), CLASSES.index("cross")


def test_counterfactual(course, duo06, capsys):
    x2, cross = duo06
    g = GradCAM(course.model, x2, "features.relu5")
    grad, _ = g.gradients(cross)
    a = g.acts["features.relu5"].detach()
    weighted = (grad.mean(dim=(2, 3))[:, :, None, None] * a).sum(dim=1)
    for answer in [torch.relu(-weighted), torch.relu(weighted), -torch.relu(weighted), None]:
        checks.check_counterfactual(answer, course.model, x2, cross)
    assert capsys.readouterr().out.splitlines() == [
        "✓ counterfactual Grad-CAM: the negated gradient's map: what argues against the class",
        "✗ counterfactual Grad-CAM: this is the ordinary Grad-CAM: negate the gradient",
        "✗ counterfactual Grad-CAM: you negated after the ReLU: negate the gradient, then weigh and add, then the ReLU",
        "… counterfactual Grad-CAM: not answered yet (replace the None)",
    ]


def test_where_each_peak_falls(course, capsys):
    pair = make_scene(seed=2, index=5, n_objects=2)
    x = course.batch([pair.image])
    for answer in [[1, 2], [2, 1], [0, 0], [1], 5]:
        checks.check_peak_where(answer, course.model, x, pair)
    assert capsys.readouterr().out.splitlines() == [
        "✓ where each class's peak falls: both peaks placed right",  # lesson 06's solution: other object, background
        "✗ where each class's peak falls: the first and the second answer is off",
        "✗ where each class's peak falls: the first and the second answer is off",
        "✗ where each class's peak falls: 1 answers: give one per object, two in all",
        "✗ where each class's peak falls: my_where should be a list of two ints (0, 1 or 2)",
    ]


# --- lesson 04: one unit projected back (Zeiler & Fergus 2014) ---


def abs_net():
    """y = relu(x) + relu(-x) = |x|, a 1-pixel-wide convolution each way: hand-computable."""
    conv1, conv2 = nn.Conv2d(1, 2, 1, bias=False), nn.Conv2d(2, 1, 1, bias=False)
    with torch.no_grad():
        conv1.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        conv2.weight.copy_(torch.ones(1, 2, 1, 1))
    return nn.Sequential(conv1, nn.ReLU(), conv2).eval()


def test_project_unit_by_hand():
    """The strongest unit of |x| is at the largest |x| (row 1, column 0: -4). Plain and guided:
    d|x|/dx = sign(x) = -1 there (the gradient reaching the ReLUs is +1, so guided's extra gate is open). Deconvnet: the gradient 1 reaches both ReLUs and is positive, so both
    pass it, whatever the forward pass did: 1·1 + 1·(-1) = 0."""
    model = abs_net()
    x = torch.tensor([[1.0, -3.0], [-4.0, 2.0]]).view(1, 1, 2, 2)
    before = model_state(model)
    expected = torch.zeros(1, 1, 2, 2)
    expected[0, 0, 1, 0] = -1.0
    for rule, want in [("plain", expected), ("guided", expected), ("deconvnet", torch.zeros(1, 1, 2, 2))]:
        grad, positions = saliency.project_unit(model, x, "2", 0, rule=rule)
        assert positions.tolist() == [[1, 0]]
        assert torch.equal(grad, want), rule
    assert_same_state(before, model_state(model))


def test_project_unit_guided_differs_where_the_gradient_is_positive():
    """Unit at a positive pixel, x = 2: plain/guided give +1 (the first ReLU was on and g > 0);
    the deconvnet again passes both branches: 1 - 1 = 0."""
    model = abs_net()
    x = torch.tensor([[1.0, -0.5], [0.0, 2.0]]).view(1, 1, 2, 2)
    out = {r: saliency.project_unit(model, x, model[2], 0, rule=r)[0][0, 0] for r in ("plain", "guided", "deconvnet")}
    assert out["plain"].tolist() == [[0.0, 0.0], [0.0, 1.0]] == out["guided"].tolist()
    assert out["deconvnet"].abs().sum() == 0


def test_project_unit_one_unit_per_image_and_only_the_layers_below_run(course, six):
    calls = []
    handle = course.model.fc.register_forward_hook(lambda *args: calls.append(1))
    try:
        grad, positions = saliency.project_unit(course.model, six[:3], "features.relu3", 5)
    finally:
        handle.remove()
    assert grad.shape == (3, 3, 64, 64) and positions.shape == (3, 2) and not calls
    with capture(course.model, "features.relu3") as acts, torch.no_grad():
        course.model(six[:3])
    a = acts["features.relu3"][:, 5]
    for i, (r, c) in enumerate(positions.tolist()):
        assert a[i, r, c] == a[i].max()


def test_project_unit_names_a_bad_channel_or_layer(course, six):
    with pytest.raises(ValueError, match="channel 64 is out of range: layer 'features.relu3' has channels 0..63"):
        saliency.project_unit(course.model, six[:1], "features.relu3", 64)
    with pytest.raises(ValueError, match="needs \\(N, K, h, w\\) maps"):
        saliency.project_unit(course.model, six[:1], "fc", 0)
    assert all_hooks(course.model) == 0


def test_no_check_raises_on_an_answer_it_cannot_read(course, six, capsys):
    """A string where a tensor, a function or a class belongs: one ✗ line each, never a traceback."""
    x = six[:1]
    pair = make_scene(seed=2, index=5, n_objects=2)
    checks.check_deconvnet("abc", "abc", course.model, x, 0)
    checks.check_smoothgrad("abc", course.model)
    checks.check_abs_display("abc")
    checks.check_second_cam(0.5, "abc", course.model, x)
    checks.check_logits_from_cams("abc", course.model, x)
    checks.check_pooled_cam({"a": 1}, course.model, x, 3)
    checks.check_grad_cam("abc", course.model)
    checks.check_counterfactual("abc", course.model, x, 0)
    checks.check_peak_where("ab", course.model, course.batch([pair.image]), pair)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 9 and all(line.startswith("✗ ") for line in out), out
