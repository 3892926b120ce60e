"""The rest of the CAM family and of attribution (lesson 11, issue 16): Grad-CAM's gradient cousins,
Score-CAM, Ablation-CAM, Eigen-CAM, occlusion, Input × Gradient and Integrated Gradients.

Expected values are written out by hand on tiny networks (the arithmetic is in the comments), on
inputs where a plausible slip and the right formula disagree: maps that are not square, channels
whose minimum is not 0, negative activations and gradients where they matter.
"""

from __future__ import annotations

import copy
import gc

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_utils.cam import GRADIENT_CAMS, GradCAM, grad_cam
from course_utils.gradient_free import ablation_cam, eigen_cam, layer_maps, occlusion, score_cam
from course_utils.methods import METHODS, Explainer, explain
from course_utils.saliency import completeness, input_x_gradient, integrated_gradients, vanilla_gradient
from tests.conftest import ForwardCounter, all_hooks, assert_same_state, model_state

NEW_METHODS = ["Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM", "Score-CAM", "Ablation-CAM", "Eigen-CAM",
               "Input × Gradient", "Integrated Gradients", "Occlusion"]
QUIET = {"progress": False}


def T(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


class ImageCounter:
    """Counts the calls of a module and the images (batch rows) each call gets, with a pre-hook removed on exit."""

    def __init__(self, module: nn.Module):
        self.module, self.batches = module, []

    def __enter__(self):
        self.handle = self.module.register_forward_pre_hook(lambda m, args: self.batches.append(len(args[0])))
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    @property
    def images(self) -> int:
        return sum(self.batches)


@pytest.fixture(scope="module")
def course():
    from course_utils.models import load_model

    return load_model("course")


@pytest.fixture(scope="module")
def course_x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def test_the_registries_hold_every_new_method_and_what_it_needs():
    assert list(GRADIENT_CAMS) == ["Grad-CAM", "Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM"]
    assert all(METHODS[m].paper for m in NEW_METHODS)
    # (output, default layer, reads the kept pass, many passes, ReLU rule of the input gradient it reads)
    kept_map, own_map = ("map", "gradcam_layer", True, False, None), ("map", "gradcam_layer", False, True, None)
    assert {m: (METHODS[m].output, METHODS[m].layer, METHODS[m].kept, METHODS[m].many_passes, METHODS[m].rule)
            for m in NEW_METHODS} == {
        **{v: kept_map for v in ("Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM")},
        "Score-CAM": own_map, "Ablation-CAM": own_map,
        "Eigen-CAM": ("map", "gradcam_layer", False, False, None),
        "Input × Gradient": ("gradient", None, False, False, "plain"),
        "Integrated Gradients": ("gradient", None, False, True, None),
        "Occlusion": ("map", None, False, True, None),
    }


# --- 1. the gradient CAMs on hand-made maps A and gradients G ----------------------------------------------
#
# One image, two channels, maps of 1 x 2 (not square):
#   channel 0:  A = [1, 3]   G = [ 1, 2]     sum A = 4
#   channel 1:  A = [2, 0]   G = [-1, 1]     sum A = 2   (a negative gradient where A > 0)

A1 = T([[[[1, 3]], [[2, 0]]]])
G1 = T([[[[1, 2]], [[-1, 1]]]])


def test_grad_cam_weights_each_channel_by_its_mean_gradient():
    # alpha = ((1 + 2) / 2, (-1 + 1) / 2) = (1.5, 0): map = 1.5 * [1, 3] = [1.5, 4.5]
    torch.testing.assert_close(GRADIENT_CAMS["Grad-CAM"](A1, G1), T([[[1.5, 4.5]]]))


def test_grad_cam_plus_plus_alpha_by_hand():
    # alpha = G^2 / (2 G^2 + sum(A) G^3) at each position, weight = sum of alpha * relu(G):
    #   channel 0 (sum A = 4): alpha = 1 / (2 + 4) = 1/6 at [0];  4 / (8 + 4 * 8) = 1/10 at [1]
    #                          weight = 1/6 * 1 + 1/10 * 2 = 11/30   (Grad-CAM's: 1.5)
    #   channel 1 (sum A = 2): at [0] relu(G) = 0 (and 2 G^2 + 2 G^3 = 2 - 2 = 0 there: a zero denominator)
    #                          at [1] alpha = 1 / (2 + 2) = 1/4,  weight = 1/4    (Grad-CAM's: 0)
    # map = 11/30 * [1, 3] + 1/4 * [2, 0] = [11/30 + 15/30, 33/30] = [13/15, 11/10]
    got = GRADIENT_CAMS["Grad-CAM++"](A1, G1)
    torch.testing.assert_close(got, T([[[13 / 15, 11 / 10]]]))
    assert not torch.allclose(got, GRADIENT_CAMS["Grad-CAM"](A1, G1))
    # the slip of taking the sum of the G^3 over positions instead of each position's own G^3:
    # channel 0's alpha at [0] would be 1 / (2 + 4 * 9) = 1/38 -> a different map
    slip = (1 / 38 * 1 + 4 / (8 + 4 * 9) * 2) * A1[0, 0] + 0.25 * A1[0, 1]
    assert not torch.allclose(got[0], slip)


def test_xgrad_cam_weights_the_gradient_by_the_channels_own_maps():
    # weight = sum(A G) / sum(A):  channel 0: (1*1 + 3*2) / 4 = 7/4;  channel 1: (2*(-1) + 0*1) / 2 = -1
    # map = 7/4 * [1, 3] - [2, 0] = [-1/4, 21/4]   (before the ReLU: the negative value stays)
    torch.testing.assert_close(GRADIENT_CAMS["XGrad-CAM"](A1, G1), T([[[-0.25, 5.25]]]))


def test_layer_cam_drops_negative_gradients_position_by_position():
    # relu(G) * A summed over channels: channel 0: [1*1, 2*3] = [1, 6]; channel 1: [0*2, 1*0] = [0, 0]
    # (without the ReLU on G, channel 1 would give [-2, 0] and the map [-1, 6])
    torch.testing.assert_close(GRADIENT_CAMS["LayerCAM"](A1, G1), T([[[1, 6]]]))


def test_hires_cam_is_the_elementwise_product_summed_over_channels():
    # G * A: channel 0 [1, 6] + channel 1 [-2, 0] = [-1, 6]; Grad-CAM (mean gradient) gives [1.5, 4.5]
    torch.testing.assert_close(GRADIENT_CAMS["HiResCAM"](A1, G1), T([[[-1, 6]]]))
    # where G does not vary in space, HiResCAM is Grad-CAM
    flat_g = G1.mean(dim=(2, 3), keepdim=True).expand_as(G1)
    torch.testing.assert_close(GRADIENT_CAMS["HiResCAM"](A1, flat_g), GRADIENT_CAMS["Grad-CAM"](A1, G1))


@pytest.mark.parametrize("variant", list(GRADIENT_CAMS))
def test_each_image_and_each_position_keeps_its_own_map(variant):
    """A batch gives each image's map alone (nothing is pooled over the batch), and swapping height and
    width swaps the map's (nothing mixes up the two axes); non-square maps with mixed signs."""
    gen = torch.Generator().manual_seed(0)
    a, g = torch.randn(3, 4, 2, 5, generator=gen), torch.randn(3, 4, 2, 5, generator=gen)
    f = GRADIENT_CAMS[variant]
    out = f(a, g)
    assert out.shape == (3, 2, 5)
    for i in range(3):
        torch.testing.assert_close(out[i:i + 1], f(a[i:i + 1], g[i:i + 1]))
    torch.testing.assert_close(f(a.transpose(2, 3), g.transpose(2, 3)), out.transpose(1, 2))


@pytest.mark.parametrize("variant", list(GRADIENT_CAMS))
def test_zero_denominators_give_finite_maps(variant):
    f = GRADIENT_CAMS[variant]
    zero_g = f(A1, torch.zeros_like(G1))  # the score does not move with the layer
    zero_a = f(torch.zeros_like(A1), G1)  # a dead layer
    assert zero_g.tolist() == [[[0.0, 0.0]]] and zero_a.tolist() == [[[0.0, 0.0]]]
    # a channel whose activations add up to 0 (XGrad-CAM's denominator), and one where Grad-CAM++'s
    # 2 G^2 + sum(A) G^3 = 2 - 2 = 0 at a positive gradient (sum A = -2, G = 1): negative activations
    a = T([[[[1, -1]], [[-1, -1]]]])
    g = T([[[[1, 0]], [[1, 1]]]])
    assert torch.isfinite(f(a, g)).all()


# --- 2. end to end on a tiny GAP network, where the gradient is known in closed form ------------------------
#
# conv 1x1 (1 -> 2 channels, weights 1 and -1, biases 0 and 1) -> ReLU (the layer, "1") -> GAP -> linear:
#   A_0 = relu(x), A_1 = relu(1 - x); for a GAP + linear head G_k = w_k^c / (h w) = w_k^c / 6 everywhere.

X_GAP = T([[[[2, -1, 0.5], [0, 3, -2]]]])  # one image, 2 x 3
A_GAP = T([[[[2, 0, 0.5], [0, 3, 0]],      # relu(x): sum 5.5
            [[0, 2, 0.5], [1, 0, 3]]]])    # relu(1 - x): sum 6.5
W_GAP = T([[1, -2], [-1, 3], [0.5, 0.5]])  # the linear layer's rows: class 0, 1, 2


def _gap_net() -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(T([1, -1]).view(2, 1, 1, 1))
        net[0].bias.copy_(T([0, 1]))
        net[4].weight.copy_(W_GAP)
    return net.eval()


def _expected_on_gap(variant: str, c: int, sign: float = 1.0) -> torch.Tensor:
    """The variant's map (before the ReLU) with G_k = w_k / 6 at every position (times ``sign``: -1 for the
    counterfactual map, which reads the negated gradient), from its formula."""
    g, s = sign * W_GAP[c] / 6, A_GAP.sum(dim=(2, 3))[0]
    if variant in ("Grad-CAM", "XGrad-CAM", "HiResCAM"):
        weights = g  # a gradient constant in space: its mean, its A-weighted mean and itself are all g
    elif variant == "LayerCAM":
        weights = g.clamp(min=0)
    else:  # Grad-CAM++: alpha = g^2 / (2 g^2 + S g^3) = 1 / (2 + S g) at each of the 6 positions
        weights = torch.where(g > 0, 6 * g / (2 + s * g), torch.zeros_like(g))
    return torch.einsum("k,khw->hw", weights, A_GAP[0])


def test_the_gap_networks_maps_are_the_ones_written_by_hand():
    logits, acts, name = layer_maps(_gap_net(), X_GAP, "1")
    assert name == "1" and torch.equal(acts, A_GAP)
    # Grad-CAM of class 0: A_0 / 6 - 2 A_1 / 6, written out
    torch.testing.assert_close(_expected_on_gap("Grad-CAM", 0), T([[1 / 3, -2 / 3, -1 / 12], [-1 / 3, 1 / 2, -1]]))
    # Grad-CAM++ of class 0: channel 0 (g = 1/6, S = 5.5) weighs 1 / (2 + 5.5 / 6) = 12/35; channel 1 (g < 0) 0
    torch.testing.assert_close(_expected_on_gap("Grad-CAM++", 0), 12 / 35 * A_GAP[0, 0])


@pytest.mark.parametrize("variant", list(GRADIENT_CAMS))
def test_grad_cam_variant_end_to_end_matches_its_formula(variant):
    net = _gap_net()
    for c in range(3):
        raw = grad_cam(net, X_GAP, c, layer="1", variant=variant, relu=False)
        assert raw.layer == "1" and raw.classes.tolist() == [c] and raw.maps.shape == (1, 2, 3)
        torch.testing.assert_close(raw.maps[0], _expected_on_gap(variant, c))
        shown = grad_cam(net, X_GAP, c, layer=net[1], variant=variant).maps[0]
        torch.testing.assert_close(shown, _expected_on_gap(variant, c).clamp(min=0))
    assert all_hooks(net) == 0


def test_the_variants_really_differ_on_the_gap_network():
    """So that the end-to-end test above could catch one variant computed by another's formula."""
    maps = {v: _expected_on_gap(v, 0) for v in GRADIENT_CAMS}
    assert not torch.allclose(maps["Grad-CAM"], maps["Grad-CAM++"])
    assert not torch.allclose(maps["Grad-CAM"], maps["LayerCAM"])


def test_a_kept_forward_pass_answers_every_class_and_variant():
    net = _gap_net()
    with ForwardCounter(net) as passes:
        kept = GradCAM(net, X_GAP, "1")
        maps = {(v, c): kept.map(c, variant=v, relu=False).maps[0] for v in GRADIENT_CAMS for c in range(3)}
        against = {v: kept.map(0, variant=v, relu=False, counterfactual=True).maps[0] for v in GRADIENT_CAMS}
    assert passes.calls == 1
    for (v, c), got in maps.items():
        torch.testing.assert_close(got, _expected_on_gap(v, c), msg=f"{v}, class {c}")
    for v, got in against.items():  # the counterfactual map: the same formula on -G
        torch.testing.assert_close(got, _expected_on_gap(v, 0, sign=-1.0), msg=f"{v}, counterfactual")
    assert all_hooks(net) == 0


def test_an_unknown_variant_is_refused_before_the_forward_pass():
    net = _gap_net()
    with ForwardCounter(net) as passes:
        with pytest.raises(ValueError, match=r"unknown gradient CAM 'GradCAM\+\+'; choose one of \['Grad-CAM'"):
            grad_cam(net, X_GAP, 0, layer="1", variant="GradCAM++")
    assert passes.calls == 0
    with pytest.raises(ValueError, match="unknown gradient CAM 'Eigen-CAM'"):
        GradCAM(net, X_GAP, "1").map(0, variant="Eigen-CAM")


# --- 3. Score-CAM --------------------------------------------------------------------------------------------


class OnInput(nn.Module):
    """The layer ("features") is the input itself: its channels are the maps, at the input's size.
    Then one linear layer on every pixel, so a masked image's score is a sum written by hand."""

    def __init__(self, c: int, h: int, w: int, rows):
        super().__init__()
        self.features = nn.Identity()
        self.fc = nn.Linear(c * h * w, len(rows))
        with torch.no_grad():
            for k, (weight, bias) in enumerate(rows):
                self.fc.weight[k] = weight
                self.fc.bias[k] = bias

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


# One image of 4 channels, 1 x 3 pixels; class 0's logit is 0.5 + 0.5 * (sum of every pixel), class 1's is 0.
#   channel 0: [ 1,  2,  3]  mask (A - min) / (max - min) = [0, .5, 1]   (its minimum is not 0)
#   channel 1: [ 4,  4,  4]  flat: a mask of zeros
#   channel 2: [ 0,  2, -2]  mask [.5, 1, 0]                               (negative activations)
#   channel 3: [-1, -1, -1]  flat: a mask of zeros
# A mask multiplies every channel of the image; the channels' sum at each pixel is [4, 7, 4], so
#   score(mask 0) = 0.5 + 0.5 * (0 * 4 + .5 * 7 + 1 * 4) = 4.25
#   score(mask 2) = 0.5 + 0.5 * (.5 * 4 + 1 * 7 + 0 * 4) = 5
#   score(zeros)  = 0.5                       (both flat channels)
X_SC = T([[[[1, 2, 3]], [[4, 4, 4]], [[0, 2, -2]], [[-1, -1, -1]]]])


def _score_net() -> OnInput:
    return OnInput(4, 1, 3, [(0.5, 0.5), (0.0, 0.0)]).eval()


def _score_cam_by_hand() -> torch.Tensor:
    weights = torch.softmax(T([4.25, 0.5, 5.0, 0.5]), dim=0)  # over the channels
    return torch.einsum("k,khw->hw", weights, X_SC[0]).clamp(min=0)[None]


def test_score_cam_by_hand():
    net = _score_net()
    got = score_cam(net, X_SC, 0, "features", **QUIET)
    torch.testing.assert_close(got, _score_cam_by_hand())
    assert got[0, 0, 2] == 0 and got[0, 0, 0] > 0  # the ReLU: 0.32 * 3 + 0.67 * (-2) + ... < 0
    torch.testing.assert_close(score_cam(net, X_SC, None, "features", **QUIET), got)  # class 0 is the top class
    # the slip of scaling a mask by its maximum only (channel 0's mask [1/3, 2/3, 1]) scores 5.5, not 4.25
    slip = torch.einsum("k,khw->hw", torch.softmax(T([5.5, 0.5, 5.0, 0.5]), dim=0), X_SC[0]).clamp(min=0)
    assert not torch.allclose(got[0], slip, atol=1e-3)
    # the slip of giving a flat channel the weight 0 instead of the zero mask's softmax share
    slip = torch.einsum("k,khw->hw", torch.softmax(T([4.25, -1e9, 5.0, -1e9]), dim=0), X_SC[0]).clamp(min=0)
    assert not torch.allclose(got[0], slip, atol=1e-3)


def test_score_cam_asks_about_flat_channels_once_per_image():
    net = _score_net()
    with ImageCounter(net) as seen:
        score_cam(net, X_SC, 0, "features", **QUIET)
    assert seen.images == 1 + 3  # the plain pass, then masks 0 and 2 and one zero mask (not 1 + 4)
    # two images: the second has no flat channel 1 ([4, 5, 4] instead), so 4 masks for it
    second = X_SC.clone()
    second[0, 1, 0, 1] = 5.0
    x = torch.cat([X_SC, second])
    with ImageCounter(net) as seen:
        both = score_cam(net, x, [0, 0], "features", **QUIET)
    assert seen.images == 2 + 3 + 4
    torch.testing.assert_close(both[:1], _score_cam_by_hand())
    torch.testing.assert_close(both[1:], score_cam(net, second, 0, "features", **QUIET))


def test_score_cam_batch_size_changes_nothing_and_given_maps_skip_the_first_pass():
    net = _score_net()
    x = torch.cat([X_SC, X_SC.flip(-1), -X_SC])
    maps = {b: score_cam(net, x, [0, 0, 1], "features", batch_size=b, **QUIET) for b in (1, 3, 64)}
    torch.testing.assert_close(maps[1], maps[3])
    torch.testing.assert_close(maps[1], maps[64])
    logits, acts, _ = layer_maps(net, x, "features")
    with ImageCounter(net) as seen:
        given = score_cam(net, x, [0, 0, 1], "features", acts=acts, logits=logits, **QUIET)
    with ImageCounter(net) as seen_alone:
        score_cam(net, x, [0, 0, 1], "features", **QUIET)
    assert seen_alone.images - seen.images == 3  # the plain pass over the 3 images, skipped
    torch.testing.assert_close(given, maps[64])
    # the maps without the logits (or the other way round): the plain pass runs after all
    torch.testing.assert_close(score_cam(net, x, [0, 0, 1], "features", acts=acts, **QUIET), maps[64])
    torch.testing.assert_close(score_cam(net, x, [0, 0, 1], "features", logits=logits, **QUIET), maps[64])
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        score_cam(net, x, 0, "features", batch_size=0, **QUIET)


class _StridedNet(nn.Module):
    """conv 3x3 stride 2 -> ReLU ("relu": maps at half the input's size) -> conv 1x1 -> GAP -> linear."""

    def __init__(self, c_in: int = 2, k: int = 3):
        super().__init__()
        with torch.random.fork_rng():  # seeded weights; the global generator is left as it was
            torch.manual_seed(0)
            self.conv = nn.Conv2d(c_in, k, 3, stride=2, padding=1)
            self.relu = nn.ReLU()
            self.up = nn.Conv2d(k, 2, 1)
            self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.up(self.relu(self.conv(x))).mean(dim=(2, 3)))


