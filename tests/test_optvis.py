"""Activation maximization (lesson 03): objectives, parameterizations, transforms, the loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from course_utils import optvis as ov
from tests.conftest import all_hooks, assert_each_change_redraws, assert_same_state, ForwardCounter, model_state

MEAN, STD = (0.5,) * 3, (0.25,) * 3


@pytest.fixture(scope="module")
def course():
    from course_utils.models import load_model

    return load_model("course")


def run(course, objective, **kw):
    kw = {"steps": 20, "lr": 0.05, "progress": False, **kw}
    return ov.visualize(course, objective, **kw)


# --- the objective rises ----------------------------------------------------------------------


@pytest.mark.parametrize("objective", [
    ov.channel("features.relu3", 5),
    ov.neuron("features.bn4", 7),
    ov.class_logit(3),
], ids=["channel", "neuron", "class"])
@pytest.mark.parametrize("param", ["pixels", "fourier"])
def test_the_objective_increases_over_a_short_run(course, objective, param):
    p = ov.pixels(1, 64, seed=0) if param == "pixels" else ov.fourier(1, 64, seed=0)
    r = run(course, objective, param=p, transforms=ov.standard_transforms(64))
    first, last = r.history[0].item(), r.history[-3:].mean().item()
    assert r.steps == 20 and r.history.shape == (20, 1)
    assert last > first + 0.5 * abs(first) + 0.1, f"{first:.3f} -> {last:.3f}"
    assert r.images.shape == (1, 3, 64, 64) and 0 <= r.images.min() and r.images.max() <= 1


def test_many_channels_at_once_as_a_batch(course):
    channels = [0, 10, 20, 30]
    batch = run(course, ov.channel("features.relu5", channels), n=4)
    assert batch.images.shape == (4, 3, 64, 64)
    assert (batch.history[-1] > batch.history[0]).all()
    # image i followed channel i: the same as optimizing it alone from the same start
    alone = run(course, ov.channel("features.relu5", 20), param=ov.pixels(4, 64, seed=0))
    assert torch.allclose(batch.images[2], alone.images[2], atol=1e-5)


def test_same_seed_same_image_other_seed_other_image(course):
    kw = {"param": None, "transforms": ov.standard_transforms(64), "seed": 3}
    a = run(course, ov.channel("features.relu2", 4), **kw)
    b = run(course, ov.channel("features.relu2", 4), **kw)
    c = run(course, ov.channel("features.relu2", 4), **{**kw, "seed": 4})
    assert torch.equal(a.images, b.images)
    assert not torch.allclose(a.images, c.images, atol=1e-3)


# --- the forward pass stops at the layer ------------------------------------------------------


def test_the_forward_pass_stops_at_the_target_layer(course):
    with ForwardCounter(course.model.fc) as fc_calls, ForwardCounter(course.model.features.conv4) as conv4_calls:
        run(course, ov.channel("features.relu3", 1), steps=5)
    assert fc_calls.calls == 0 and conv4_calls.calls == 0
    with ForwardCounter(course.model.fc) as fc_calls:
        run(course, ov.class_logit(1), steps=5)
    assert fc_calls.calls == 5


def test_resnet_layer3_channel_never_runs_layer4(resnet18_random):
    with ForwardCounter(resnet18_random.layer4) as counter:
        r = ov.visualize(resnet18_random, ov.channel("layer3", 11), size=64, steps=3, mean=MEAN, std=STD,
                         progress=False)
    assert counter.calls == 0 and r.steps == 3


# --- the model comes back unchanged ------------------------------------------------------------


@pytest.mark.parametrize("objective", [
    ov.channel("layer2", 3),
    ov.class_logit(5) + 0.5 * ov.neuron("layer1", 2),
    ov.channel("layer2", 999),        # raises: channel out of range
    ov.channel("layer9", 1),          # raises: no such layer
], ids=["channel", "sum", "bad channel", "bad layer"])
def test_model_unchanged_and_no_hooks(objective, resnet18_random):
    model = resnet18_random
    model.train()
    model.layer1[0].relu.inplace = False
    before = model_state(model)
    try:
        ov.visualize(model, objective, size=32, steps=2, mean=MEAN, std=STD, progress=False)
    except (ValueError, KeyError):
        pass
    assert_same_state(before, model_state(model))
    assert all_hooks(model) == 0 and all(p.grad is None for p in model.parameters())


def test_a_stop_request_ends_the_run(course):
    asked = []

    def stop():
        asked.append(1)
        return len(asked) > 4

    shown = []
    r = run(course, ov.channel("features.relu3", 1), steps=50, stop=stop,
            callback=lambda step, img: shown.append(step), callback_every=2)
    assert r.steps == 4 and r.history.shape == (4, 1) and shown == [2, 4]


def test_clear_errors(course):
    with pytest.raises(ValueError, match="out of range.*0..63"):
        run(course, ov.channel("features.relu5", 64))
    with pytest.raises(ValueError, match="need.*\\(N, C, H, W\\)"):
        run(course, ov.channel("fc", 1))
    with pytest.raises(ValueError, match="class index 6 is out of range"):
        run(course, ov.class_logit(6))
    with pytest.raises(ValueError, match="mean and std"):
        ov.visualize(course.model, ov.class_logit(1), steps=1, progress=False)
    with pytest.raises(ValueError, match="2 channels given for a batch of 1"):
        run(course, ov.channel("features.relu5", [1, 2]))
    with pytest.raises(TypeError, match="scaled by numbers"):
        ov.class_logit(1) * ov.class_logit(2)


# --- objectives combine; the parts behave --------------------------------------------------------


def test_objectives_add_and_scale():
    acts = {"l": torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)}
    logits = torch.tensor([[1.0, 5.0], [2.0, 7.0]])
    ch = ov.channel("l", 1)        # image 0: mean of 4..7 = 5.5; image 1: mean of 16..19 = 17.5
    assert ch(acts).tolist() == [5.5, 17.5]
    assert ov.neuron("l", 2, 0, 1)(acts).tolist() == [9.0, 21.0]
    obj = 2 * ch - ov.class_logit(1) + 1
    assert obj(acts, logits).tolist() == [2 * 5.5 - 5 + 1, 2 * 17.5 - 7 + 1]
    assert obj.layers == ("l",) and obj.needs_logits
    assert ov.channel("l", [0, 2])(acts).tolist() == [1.5, 21.5]


def test_diversity_prefers_different_images():
    same = {"l": torch.ones(2, 2, 3, 3)}
    different = {"l": torch.stack([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])])[:, :, None, None].expand(
        2, 2, 3, 3)}
    d = ov.diversity("l")
    assert d(same).tolist() == pytest.approx([-1.0, -1.0])
    assert d(different).tolist() == pytest.approx([0.0, 0.0])


def test_transforms_are_seeded_and_keep_the_batch():
    img = torch.rand(2, 3, 32, 32)
    t = ov.standard_transforms(32)
    a = t(img, torch.Generator().manual_seed(1))
    b = t(img, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape[:2] == (2, 3)
    assert torch.equal(ov.jitter(0)(img, torch.Generator()), img)
    shifted = ov.jitter(3)(img, torch.Generator().manual_seed(0))
    assert sorted(shifted.flatten().tolist()) == sorted(img.flatten().tolist())  # a roll moves, never changes
    assert ov.pad(4)(img, None).shape == (2, 3, 40, 40)


def test_blur_smooths_and_keeps_a_constant_image():
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(ov.gaussian_blur(flat, 1.0), flat)
    noise = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ov.high_frequency_energy(ov.gaussian_blur(noise, 1.0)) < 0.5 * ov.high_frequency_energy(noise)


def test_fourier_images_are_smoother_than_pixel_images():
    """The 1/f scaling: random spectra make smooth images, random pixels do not."""
    f = ov.fourier(4, 64, seed=0, sd=1.0)()  # spread ~1 before the sigmoid
    p = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert f.shape == (4, 3, 64, 64) and 0 < f.min() and f.max() < 1
    assert ov.high_frequency_energy(f).mean() < 0.2 * ov.high_frequency_energy(p).mean()


def test_colour_matrix_is_the_photos_colour_covariance_root():
    from course_utils.images import sample_photo

    photos = ["cat", "coffee", "rocket", "astronaut", "camera"]  # the five photos the matrix was computed from
    px = np.concatenate([sample_photo(n).reshape(-1, 3) / 255.0 for n in photos])
    u, s, _ = np.linalg.svd(np.cov(px.T))
    m = u * np.sqrt(s)
    m /= np.linalg.norm(m, axis=0).max()
    ours = ov.COLOUR_SQRT.numpy()
    for j in range(3):  # an SVD's columns are defined up to sign
        assert np.allclose(ours[:, j], m[:, j], atol=1e-3) or np.allclose(ours[:, j], -m[:, j], atol=1e-3)
    # M Mᵀ is the covariance up to one scale
    cov = np.cov(px.T)
    mm = ours @ ours.T
    assert np.allclose(mm / mm[0, 0], cov / cov[0, 0], atol=0.01)


def test_layer_names_must_exist(course):
    with pytest.raises(KeyError, match="Did you mean 'features.relu3'"):
        run(course, ov.channel("features.rellu3", 1))


def test_in_place_relu_after_the_layer_does_not_change_what_is_kept():
    """torchvision-style in-place ReLU right after the captured conv."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3), nn.Flatten(),
                          nn.LazyLinear(3))
    model(torch.zeros(1, 3, 16, 16))
    r = ov.visualize(model.eval(), ov.channel("0", 2) - 0.0 * ov.class_logit(0), size=16, steps=3,
                     mean=MEAN, std=STD, progress=False)
    assert r.steps == 3
    # the first step's score is the conv's *pre-ReLU* mean (negative values survive)
    x0 = (ov.pixels(1, 16, seed=0)() - 0.5) / 0.25
    with torch.no_grad():
        assert r.history[0].item() == pytest.approx(model[0](x0)[0, 2].mean().item(), abs=1e-5)