def test_score_cam_upsamples_each_channel_to_the_input_before_scaling_it():
    """A layer at half the input's resolution (3 x 5 maps, 6 x 10 image): the same as a plain loop that
    upsamples each channel bilinearly, scales it to [0, 1], masks the image and asks the model."""
    net = _StridedNet().eval()
    x = torch.randn(2, 2, 6, 10, generator=torch.Generator().manual_seed(1))
    got = score_cam(net, x, [0, 1], "relu", batch_size=2, **QUIET)
    with torch.no_grad():
        acts = net.relu(net.conv(x))
        expected = []
        for i, c in enumerate([0, 1]):
            up = F.interpolate(acts[i][:, None], size=(6, 10), mode="bilinear", align_corners=False)[:, 0]
            lo, hi = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
            masks = torch.where(hi > lo, (up - lo) / (hi - lo).clamp(min=1e-30), torch.zeros_like(up))
            scores = torch.stack([net(x[i:i + 1] * m)[0, c] for m in masks])
            expected.append(torch.einsum("k,khw->hw", scores.softmax(0), acts[i]).clamp(min=0))
    assert got.shape == (2, 3, 5)
    torch.testing.assert_close(got, torch.stack(expected))


# --- 4. Ablation-CAM -----------------------------------------------------------------------------------------
#
# conv 1x1 (the identity on 3 channels: the layer below) -> ReLU (the layer, "1") -> GAP -> linear (3 -> 2).
# x = [2, 4], [1, 1], [-3, 6]  ->  A = [2, 4], [1, 1], [0, 6]: spatial means 3, 1, 3 (maps of 1 x 2).
# class 0: weights (1, -2, 1), bias 1:  y = 3 - 2 + 3 + 1 = 5
#   zero channel 0: y_0 = 0 - 2 + 3 + 1 = 2  ->  w_0 = (5 - 2) / 5 =  0.6
#   zero channel 1: y_1 = 3 - 0 + 3 + 1 = 7  ->  w_1 = (5 - 7) / 5 = -0.4
#   zero channel 2: y_2 = 3 - 2 + 0 + 1 = 2  ->  w_2 = (5 - 2) / 5 =  0.6
# map = relu(0.6 [2, 4] - 0.4 [1, 1] + 0.6 [0, 6]) = relu([1.2 - 0.4, 2.4 - 0.4 + 3.6]) = [0.8, 5.6]
# (dividing by y_k instead of y would give weights 1.5, -2/7, 1.5; y_k - y would flip every sign.)

X_ABL = T([[[[2, 4]], [[1, 1]], [[-3, 6]]]])


def _ablation_net() -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        net[0].bias.zero_()
        net[4].weight.copy_(T([[1, -2, 1], [0, 0, 0]]))
        net[4].bias.copy_(T([1, 0]))
    return net.eval()


def _ablation_by_loop(model: nn.Module, x: torch.Tensor, classes: list[int], layer: nn.Module) -> torch.Tensor:
    """Ablation-CAM the plain way: for each image and channel, the whole model on the image with a forward
    hook that zeroes that channel of the layer's output."""
    out = []
    with torch.no_grad():
        for i, c in enumerate(classes):
            one = x[i:i + 1]
            acts = []
            handle = layer.register_forward_hook(lambda m, inp, o: acts.append(o.clone()))
            y = model(one)[0, c]
            handle.remove()
            weights = []
            for k in range(acts[0].shape[1]):
                def zero(m, inp, o, k=k):
                    o = o.clone()
                    o[:, k] = 0
                    return o
                handle = layer.register_forward_hook(zero)
                weights.append((y - model(one)[0, c]) / y)
                handle.remove()
            out.append(torch.einsum("k,khw->hw", torch.stack(weights), acts[0][0]).clamp(min=0))
    return torch.stack(out)