def test_imagenet_model_by_loaded_model(imagenet_cache):
    from course_utils.models import load_model

    resnet = load_model("resnet18")
    r = ov.visualize(resnet, ov.channel("layer2", 7), size=48, steps=3, progress=False)
    assert r.images.shape == (1, 3, 48, 48)
    torchvision  # (imported for the resnet fixture's module)


# --- the explorer -------------------------------------------------------------------------------


@pytest.fixture
def explorer(empty_torch_home):
    from course_utils.widgets import ActivationMaxExplorer

    return ActivationMaxExplorer(threaded=False)


def test_explorer_redraws_once_per_control_and_the_picture_changes(explorer):
    explorer.controls["steps"].value = 16  # keep the test short
    assert_each_change_redraws(explorer, [("unit", 5), ("layer", "features.relu3"), ("param", "pixels"), ("transforms", False),
                        ("l2", True), ("blur", True), ("lr", 0.1), ("layer", "class logits")])
    assert explorer.controls["unit"].max == 5 and explorer.controls["unit"].description == "Class"


def test_explorer_fits_the_unit_slider_to_the_layer(explorer):
    explorer.controls["steps"].value = 8
    explorer.controls["layer"].value = "features.relu2"
    assert explorer.controls["unit"].max == 31
    explorer.controls["unit"].value = 31
    explorer.controls["layer"].value = "features.relu1"  # 16 channels: the slider is clamped
    assert explorer.controls["unit"].max == 15 and explorer.controls["unit"].value == 15