def test_ablation_cam_by_hand():
    net = _ablation_net()
    torch.testing.assert_close(ablation_cam(net, X_ABL, 0, "1", **QUIET), T([[[0.8, 5.6]]]))
    torch.testing.assert_close(ablation_cam(net, X_ABL, None, "1", **QUIET), T([[[0.8, 5.6]]]))  # class 0 is top
    torch.testing.assert_close(_ablation_by_loop(net, X_ABL, [0], net[1]), T([[[0.8, 5.6]]]))
    assert all_hooks(net) == 0


def test_ablation_cam_runs_only_the_network_above_the_layer_per_ablation():
    net = _ablation_net()
    x = torch.cat([X_ABL, X_ABL.flip(-1) + 1])
    with ImageCounter(net[0]) as below, ImageCounter(net[4]) as head:
        got = ablation_cam(net, x, [0, 0], "1", batch_size=2, **QUIET)
    # below the layer: the plain pass (2 images), then one image per batch of ablations: 2 per image (3 channels)
    assert below.batches == [2, 1, 1, 1, 1]
    assert head.batches == [2, 2, 1, 2, 1]  # above it: one copy per zeroed channel
    torch.testing.assert_close(got, _ablation_by_loop(net, x, [0, 0], net[1]))
    with ImageCounter(net[0]) as below:
        torch.testing.assert_close(ablation_cam(net, x, [0, 0], "1", batch_size=64, **QUIET), got)
    assert below.batches == [2, 1, 1]
    assert all_hooks(net) == 0


class _CatNet(nn.Module):
    """The head reads a tensor from below the layer beside one from above it (``torch.cat`` along
    channels): a batch of one below and a batch of copies above cannot be joined."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.relu = nn.ReLU()
            self.up = nn.Conv2d(4, 2, 1)
            self.fc = nn.Linear(6, 3)

    def forward(self, x):
        below = self.conv(x)
        above = self.up(self.relu(below))
        return self.fc(torch.cat([below, above], dim=1).mean(dim=(2, 3)))


def test_ablation_cam_falls_back_to_copies_of_the_image_when_the_fast_path_cannot_run():
    net = _CatNet().eval()
    x = torch.randn(2, 2, 3, 5, generator=torch.Generator().manual_seed(2))
    classes = net(x).argmax(dim=1).tolist()
    with ImageCounter(net.conv) as below:
        got = ablation_cam(net, x, None, "relu", batch_size=3, **QUIET)
    # the plain pass, the fast path that failed, its retry on 3 copies; from then on copies only (4 channels:
    # batches of 3 and 1), never the fast path again
    assert below.batches == [2, 1, 3, 1, 3, 1]
    assert got.shape == (2, 3, 5) and got.max() > 0
    torch.testing.assert_close(got, _ablation_by_loop(net, x, classes, net.relu))
    # the fast path on a network where it works gives the plain loop's maps too
    strided = _StridedNet(k=4).eval()
    torch.testing.assert_close(ablation_cam(strided, x, [1, 0], "relu", batch_size=3, **QUIET),
                               _ablation_by_loop(strided, x, [1, 0], strided.relu))
    assert all_hooks(net) == 0 and all_hooks(strided) == 0


class _ReusedReLU(nn.Module):
    """One ReLU module run twice (as in torchvision's ResNet blocks): the layer's maps are those of its last
    run (what capture keeps, and what every CAM weighs), so an ablation zeroes a channel of that run only.

    conv1 (the identity on 2 channels) -> relu -> conv2 (out_0 = a_0 + a_1, out_1 = a_1 - 1) -> relu -> GAP -> fc.
    x = [1, 3], [2, 0]: first run [1, 3], [2, 0]; conv2 [3, 3], [1, -1]; last run A = [3, 3], [1, 0] (means 3, 1/2)
    class 0: weights (1, 2): y = 3 + 1 = 4; zero A_0: y_0 = 1 -> w_0 = 3/4; zero A_1: y_1 = 3 -> w_1 = 1/4
    map = 3/4 [3, 3] + 1/4 [1, 0] = [2.5, 2.25]
    (zeroing channel 1 at the first run too gives y_1 = 2 (conv2 [1, 3], [-1, -1]), w_1 = 1/2 and [2.75, 2.25])
    """

    def __init__(self):
        super().__init__()
        self.conv1, self.relu, self.conv2, self.fc = nn.Conv2d(2, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 1), nn.Linear(2, 2)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.conv1.bias.zero_()
            self.conv2.weight.copy_(T([[1, 1], [0, 1]]).view(2, 2, 1, 1))
            self.conv2.bias.copy_(T([0, -1]))
            self.fc.weight.copy_(T([[1, 2], [0, 0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.relu(self.conv2(self.relu(self.conv1(x)))).mean(dim=(2, 3)))


def test_ablation_cam_of_a_module_that_runs_twice_zeroes_the_maps_it_weighs():
    net = _ReusedReLU().eval()
    x = T([[[[1, 3]], [[2, 0]]]])
    assert torch.equal(layer_maps(net, x, "relu")[1], T([[[[3, 3]], [[1, 0]]]]))
    torch.testing.assert_close(ablation_cam(net, x, 0, "relu", **QUIET), T([[[2.5, 2.25]]]))


# --- 5. Eigen-CAM ----------------------------------------------------------------------------------------------


def _eigen_by_numpy(a: np.ndarray) -> np.ndarray:
    """The first principal component of the positions (rows: h w positions, columns: K channels, centred),
    signed so that the projection rises with the sum over channels, then ReLU."""
    k, h, w = a.shape
    rows = a.reshape(k, h * w).T.astype(np.float64)
    rows = rows - rows.mean(axis=0)
    _, _, vt = np.linalg.svd(rows, full_matrices=False)
    proj = rows @ vt[0]
    total = a.sum(axis=0).ravel()
    if np.dot(proj - proj.mean(), total - total.mean()) < 0:
        proj = -proj
    return np.maximum(proj, 0).reshape(h, w)


# three channels on 2 x 3 positions; channel 1 falls where channel 0 rises
A_EIG = T([[[[0, 1, 4], [2, 5, 1]], [[3, 2, 0], [1, 0, 2]], [[1, -1, 2], [0, 3, 1]]]])


def test_eigen_cam_is_the_first_principal_component_with_the_documented_sign():
    net = OnInput(3, 2, 3, [(0.1, 0.0), (-0.2, 1.0)]).eval()
    x = torch.cat([A_EIG, -A_EIG])  # the same data negated: one of the two needs the sign flipped
    got = eigen_cam(net, x, None, "features")
    assert got.shape == (2, 2, 3)
    for i in range(2):
        np.testing.assert_allclose(got[i].numpy(), _eigen_by_numpy(x[i].numpy()), rtol=1e-5, atol=1e-6)
        total = x[i].sum(dim=0)
        assert ((got[i] - got[i].mean()) * (total - total.mean())).sum() > 0  # rises where the layer is active
    # the target is not read: every class, a function of the logits, maps given instead of the model
    for target in (0, 1, [1, 0], lambda z: z[:, 0]):
        torch.testing.assert_close(eigen_cam(net, x, target, "features"), got)
    torch.testing.assert_close(eigen_cam(net, x, acts=x), got)


def test_eigen_cam_signs_each_image_on_its_own():
    """One image at a time, and a batch of seeded images of either sign: each as numpy computes it."""
    gen = torch.Generator().manual_seed(9)
    many = torch.randn(6, 3, 3, 4, generator=gen) * T([1, -1, 1, -1, 1, -1]).view(6, 1, 1, 1)
    for a in [A_EIG, -A_EIG, many]:
        got = eigen_cam(None, None, acts=a)
        for i in range(len(a)):
            np.testing.assert_allclose(got[i].numpy(), _eigen_by_numpy(a[i].numpy()), rtol=1e-5, atol=1e-6)


def test_eigen_cam_where_the_sum_over_channels_is_flat_keeps_either_sign():
    """Channel 1 = 5 - channel 0: the sum is 5 everywhere, so no sign rises with it. The component is
    (1, -1) / sqrt(2) up to its sign, the projection +-sqrt(2) (A_0 - 2.5): either one, never zeros."""
    a0 = T([[0, 1, 2], [3, 4, 5]])
    got = eigen_cam(None, None, acts=torch.stack([a0, 5 - a0])[None])[0]
    proj = 2 ** 0.5 * (a0 - 2.5)
    assert torch.allclose(got, proj.clamp(min=0), atol=1e-5) or torch.allclose(got, (-proj).clamp(min=0), atol=1e-5)


# --- 6. Occlusion ------------------------------------------------------------------------------------------------


def _linear_net(c: int, h: int, w: int, weights: torch.Tensor) -> nn.Sequential:
    """score_k = sum of weights[k] * x + a bias (which no drop sees)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, len(weights)))
    with torch.no_grad():
        net[1].weight.copy_(weights.view(len(weights), -1))
        net[1].bias.copy_(torch.arange(len(weights), dtype=torch.float32))
    return net.eval()


def test_occlusion_by_hand_on_a_non_square_image_that_windows_do_not_tile():
    # x = 0..14 on 3 x 5 pixels; class 0 sums the pixels (weights 1), so a window's drop is its pixels' sum.
    #   0  1  2  3  4        window 2, stride 2: rows start at 0 and (moved in) 1; columns at 0, 2 and
    #   5  6  7  8  9        (moved in) 3. Drops: (0,0) 0+1+5+6 = 12  (0,2) 20  (0,3) 24
    #  10 11 12 13 14                           (1,0) 32             (1,2) 40  (1,3) 44
    x = torch.arange(15.0).view(1, 1, 3, 5)
    net = _linear_net(1, 3, 5, torch.stack([torch.ones(15), -torch.ones(15)]))
    got = occlusion(net, x, 0, window=2, stride=2, **QUIET)
    # each pixel: the mean drop of the windows that cover it. Row 0 lies under the windows of row 0 only,
    # row 1 under both rows of windows; column 2 under c = 2 only, column 3 under c = 2 and c = 3.
    expected = T([[[12, 12, 20, (20 + 24) / 2, 24],
                   [(12 + 32) / 2, (12 + 32) / 2, (20 + 40) / 2, (20 + 24 + 40 + 44) / 4, (24 + 44) / 2],
                   [32, 32, 40, (40 + 44) / 2, 44]]])
    torch.testing.assert_close(got, expected)  # a sum over windows, not their mean, would give 128 at [1, 3]
    # class 1 (weights -1): every drop negated
    torch.testing.assert_close(occlusion(net, x, 1, window=2, stride=2, **QUIET), -got)


def test_occlusion_baseline_colour_channels_batch_and_batch_size():
    """Three colour channels, a grey baseline that is not 0, two images with a class each, 4 x 6 pixels,
    window 3 and stride 2 (rows start at 0 and 1, columns at 0, 2 and the moved-in 3)."""
    gen = torch.Generator().manual_seed(4)
    weights = torch.randn(2, 3, 4, 6, generator=gen)
    net = _linear_net(3, 4, 6, weights)
    x = torch.randn(2, 3, 4, 6, generator=gen)
    total, count = torch.zeros(2, 4, 6), torch.zeros(4, 6)
    for r in (0, 1):
        for c in (0, 2, 3):
            for i, k in enumerate([1, 0]):
                total[i, r:r + 3, c:c + 3] += (weights[k] * (x[i] - 0.25))[:, r:r + 3, c:c + 3].sum()
            count[r:r + 3, c:c + 3] += 1
    assert count.min() == 1  # every pixel covered
    for b in (1, 4, 64):
        got = occlusion(net, x, [1, 0], window=3, stride=2, baseline=0.25, batch_size=b, **QUIET)
        torch.testing.assert_close(got, total / count, rtol=1e-4, atol=1e-5)
    with ImageCounter(net) as seen:
        occlusion(net, x, [1, 0], window=3, stride=2, batch_size=4, **QUIET)
    assert seen.batches == [2, 4, 2, 4, 2]  # the plain pass, then each image's 6 windows 4 at a time