def test_explorer_results_are_cached(explorer):
    from course_utils.widgets import cached_model

    explorer.controls["steps"].value = 8
    first = bytes(explorer.view.value)
    explorer.controls["unit"].value = 3
    with ForwardCounter(cached_model("course").model) as counter:
        explorer.controls["unit"].value = 0  # back to the first setting: from the cache
        assert counter.calls == 0 and bytes(explorer.view.value) == first
    assert all_hooks(cached_model("course").model) == 0


def test_stop_ends_a_threaded_run_and_keeps_its_image(empty_torch_home):
    import threading

    from course_utils.widgets import ActivationMaxExplorer

    ex = ActivationMaxExplorer(threaded=True)
    ex.wait(60)
    renders = ex.renders
    started = threading.Event()
    ex.controls["progress"].observe(lambda change: started.set() if change["new"] >= 8 else None, names="value")
    ex.controls["steps"].value = 512
    assert started.wait(60), "the run never got going"
    ex.stop()
    ex.wait(60)
    assert ex.renders == renders + 1
    assert ex.message.value.startswith("stopped after ") and ex.controls["progress"].value < 512


def test_a_threaded_run_answers_with_a_picture_after_its_first_step(empty_torch_home):
    """Live frames after step 1 (a change shows a new picture within one step), then every 8
    steps; the finished run's figure comes last."""
    from course_utils.widgets import ActivationMaxExplorer

    ex = ActivationMaxExplorer(threaded=True)
    ex.wait(60)
    frames = []
    ex.view.observe(lambda change: frames.append(ex.controls["progress"].value), names="value")
    ex.controls["steps"].value = 24
    ex.wait(60)
    assert frames == [1, 8, 16, 24, 24] and ex.message.value == ""