def test_occlusion_default_window_and_stride_and_exact_tilings():
    gen = torch.Generator().manual_seed(10)
    net = _linear_net(1, 16, 33, torch.randn(1, 16 * 33, generator=gen))
    x = torch.randn(1, 1, 16, 33, generator=gen)
    # the window is an eighth of the larger side (33 // 8 = 4), the stride half the window
    torch.testing.assert_close(occlusion(net, x, 0, **QUIET), occlusion(net, x, 0, window=4, stride=2, **QUIET))
    small = _linear_net(1, 5, 7, torch.randn(1, 35, generator=gen))
    x5 = torch.randn(1, 1, 5, 7, generator=gen)  # 7 // 8 = 0: a window of one pixel, stride 1
    torch.testing.assert_close(occlusion(small, x5, 0, **QUIET), occlusion(small, x5, 0, window=1, stride=1, **QUIET))
    # windows that tile exactly, overlapping (window 2, stride 1 on 5 x 7): 4 x 6 windows, none twice
    with ImageCounter(small) as seen:
        occlusion(small, x5, 0, window=2, stride=1, batch_size=64, **QUIET)
    assert seen.batches == [1, 24]
    # a window as tall as the image (3 x 5, window 3, stride 2): one row of windows, columns 0 and 2
    x = torch.arange(15.0).view(1, 1, 3, 5)
    sums = _linear_net(1, 3, 5, torch.ones(1, 15))
    with ImageCounter(sums) as seen:
        got = occlusion(sums, x, 0, window=3, stride=2, **QUIET)
    assert seen.batches == [1, 2]
    # drops: columns 0-2: 0+1+2+5+6+7+10+11+12 = 54; columns 2-4: 54 + 3 * 6 = 72; column 2 lies under both
    torch.testing.assert_close(got, T([[54, 54, 63, 72, 72]]).expand(3, 5)[None])


@pytest.mark.parametrize("kwargs, message", [
    ({"window": 0}, "window is a positive number of pixels, got 0"),
    ({"window": 2.5}, "window is a positive number of pixels, got 2.5"),
    ({"window": 2, "stride": 0}, "stride is a positive number of pixels, got 0"),
    ({"window": 4}, r"window 4 is larger than the image \(3×5\)"),
    ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
    ({"batch_size": 2.0}, "batch_size must be a positive int, got 2.0"),
])
def test_occlusion_bad_options_are_named(kwargs, message):
    net = _linear_net(1, 3, 5, torch.ones(1, 15))
    with ForwardCounter(net) as passes, pytest.raises(ValueError, match=message):
        occlusion(net, torch.zeros(1, 1, 3, 5), 0, **kwargs, **QUIET)
    assert passes.calls == 0


# --- 7. Integrated Gradients and 8. Input × Gradient -------------------------------------------------------------


def test_integrated_gradients_on_a_linear_model_is_input_minus_baseline_times_the_weights():
    gen = torch.Generator().manual_seed(5)
    weights = torch.randn(2, 3, 2, 3, generator=gen)
    net = _linear_net(3, 2, 3, weights)
    x = torch.randn(2, 3, 2, 3, generator=gen)
    for baseline, base in [(None, torch.zeros_like(x)), (0.5, torch.full_like(x, 0.5)),
                           (torch.linspace(-1, 1, 3).view(3, 1, 1), torch.linspace(-1, 1, 3).view(1, 3, 1, 1))]:
        got = integrated_gradients(net, x, [1, 0], steps=4, baseline=baseline, **QUIET)
        torch.testing.assert_close(got, (x - base) * weights[[1, 0]], rtol=1e-5, atol=1e-6)
        total, gap = completeness(net, x, got, [1, 0], baseline=baseline)
        torch.testing.assert_close(total, gap, rtol=1e-4, atol=1e-5)


# x -> softplus -> linear on four pixels: exact IG adds up to w . (softplus(x) - softplus(0)) = 6.309;
# one midpoint step gives w . (sigmoid(x / 2) x) = 6.532, 3.5 % too much.
X_SP = T([[[[4, -2], [1, 3]]]])
W_SP = T([[1, -1, 2, 0.5], [0, 0, 0, 0]])


def _softplus_net() -> nn.Sequential:
    net = nn.Sequential(nn.Flatten(), nn.Softplus(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[2].weight.copy_(W_SP)
    return net.eval()


def test_integrated_gradients_completeness_at_64_steps_and_not_at_one():
    net = _softplus_net()
    exact = (W_SP[0] * (F.softplus(X_SP.flatten()) - F.softplus(torch.zeros(4)))).sum()
    total, gap = completeness(net, X_SP, integrated_gradients(net, X_SP, 0, steps=64, **QUIET), 0)
    torch.testing.assert_close(gap, exact[None])
    assert abs(total - gap) / abs(gap) < 0.01
    one, gap = completeness(net, X_SP, integrated_gradients(net, X_SP, 0, steps=1, **QUIET), 0)
    torch.testing.assert_close(one, (W_SP[0] * torch.sigmoid(X_SP.flatten() / 2) * X_SP.flatten()).sum()[None])
    assert abs(one - gap) / abs(gap) > 0.03  # the 1 % test above can fail
    # a small conv network with ReLUs, two images, each its own class: within 1 % at 64 steps
    conv = _StridedNet().eval()
    x = 3 * torch.randn(2, 2, 6, 10, generator=torch.Generator().manual_seed(6))
    attr = integrated_gradients(conv, x, [0, 1], steps=64, **QUIET)
    total, gap = completeness(conv, x, attr, [0, 1])
    assert (gap.abs() > 0.05).all() and ((total - gap).abs() / gap.abs() < 0.01).all()


def test_integrated_gradients_completeness_from_a_baseline_that_is_not_zero():
    """The path starts at the baseline: on a nonlinear network the attributions add up to
    score(x) - score(baseline) (within 1 % at 64 steps), for a number and a tensor baseline alike."""
    net = _softplus_net()
    for baseline, base in [(-1.5, torch.full((4,), -1.5)), (T([[1, 2], [0, -1]]), T([1, 2, 0, -1]))]:
        attr = integrated_gradients(net, X_SP, 0, steps=64, baseline=baseline, **QUIET)
        total, gap = completeness(net, X_SP, attr, 0, baseline=baseline)
        exact = (W_SP[0] * (F.softplus(X_SP.flatten()) - F.softplus(base))).sum()
        torch.testing.assert_close(gap, exact[None])
        assert abs(total - gap) / abs(gap) < 0.01, baseline


class _TrainFlip(nn.Module):
    """The identity in eval mode, the negation in training mode: a model whose top class depends on its mode."""

    def forward(self, x):
        return -x if self.training else x


def test_integrated_gradients_and_completeness_explain_the_model_as_it_predicts():
    """A model left in training mode: the top class, the path and the scores are those of eval mode
    (the model's prediction), and the model is handed back in training mode."""
    net = nn.Sequential(nn.Flatten(), _TrainFlip(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[2].weight.copy_(T([[1, 1, 1, 1], [-2, -2, -2, -2]]))
    x = T([[[[1, 2], [0, 1]]]])  # eval: logits (4, -8), top class 0; training mode: (-4, 8), class 1 and a gap of 8
    net.train()
    got = integrated_gradients(net, x, None, steps=3, **QUIET)
    torch.testing.assert_close(got, x)  # (x - 0) * the weights of class 0 (all 1)
    total, gap = completeness(net, x, got)
    torch.testing.assert_close(gap, T([4]))
    torch.testing.assert_close(total, T([4]))
    assert net.training and net[1].training


def test_integrated_gradients_batch_size_and_top_class():
    conv = _StridedNet().eval()
    x = torch.randn(3, 2, 6, 10, generator=torch.Generator().manual_seed(7))
    ref = integrated_gradients(conv, x, None, steps=5, batch_size=64, **QUIET)
    for b in (1, 4):
        torch.testing.assert_close(integrated_gradients(conv, x, None, steps=5, batch_size=b, **QUIET), ref)
    top = conv(x).argmax(dim=1).tolist()
    torch.testing.assert_close(integrated_gradients(conv, x, top, steps=5, **QUIET), ref)
    # completeness with target None reads the top class on x too
    torch.testing.assert_close(completeness(conv, x, ref)[1], completeness(conv, x, ref, top)[1])


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be a positive int, got 0"),
    ({"steps": 2.0}, "steps must be a positive int, got 2.0"),
    ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
])
def test_integrated_gradients_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        integrated_gradients(_softplus_net(), X_SP, 0, **kwargs, **QUIET)


def test_input_x_gradient_by_hand():
    # score_0 = 2 x_0 + 0.5 x_1 - x_2 (+ bias 0): x * gradient = [1 * 2, -2 * 0.5, 3 * -1] = [2, -1, -3]
    net = _linear_net(1, 1, 3, T([[2, 0.5, -1], [1, 1, 1]]))
    x = T([[[[1, -2, 3]]], [[[0.5, 0, -1]]]])
    got = input_x_gradient(net, x, [0, 1])
    torch.testing.assert_close(got, T([[[[2, -1, -3]]], [[[0.5, 0, -1]]]]))
    torch.testing.assert_close(got, x * vanilla_gradient(net, x, [0, 1]))
    assert all_hooks(net) == 0


def test_the_methods_of_many_passes_ask_32_images_at_a_time_with_a_progress_bar_by_default(capsys):
    gen = torch.Generator().manual_seed(11)
    on_input = OnInput(40, 1, 2, [(1.0, 0.0), (-1.0, 0.0)]).eval()
    x = torch.randn(1, 40, 1, 2, generator=gen)  # 40 channels, none flat
    pixels = _linear_net(1, 5, 8, torch.randn(2, 40, generator=gen))
    calls = [
        (on_input, on_input, lambda: score_cam(on_input, x, 0, "features"), [1, 32, 8],
         "Score-CAM (40 masked passes)", "40/40"),
        (on_input, on_input.fc, lambda: ablation_cam(on_input, x, 0, "features"), [1, 32, 8],
         "Ablation-CAM (40 ablations)", "40/40"),
        (pixels, pixels, lambda: occlusion(pixels, torch.randn(1, 1, 5, 8, generator=gen), 0, window=1, stride=1),
         [1, 32, 8], "Occlusion (40 windows)", "40/40"),
        (pixels, pixels, lambda: integrated_gradients(pixels, torch.randn(2, 1, 5, 8, generator=gen), [0, 1]),
         [32, 32], "Integrated Gradients (32 steps)", "64/64"),
    ]
    for net, counted, call, batches, title, count in calls:
        with ImageCounter(counted) as seen:
            call()
        err = capsys.readouterr().err
        assert seen.batches == batches and title in err and count in err, title


def test_the_gradient_free_methods_work_in_inference_mode_and_the_gradient_ones_say_why_not():
    net = _StridedNet().eval()
    x = torch.randn(2, 2, 6, 10, generator=torch.Generator().manual_seed(12))
    free = [lambda: score_cam(net, x, 0, "relu", **QUIET), lambda: ablation_cam(net, x, 0, "relu", **QUIET),
            lambda: eigen_cam(net, x, 0, "relu"), lambda: occlusion(net, x, 0, window=3, **QUIET)]
    outside = [call() for call in free]
    with torch.inference_mode():
        for call, want in zip(free, outside):
            torch.testing.assert_close(call(), want)
        for name, call in [("integrated_gradients", lambda: integrated_gradients(net, x, 0, steps=2, **QUIET)),
                           ("input_x_gradient", lambda: input_x_gradient(net, x, 0))]:
            with pytest.raises(RuntimeError, match=f"{name} cannot take gradients inside torch.inference_mode"):
                call()
    with torch.no_grad():  # switched back on for themselves
        torch.testing.assert_close(input_x_gradient(net, x, 0), x * vanilla_gradient(net, x, 0))
        assert integrated_gradients(net, x, 0, steps=2, **QUIET).abs().sum() > 0
        assert not torch.is_grad_enabled()  # and left as it was
    assert all_hooks(net) == 0


# --- 9. every new method through the registry, on the course model -------------------------------------------


def _options(name: str) -> dict:
    """Quick settings: few steps, large occluding windows, no progress bars."""
    return {"Integrated Gradients": {**QUIET, "steps": 4}, "Occlusion": {**QUIET, "window": 16}}.get(
        name, QUIET if METHODS[name].many_passes else {})


@pytest.mark.parametrize("name", NEW_METHODS)
def test_every_new_method_through_explain_and_the_explainer(name, course, course_x):
    model = course.model
    before = model_state(model)
    out = Explainer(model, course_x)(name, [1, 4], **_options(name))
    shown = explain(model, course_x, name, [1, 4], **_options(name))
    at_input = METHODS[name].layer is None
    assert out.shape == ((2, 3, 64, 64) if METHODS[name].output == "gradient" else
                         (2, 64, 64) if at_input else (2, 16, 16))
    assert shown.shape == ((2, 64, 64) if at_input else (2, 16, 16))
    assert torch.isfinite(out).all() and torch.isfinite(shown).all() and shown.max() > 0
    assert_same_state(before, model_state(model))


def test_the_explainers_kept_pass_feeds_score_cam_and_eigen_cam(course, course_x):
    model = course.model
    alone = ImageCounter(model)
    with alone:
        expected = score_cam(model, course_x, [1, 4], "features.relu5", **QUIET)
    ex = Explainer(model, course_x)
    ex("Grad-CAM", 1)  # the kept pass runs here
    with ImageCounter(model) as seen:
        got = ex("Score-CAM", [1, 4], **QUIET)
        eig = ex("Eigen-CAM", 0)
    assert alone.images - seen.images == 2  # no plain pass of their own
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(eig, eigen_cam(model, course_x, None, "features.relu5"))


def _raise_on_call(module: nn.Module, n: int, error: Exception):
    """A forward hook (the caller's own) that raises ``error`` from the ``n``-th call of ``module`` on."""
    calls = [0]

    def hook(*_):
        calls[0] += 1
        if calls[0] >= n:
            raise error

    return module.register_forward_hook(hook)


@pytest.mark.parametrize("name", NEW_METHODS)
def test_the_model_comes_back_unchanged_after_a_run_and_after_a_failure_half_way(name, course, course_x):
    """A model in training mode, with a frozen layer and an in-place ReLU: all of it as it was after a run,
    after a class out of range, and after the model itself fails half way through the method's passes."""
    model = copy.deepcopy(course.model)
    model.train()
    model.fc.weight.requires_grad_(False)
    model.features.relu3.inplace = True
    course_x = course_x[:1]
    # small batches: several model calls per method, so that the 3rd call below falls inside the loop
    options = {**_options(name), **({"batch_size": 1 if name == "Integrated Gradients" else 8}
                                    if METHODS[name].many_passes else {})}
    before = model_state(model)
    assert torch.isfinite(Explainer(model, course_x)(name, 1, **options)).all()
    assert_same_state(before, model_state(model))
    if name != "Eigen-CAM":  # Eigen-CAM reads no class
        with pytest.raises(ValueError, match="out of range"):
            Explainer(model, course_x)(name, 9, **options)
        assert_same_state(before, model_state(model))
    # the head fails from its 3rd call on: inside the masked / ablated / occluded / path loop (a new Explainer's
    # kept pass for the others); a RuntimeError, the kind Ablation-CAM's fast path catches before it retries
    handle = _raise_on_call(model.fc, 3, RuntimeError("the head broke"))
    before = model_state(model)
    try:
        with pytest.raises(RuntimeError, match="the head broke"):
            for _ in range(3):
                Explainer(model, course_x)(name, 1, **options)
        assert_same_state(before, model_state(model))
    finally:
        handle.remove()
    assert all_hooks(model) == 0 and model.training and model.features.relu3.inplace
    assert not model.fc.weight.requires_grad and model.fc.weight.grad is None


def test_lesson_04s_explorer_offers_lesson_04s_methods_and_draws_each(empty_torch_home, capsys):
    """Occlusion has no layer either, but gives an (H, W) map, not a (3, H, W) gradient: an explorer that
    offered every method without a layer would draw it as one and fail."""
    from course_utils.widgets import SaliencyExplorer

    explorer = SaliencyExplorer(smoothgrad_samples=2)
    offered = list(explorer.controls["method"].options)
    assert offered == ["vanilla gradient", "guided backprop", "deconvnet", "SmoothGrad"]
    for name in offered[1:]:
        explorer.controls["method"].value = name
        assert explorer.message.value == "", f"{name}: {explorer.message.value}"
    assert capsys.readouterr().err == ""  # no progress bar printed under the explorer


# --- 10. memory stays flat over repeated calls ------------------------------------------------------------------


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))  # type(): no __class__ lookups