# --- the L2 regularizer pulls towards grey (fails on a known mutation: its sign flipped) --------


def test_l2_alone_pulls_every_pixel_towards_grey():
    """With an objective of weight 0, only the L2 term l2 * sum((p - 0.5)^2) acts. Its gradient
    2 * l2 * (p - 0.5) points away from grey, so each Adam step (of size about lr for a
    gradient that keeps its sign) moves each pixel lr closer to 0.5: 5 steps of 0.001 bring
    every pixel that started more than 0.02 from grey 0.005 closer (a little less, as the
    gradient shrinks on the way). A long run ends at grey."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())
    start = ov.pixels(1, 8, seed=0).pixels.detach()
    d0 = (start - 0.5).abs()
    far = d0 > 0.02
    assert far.sum() > 100  # most of the 192 values
    r = ov.visualize(model, 0.0 * ov.channel("1", 0), size=8, steps=5, lr=0.001, l2=1.0, mean=MEAN, std=STD,
                     progress=False)
    d = (r.images - 0.5).abs()
    closer = d0[far] - d[far]
    assert closer.min() > 0.004 and closer.max() < 0.0051
    assert d.mean() < d0.mean()
    # without L2 nothing moves (the objective has weight 0)
    r0 = ov.visualize(model, 0.0 * ov.channel("1", 0), size=8, steps=5, lr=0.001, mean=MEAN, std=STD,
                      progress=False)
    assert torch.equal(r0.images, start)
    long = ov.visualize(model, 0.0 * ov.channel("1", 0), size=8, steps=300, lr=0.01, l2=1.0, mean=MEAN, std=STD,
                        progress=False)
    assert (long.images - 0.5).abs().max() < 0.1 * d0.max()


def test_l2_keeps_an_activation_maximizing_image_closer_to_grey(course):
    """The same run with and without L2: with it, the image strays less far from grey."""
    objective = ov.channel("features.relu3", 5)
    free = run(course, objective, size=32)
    held = run(course, objective, size=32, l2=0.5)
    start = ov.pixels(1, 32, seed=0).pixels.detach()
    spread = [(img - 0.5).pow(2).mean().item() for img in (start, free.images, held.images)]
    assert spread[2] < spread[1]
    assert spread[2] < spread[0]  # held closer to grey than where it started


# --- pinned by mutation testing ------------------------------------------------------------------


def test_pixels_start_grey_plus_noise_clipped_to_the_unit_range():
    start = ov.pixels(2, 64, seed=0).pixels.detach()  # default sd = 0.05: almost nothing clipped
    assert start.shape == (2, 3, 64, 64)
    assert start.mean().item() == pytest.approx(0.5, abs=0.005)
    assert start.std().item() == pytest.approx(0.05, abs=0.005)
    wide = ov.pixels(1, 64, seed=0, sd=1.0).pixels.detach()  # noise far beyond [0, 1]: clipped, not wrapped
    assert wide.min().item() == 0.0 and wide.max().item() == 1.0
    assert 0.2 < (wide == 0).float().mean().item() < 0.4  # P(0.5 + z < 0) = P(z < -0.5) = 0.31


def _fourier_amplitude(param, k: int) -> float:
    """The amplitude, before the sigmoid, of the image made from one real spectrum
    coefficient 0.01 at horizontal frequency k / size (no colour mixing)."""
    spec = param.params[0]
    with torch.no_grad():
        spec.zero_()
        spec[0, :, 0, k, 0] = 0.01
        img = param()[0, 0]
    return torch.log(img / (1 - img)).abs().max().item()


def test_fourier_scales_each_frequency_by_one_over_f():
    """irfft2 (norm="ortho") turns coefficient c at frequency k into (2 c s_k / size) cos(2 pi k x / size),
    and at k = 0 into the constant c s_0 / size, where s_k is the spectrum scale. With the default
    decay 1, s_k ~ 1 / k: k = 1 gives twice the amplitude of k = 2 and three times that of k = 3.
    The constant term (f = 0) is scaled as the lowest frequency 1 / size: s_0 = s_1, so its constant
    is half the k = 1 amplitude."""
    p = ov.fourier(1, 16, seed=0, decorrelate=False)
    a = {k: _fourier_amplitude(p, k) for k in range(4)}
    assert a[1] / a[2] == pytest.approx(2.0, rel=1e-3)
    assert a[1] / a[3] == pytest.approx(3.0, rel=1e-3)
    assert a[0] / a[1] == pytest.approx(0.5, rel=1e-3)
    p2 = ov.fourier(1, 16, seed=0, decay=2.0, decorrelate=False)  # 1 / f^2
    assert _fourier_amplitude(p2, 1) / _fourier_amplitude(p2, 2) == pytest.approx(4.0, rel=1e-3)


def test_random_scale_resizes_bilinearly_and_never_below_one_pixel():
    img = torch.arange(16.0).view(1, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    assert ov.random_scale([1])(img, gen) is img  # scale 1: untouched
    # half size: bilinear sampling halfway between pixels averages each 2x2 block
    half = ov.random_scale([0.5])(img, gen)
    assert half.tolist() == [[[[2.5, 4.5], [10.5, 12.5]]]]
    assert ov.random_scale([2])(img, gen).shape == (1, 1, 8, 8)
    # 4 * 0.1 rounds to 0 pixels: kept at 1 x 1 (the mean of the image)
    tiny = ov.random_scale([0.1])(img, gen)
    assert tiny.shape == (1, 1, 1, 1)
    assert ov.random_scale([0.1])(img[..., :1, :], gen).shape == (1, 1, 1, 1)


def _ramps(size: int) -> torch.Tensor:
    """Channel 0 is the normalized x coordinate of each pixel centre, channel 1 the y coordinate
    (grid_sample's convention with align_corners=False: (2 j + 1) / size - 1), channel 2 x * y."""
    c = (2 * torch.arange(size, dtype=torch.float32) + 1) / size - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x, y, x * y])[None]


def _angle(rotated: torch.Tensor) -> float:
    """The rotation of the x ramp, from its slopes in the middle of the image: sampling the input
    at (cos a x - sin a y, ...) gives out = cos a x - sin a y, so a = atan2(-d/dy, d/dx)."""
    out = rotated[0, 0]
    m = out.shape[-1] // 2
    ddx = (out[m, m + 1] - out[m, m - 1]).item()
    ddy = (out[m + 1, m] - out[m - 1, m]).item()
    return math.degrees(math.atan2(-ddy, ddx))


def test_random_rotate_of_zero_degrees_is_the_identity():
    img = _ramps(16)
    assert torch.allclose(ov.random_rotate(0)(img, torch.Generator().manual_seed(0)), img, atol=1e-5)


def test_random_rotate_draws_angles_evenly_from_minus_to_plus_degrees():
    img = _ramps(32)
    angles = [_angle(ov.random_rotate(30)(img, torch.Generator().manual_seed(s))) for s in range(40)]
    assert all(-30.01 <= a <= 30.01 for a in angles)
    assert min(angles) < -20 and max(angles) > 20  # both directions, out to near the limit
    assert abs(np.mean(angles)) < 7  # uniform on [-30, 30]: mean 0, sd of the mean of 40 about 2.7


def test_standard_transforms_pad_then_scale_by_at_most_five_percent():
    """size 64: k = 2, a grey border of 6 (76 pixels), then scales 0.95 .. 1.05 give
    round(76 * s) in {72, 74, 76, 78, 80}; jitter and rotation keep the size."""
    img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    t = ov.standard_transforms(64)
    sizes = {t(img, torch.Generator().manual_seed(s)).shape[-1] for s in range(60)}
    assert sizes == {72, 74, 76, 78, 80}