def test_memory_stays_flat_over_repeated_calls():
    """Each perturbation method called 5 more times after a first call leaves no tensor behind (a cache or
    a list that grows call over call would); the count itself sees one tensor kept per call."""
    net = _StridedNet().eval()
    x = torch.randn(2, 2, 6, 10, generator=torch.Generator().manual_seed(8))
    kept = []
    calls = {
        "Score-CAM": lambda: score_cam(net, x, [0, 1], "relu", batch_size=2, **QUIET),
        "Ablation-CAM": lambda: ablation_cam(net, x, [0, 1], "relu", batch_size=2, **QUIET),
        "Eigen-CAM": lambda: eigen_cam(net, x, None, "relu"),
        "Occlusion": lambda: occlusion(net, x, [0, 1], window=3, **QUIET),
        "Integrated Gradients": lambda: integrated_gradients(net, x, [0, 1], steps=6, batch_size=4, **QUIET),
        "a leak, to show the count sees one": lambda: kept.append(torch.zeros(1)),
    }
    for call in calls.values():  # first calls: whatever is made once (lazy imports, caches) is made here
        call()
    gc.collect()
    gc.freeze()  # what lives now is left out of the collections and the counts below: they stay quick
    try:
        growth, count = {}, _live_tensors()
        for name, call in calls.items():
            for _ in range(5):
                call()
            now = _live_tensors()
            growth[name], count = now - count, now
    finally:
        gc.unfreeze()
    assert growth == {**{name: 0 for name in calls}, "a leak, to show the count sees one": 5}
    assert all_hooks(net) == 0


# --- 11. bad input -----------------------------------------------------------------------------------------------

CALLS = {
    "score_cam": lambda net, x, t, layer="relu": score_cam(net, x, t, layer, **QUIET),
    "ablation_cam": lambda net, x, t, layer="relu": ablation_cam(net, x, t, layer, **QUIET),
    "eigen_cam": lambda net, x, t, layer="relu": eigen_cam(net, x, t, layer),
    "occlusion": lambda net, x, t, layer=None: occlusion(net, x, t, window=2, **QUIET),
    "integrated_gradients": lambda net, x, t, layer=None: integrated_gradients(net, x, t, steps=2, **QUIET),
    "input_x_gradient": lambda net, x, t, layer=None: input_x_gradient(net, x, t),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_a_wrong_input_shape_is_refused_before_the_model_runs(name):
    net = _StridedNet().eval()
    with ForwardCounter(net) as passes:
        with pytest.raises(ValueError, match=r"float batch of images \(N, C, H, W\), got \(2, 6, 10\)"):
            CALLS[name](net, torch.zeros(2, 6, 10), 0)
        with pytest.raises(ValueError, match="it must be floating point"):
            CALLS[name](net, torch.zeros(1, 2, 6, 10, dtype=torch.long), 0)
    assert passes.calls == 0


@pytest.mark.parametrize("name", ["score_cam", "ablation_cam", "occlusion", "integrated_gradients"])
def test_a_function_of_the_logits_is_refused_where_one_class_is_asked_about(name):
    net = _StridedNet().eval()
    with pytest.raises(TypeError, match="one class"):
        CALLS[name](net, torch.zeros(1, 2, 6, 10), lambda z: z[:, 0] - z[:, 1])
    assert all_hooks(net) == 0


@pytest.mark.parametrize("name", ["score_cam", "ablation_cam", "eigen_cam"])
def test_a_non_spatial_layer_gets_the_clear_error(name):
    net = _StridedNet().eval()
    with pytest.raises(ValueError, match=r"layer 'fc' gives shape \(1, 2\).*needs a spatial"):
        CALLS[name](net, torch.zeros(1, 2, 6, 10), 0, "fc")
    assert all_hooks(net) == 0