def test_gaussian_blur_spreads_an_impulse_into_the_gaussian_kernel():
    """sigma = 1: radius ceil(2 sigma) = 2, weights exp(-x^2 / 2) for x = -2..2, normalized;
    a separable blur turns an impulse into the outer product of the kernel with itself."""
    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, 4, 4] = 1.0
    w = [math.exp(-(x**2) / 2) for x in range(-2, 3)]
    k = torch.tensor(w) / sum(w)  # about [0.054, 0.244, 0.403, 0.244, 0.054]
    expected = torch.zeros(9, 9)
    expected[2:7, 2:7] = k[:, None] * k[None, :]
    assert torch.allclose(ov.gaussian_blur(img, 1.0)[0, 0], expected, atol=1e-6)


def test_neuron_defaults_to_the_centre_of_the_map():
    acts = {"l": torch.arange(2 * 4 * 6, dtype=torch.float32).view(1, 2, 4, 6)}  # 4 x 6 maps
    # centre (4 // 2, 6 // 2) = (2, 3) of channel 1: 24 + 2 * 6 + 3
    assert ov.neuron("l", 1)(acts).tolist() == [39.0]
    assert ov.neuron("l", 1)(acts).tolist() == ov.neuron("l", 1, 2, 3)(acts).tolist()


def test_diversity_averages_over_the_other_images():
    """Three images: 0 and 1 alike (cosine 1), 2 unlike both (cosine 0). Each score is minus the
    mean similarity to the *other* two: -(1 + 0) / 2 for images 0 and 1, -(0 + 0) / 2 for image 2."""
    one_hot = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[:, :, None, None].expand(3, 2, 3, 3)
    assert ov.diversity("l")({"l": one_hot}).tolist() == pytest.approx([-0.5, -0.5, 0.0])
    assert ov.diversity("l")({"l": torch.ones(3, 2, 3, 3)}).tolist() == pytest.approx([-1.0, -1.0, -1.0])


def _summing_model() -> nn.Module:
    """One 1x1 conv adding the three colour channels: every pixel raises its mean."""
    conv = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    return nn.Sequential(conv)


def test_one_step_at_the_default_learning_rate_moves_each_pixel_by_0_05():
    """Adam's first step is lr * g / (|g| + eps): lr = 0.05 in the gradient's sign, for every pixel."""
    start = ov.pixels(1, 8, seed=0).pixels.detach()
    r = ov.visualize(_summing_model(), ov.channel("0", 0), size=8, steps=1, mean=MEAN, std=STD, progress=False)
    assert torch.allclose(r.images - start, torch.full_like(start, 0.05), atol=1e-5)


def test_a_zero_learning_rate_is_refused():
    with pytest.raises(ValueError, match="lr > 0"):
        ov.visualize(_summing_model(), ov.channel("0", 0), size=8, steps=1, lr=0.0, mean=MEAN, std=STD,
                     progress=False)


def test_blur_every_k_blurs_after_every_kth_step():
    """With an objective of weight 0 nothing else moves the pixels: after 1 step with blur_every=2
    the image is the start; after 2 steps it is the start blurred once; blur_every=1 blurs each step."""
    start = ov.pixels(1, 16, seed=0).pixels.detach()
    blurred = ov.gaussian_blur(start, 0.5)
    kw = {"size": 16, "mean": MEAN, "std": STD, "progress": False}
    nothing = 0.0 * ov.channel("0", 0)
    assert torch.equal(ov.visualize(_summing_model(), nothing, steps=1, blur_every=2, **kw).images, start)
    assert torch.allclose(ov.visualize(_summing_model(), nothing, steps=2, blur_every=2, **kw).images, blurred,
                          atol=1e-6)
    assert torch.allclose(ov.visualize(_summing_model(), nothing, steps=1, blur_every=1, **kw).images, blurred,
                          atol=1e-6)


def test_zero_steps_return_the_start_and_an_empty_history():
    start = ov.pixels(2, 8, seed=0).pixels.detach()
    r = ov.visualize(_summing_model(), ov.channel("0", 0), size=8, n=2, steps=0, mean=MEAN, std=STD,
                     progress=False)
    assert r.steps == 0 and r.history.shape == (0, 2) and torch.equal(r.images, start)
