"""Explanation metrics (lessons 09–10), on hand-made maps and masks with known answers."""

from __future__ import annotations

import copy
import gc

import numpy as np
import pytest
import torch
from torch import nn

from course_utils import evaluation as ev
from course_utils.coursenet import CourseNet
from tests.conftest import assert_each_change_redraws, assert_same_state, model_state


def square_mask(size=8, lo=2, hi=5):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[lo:hi, lo:hi] = True  # 9 of 64 pixels
    return m


def test_pointing_game_by_hand():
    mask = square_mask()
    inside = torch.zeros(8, 8)
    inside[3, 3] = 1.0
    outside = torch.zeros(8, 8)
    outside[7, 0] = 1.0
    flat = torch.ones(8, 8)
    hits = ev.pointing_game(torch.stack([inside, outside, flat]), torch.stack([mask] * 3))
    assert hits.tolist() == [True, False, False]  # a flat map points nowhere


def test_pointing_game_resizes_a_coarse_map():
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[40:56, 40:56] = True
    coarse = torch.zeros(16, 16)
    coarse[12, 12] = 1.0  # covers pixels 48..51
    assert ev.pointing_game(coarse, mask).tolist() == [True]


def test_energy_inside_by_hand():
    mask = square_mask()
    uniform = torch.ones(8, 8)
    assert ev.energy_inside(uniform, mask).item() == pytest.approx(9 / 64)  # the mask's area share
    peaked = torch.zeros(8, 8)
    peaked[2:5, 2:5] = 2.0
    peaked[0, 0] = 2.0
    peaked[7, 7] = -5.0  # negative values do not count
    assert ev.energy_inside(peaked, mask).item() == pytest.approx(18 / 20)
    assert ev.energy_inside(torch.zeros(8, 8), mask).item() == 0.0  # never NaN


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="2 maps but 1 masks"):
        ev.pointing_game(torch.zeros(2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        ev.energy_inside(torch.zeros(1, 1, 4, 4), torch.zeros(4, 4, dtype=torch.bool))


class Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([1.0, 2.0, 0.0]))

    def forward(self, x):
        return self.bias.expand(x.shape[0], 3)


class Counter(nn.Module):
    """Class 1's logit is the number of positive pixels (scaled), class 0's is 0."""

    def forward(self, x):
        k = (x > 0).float().flatten(1).mean(1) * 10
        return torch.stack([torch.zeros_like(k), k], dim=1)


def test_deletion_on_a_constant_model_is_flat():
    x = torch.randn(2, 3, 8, 8)
    maps = torch.rand(2, 8, 8)
    fr, scores = ev.deletion_curve(Constant(), x, maps, None, steps=4)
    expected = torch.softmax(torch.tensor([1.0, 2.0, 0.0]), 0)[1]
    assert fr.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert torch.allclose(scores, expected.expand(2, 5))
    assert torch.allclose(ev.auc(fr, scores), expected.expand(2))


def test_deletion_and_insertion_follow_the_ranking():
    x = torch.ones(1, 3, 4, 4)  # every pixel positive: class 1 wins
    good = torch.arange(16.0).view(1, 4, 4)
    fr, deleted = ev.deletion_curve(Counter(), x, good, 1, steps=4)
    probs = deleted[0].tolist()
    assert probs == sorted(probs, reverse=True) and probs[-1] == pytest.approx(0.5)  # all gone: a tie
    fr, inserted = ev.insertion_curve(Counter(), x, good, 1, steps=4)
    assert inserted[0, 0].item() == pytest.approx(0.5) and inserted[0, -1].item() == deleted[0, 0].item()
    # the pixel order: with 1 of 4 steps, the 4 top-ranked pixels (values 12..15) are removed first
    fr, one = ev.deletion_curve(Constant(), x, good, 1, steps=1)
    assert one.shape == (1, 2)


def test_curves_leave_the_model_unchanged_and_check_targets():
    model = CourseNet().train()
    before = model_state(model)
    x = torch.randn(2, 3, 32, 32)
    ev.deletion_curve(model, x, torch.rand(2, 8, 8), [1, 2], steps=3)
    assert_same_state(before, model_state(model))
    with pytest.raises(ValueError, match="out of range"):
        ev.insertion_curve(model, x, torch.rand(2, 8, 8), 9, steps=2)
    with pytest.raises(ValueError, match="2 targets given for a batch of 1"):
        ev.deletion_curve(model, x[:1], torch.rand(1, 8, 8), [1, 2], steps=2)


def test_spearman_and_ssim_by_hand():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert ev.spearman(a, a * 10 + 3) == pytest.approx(1.0)
    assert ev.spearman(a, -a) == pytest.approx(-1.0)
    assert ev.spearman(a, torch.tensor([[1.0, 1.0], [2.0, 2.0]])) == pytest.approx(0.8944, abs=1e-4)  # ties
    assert ev.spearman(a, torch.ones(2, 2)) == 0.0
    img = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
    assert ev.ssim(img, img) == pytest.approx(1.0)
    assert ev.ssim(img, img * 2 + 1) == pytest.approx(1.0)  # each map is scaled to [0, 1] first
    assert ev.ssim(img, torch.rand(16, 16, generator=torch.Generator().manual_seed(1))) < 0.3


def test_cascading_randomization_goes_top_down_and_leaves_the_model():
    torch.manual_seed(0)
    model = CourseNet().eval()
    before = model_state(model)
    rng_before = torch.random.get_rng_state()
    seen = []
    for name, twin in ev.cascading_randomization(model, ["fc", "features.conv5", "features.conv4"], seed=1):
        changed = [n for n, p in twin.named_parameters() if not torch.equal(p, model.get_parameter(n))]
        seen.append((name, sorted({n.rsplit(".", 1)[0] for n in changed})))
    assert seen == [("fc", ["fc"]), ("features.conv5", ["fc", "features.conv5"]),
                    ("features.conv4", ["fc", "features.conv4", "features.conv5"])]
    assert_same_state(before, model_state(model))
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    a = [dict(t.named_parameters())["fc.weight"].clone() for _, t in ev.cascading_randomization(model, ["fc"], 5)]
    b = [dict(t.named_parameters())["fc.weight"].clone() for _, t in ev.cascading_randomization(model, ["fc"], 5)]
    assert torch.equal(a[0], b[0])


LAYERS = ["fc", "features.conv5", "features.conv4", "features.conv1"]


def randomized_weights(model, consume_rng: bool):
    """The twin's state after each step, with or without a torch.rand in the loop body."""
    steps = []
    for _, twin in ev.cascading_randomization(model, LAYERS, seed=3):
        if consume_rng:
            torch.rand(1000)
        steps.append({k: v.clone() for k, v in twin.state_dict().items()})
    return steps


def test_cascading_randomization_does_not_depend_on_the_loop_body():
    torch.manual_seed(0)
    model = CourseNet().eval()
    quiet, busy = randomized_weights(model, False), randomized_weights(model, True)
    for step_quiet, step_busy in zip(quiet, busy, strict=True):
        for k in step_quiet:
            assert torch.equal(step_quiet[k], step_busy[k]), k


def test_cascading_randomization_broken_off_leaves_a_later_seed_alone():
    model = CourseNet().eval()
    gen = ev.cascading_randomization(model, LAYERS, seed=0)
    next(gen)  # break after the first step
    torch.manual_seed(123)
    del gen
    gc.collect()
    got = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(got, torch.rand(3))


def test_cascading_randomization_never_touches_the_global_random_state():
    model = CourseNet().eval()
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    for _, twin in ev.cascading_randomization(model, LAYERS, seed=0):
        assert torch.equal(torch.random.get_rng_state(), before)  # also between the steps
    assert torch.equal(torch.random.get_rng_state(), before)


def test_cascading_randomization_draws_what_reset_parameters_draws_after_manual_seed():
    """Lesson 09's exercise 2 redoes the first steps by hand with torch.manual_seed(seed)
    and reset_parameters(): the generator must give the same weights."""
    torch.manual_seed(0)
    model = CourseNet().eval()
    steps = randomized_weights(model, False)
    by_hand = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for layer, step in zip(LAYERS, steps):
            by_hand.get_submodule(layer).reset_parameters()
            for k, v in by_hand.state_dict().items():
                assert torch.equal(v, step[k]), (layer, k)


def test_cascading_randomization_resets_batch_norm_layers_too():
    torch.manual_seed(0)
    model = CourseNet().eval()
    with torch.no_grad():
        model.features.bn5.weight.fill_(3.0)
        model.features.bn5.running_var.fill_(5.0)
    _, twin = next(ev.cascading_randomization(model, ["features.bn5"]))
    assert torch.equal(twin.features.bn5.weight, torch.ones(64))
    assert torch.equal(twin.features.bn5.running_var, torch.ones(64))
    assert torch.equal(model.features.bn5.running_var, torch.full((64,), 5.0))


def test_cascading_randomization_refuses_a_layer_it_cannot_reset_before_copying():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    with pytest.raises(TypeError, match=r"'0' is an nn.Embedding"):
        next(ev.cascading_randomization(model, ["1", "0"]))


def test_pointing_game_tolerance_counts_near_misses():
    mask = square_mask()  # rows and columns 2..4
    near = torch.zeros(8, 8)
    near[6, 3] = 1.0  # 2 pixels below the square
    assert ev.pointing_game(near, mask).tolist() == [False]
    assert ev.pointing_game(near, mask, tolerance=1).tolist() == [False]
    assert ev.pointing_game(near, mask, tolerance=2).tolist() == [True]
    corner = torch.zeros(8, 8)
    corner[6, 6] = 1.0  # 2 down and 2 right of the corner: distance 2.83
    assert ev.pointing_game(corner, mask, tolerance=2).tolist() == [False]
    assert ev.pointing_game(corner, mask, tolerance=3).tolist() == [True]


# --- the explorers of lessons 09 and 10 ------------------------------------------------------------

EXPLORER_CHANGES = {
    "EvaluationExplorer": [("scene", 3), ("metric", "energy inside"), ("metric", "deletion"),
                           ("method", "guided backprop"), ("metric", "insertion"), ("scene", 5)],
    "ShortcutExplorer": [("background", "circle's"), ("model", "course"), ("model", "debiased"),
                         ("method", "guided backprop"), ("shape", "cross"), ("background", "ordinary (random)"),
                         ("scene", 4)],
}


@pytest.mark.parametrize("name", list(EXPLORER_CHANGES))
def test_explorers_redraw_once_per_control_and_the_picture_changes(name, empty_torch_home):
    import course_utils.widgets as widgets

    ex = getattr(widgets, name)()
    assert ex.renders == 1 and ex.message.value == ""
    assert_each_change_redraws(ex, EXPLORER_CHANGES[name])


def test_evaluation_explorer_computes_each_method_once(empty_torch_home):
    from course_utils.widgets import EvaluationExplorer, cached_model
    from tests.conftest import ForwardCounter

    ex = EvaluationExplorer(n_scenes=6)
    ex.controls["metric"].value = "deletion"
    with ForwardCounter(cached_model("course").model) as counter:
        for i in range(6):
            ex.controls["scene"].value = i
        ex.controls["metric"].value = "pointing game"
        assert counter.calls == 0
    # the explorer's numbers are the library's
    assert torch.equal(ex.scores("Grad-CAM (last block)", "pointing game"),
                       ev.pointing_game(ex.maps("Grad-CAM (last block)"), ex.masks).float())


def test_shortcut_explorer_draws_the_chosen_background():
    from course_utils.scenes import SIGNATURES
    from course_utils.widgets import ShortcutExplorer

    ex = ShortcutExplorer()
    ex.controls["shape"].value = "star"
    ex.controls["background"].value = "circle's"
    corner = ex.scene().image[:8, :8].reshape(-1, 3).mean(0) / 255
    red = np.array(SIGNATURES[0][0])
    assert np.abs(corner - red).max() < 0.2  # the circle's brick red, not the star's yellow


def test_the_shortcut_explorer_shows_the_retrained_model_naming_the_shape():
    """The fix of lesson 10 in the explorer: on the circle's colours the shortcut model calls a star
    a circle and the retrained model calls it a star."""
    from course_utils.scenes import CLASSES
    from course_utils.widgets import ShortcutExplorer
    from course_utils.widgets.base import cached_model

    ex = ShortcutExplorer()
    ex.controls["shape"].value, ex.controls["background"].value = "star", "circle's"
    x = cached_model("course").batch([ex.scene().image])
    with torch.no_grad():
        answers = {name: cached_model(name).model(x).argmax().item() for name in ("shortcut", "debiased")}
    assert answers == {"shortcut": CLASSES.index("circle"), "debiased": CLASSES.index("star")}
    assert "debiased" in ex.controls["model"].options


def test_ranks_share_ties():
    from course_utils.evaluation import _rank

    assert _rank(torch.tensor([10.0, 30.0, 20.0, 30.0, 10.0])).tolist() == [1.5, 4.5, 3.0, 4.5, 1.5]
    assert _rank(torch.zeros(3)).tolist() == [2.0, 2.0, 2.0]


# --- cases on which a plausible slip gives another answer (each fails on a known mutation) -------


def test_a_flat_map_points_nowhere_even_when_the_mask_covers_its_first_pixel():
    """A flat map's argmax is pixel 0, the top-left corner: with a mask over that corner it
    must still score False (it points nowhere), at any level and with a tolerance."""
    corner = torch.zeros(8, 8, dtype=torch.bool)
    corner[0:3, 0:3] = True
    maps = torch.stack([torch.full((8, 8), 0.7), torch.zeros(8, 8), torch.full((8, 8), -2.0)])
    assert ev.pointing_game(maps, torch.stack([corner] * 3)).tolist() == [False, False, False]
    assert ev.pointing_game(maps, torch.stack([corner] * 3), tolerance=2).tolist() == [False, False, False]
    everywhere = torch.ones(8, 8, dtype=torch.bool)
    assert ev.pointing_game(torch.ones(8, 8), everywhere).tolist() == [False]
    almost_flat = torch.full((8, 8), 0.7)
    almost_flat[1, 1] = 0.7001  # not flat: its maximum is on the object
    assert ev.pointing_game(almost_flat, corner).tolist() == [True]


class PixelProbe(nn.Module):
    """Class 1's logit is the value of one pixel (row 2, column 5, channel 0); class 0's is 0.
    So class 1's probability is sigmoid(that pixel): sigmoid(2) with the pixel, 1/2 without."""

    def forward(self, x):
        v = x[:, 0, 2, 5]
        return torch.stack([torch.zeros_like(v), v], dim=1)


def test_deletion_and_insertion_take_the_most_important_pixels_first():
    """A 4 x 6 image (24 pixels), 4 steps of 6 pixels. Map 0 ranks the probe's pixel first,
    map 1 ranks it last: deletion drops to 1/2 at the first step for map 0 and only at the
    last for map 1; insertion rises at the first step for map 0, at the last for map 1."""
    x = torch.full((2, 3, 4, 6), 2.0)
    first = torch.arange(24.0).view(4, 6)
    first[2, 5] = 100.0  # the most important pixel
    last = torch.arange(24.0).view(4, 6)
    last[2, 5] = -1.0  # the least important pixel
    maps = torch.stack([first, last])
    s, half = torch.sigmoid(torch.tensor(2.0)).item(), 0.5  # 0.8808
    fr, deleted = ev.deletion_curve(PixelProbe(), x, maps, 1, steps=4)
    assert fr.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    torch.testing.assert_close(deleted, torch.tensor([[s, half, half, half, half],
                                                      [s, s, s, s, half]]))
    fr, inserted = ev.insertion_curve(PixelProbe(), x, maps, 1, steps=4)
    torch.testing.assert_close(inserted, torch.tensor([[half, s, s, s, s],
                                                       [half, half, half, half, s]]))
    # the areas: the faithful map deletes to a small area, inserts to a large one
    torch.testing.assert_close(ev.auc(fr, deleted), torch.tensor([0.25 * (s / 2 + 1.75), 0.25 * (3.5 * s + 0.25)]))
    torch.testing.assert_close(ev.auc(fr, inserted), torch.tensor([0.25 * (3.5 * s + 0.25), 0.25 * (s / 2 + 1.75)]))


def test_auc_is_the_trapezoid_area_with_the_given_spacing():
    """Not the mean of the scores: unequal steps, non-constant curves, worked out by hand."""
    fractions = torch.tensor([0.0, 0.1, 0.5, 1.0])
    scores = torch.tensor([[1.0, 0.8, 0.4, 0.0],    # 0.1*0.9 + 0.4*0.6 + 0.5*0.2 = 0.43 (mean 0.55)
                           [0.0, 0.0, 1.0, 1.0]])   # 0 + 0.4*0.5 + 0.5*1 = 0.7 (mean 0.5)
    torch.testing.assert_close(ev.auc(fractions, scores), torch.tensor([0.43, 0.7]))
    even = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(ev.auc(even, torch.tensor([1.0, 0.0, 0.0])), torch.tensor(0.25))  # mean 1/3


def framed_pair(seed: int, size: int = 24, frame: int = 5):
    """Two maps in [0, 1] (minimum 0 and maximum 1 reached, so the scaling changes nothing),
    zero on a frame `frame` pixels wide: there padding by replication and by reflection agree."""
    g = np.random.default_rng(seed)
    a = np.zeros((size, size))
    inner = g.random((size - 2 * frame, size - 2 * frame))
    a[frame:-frame, frame:-frame] = inner
    b = np.zeros((size, size))
    b[frame:-frame, frame:-frame] = np.clip(0.6 * inner + 0.4 * g.random(inner.shape) ** 2, 0, 1)
    for m in (a, b):
        m[size // 2, size // 2] = 1.0
    return a, b


@pytest.mark.parametrize("window, sigma", [(11, 1.5), (7, 0.8)])
@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_equals_scikit_image(seed, window, sigma):
    """scikit-image's SSIM with a Gaussian window (truncated at 3.5 sigma: 11 taps for sigma 1.5,
    7 for 0.8, as the course's ``window``), population covariance, data range 1 and the same
    K1, K2; its full SSIM map averaged over every pixel (it crops the border, the course does
    not, and on a zero frame its reflecting padding equals the course's replicating one)."""
    from skimage.metrics import structural_similarity

    a, b = framed_pair(seed)
    assert int(3.5 * sigma + 0.5) == window // 2  # the same window
    _, full = structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=sigma,
                                    use_sample_covariance=False, full=True)
    ours = ev.ssim(a, b, window=window, sigma=sigma)
    assert 0.2 < ours < 0.95  # a non-trivial pair
    assert ours == pytest.approx(full.mean(), abs=1e-9)
    assert ev.ssim(torch.from_numpy(a), torch.from_numpy(b * 5 - 2), window=window, sigma=sigma) == \
        pytest.approx(full.mean(), abs=1e-9)  # each map scaled to [0, 1] first


# --- pinned by mutation testing ---


def test_a_coarse_map_is_resized_as_the_lessons_upsample_it():
    """Bilinear with align_corners=False, as cam.upsample draws it: columns (0 1) become
    (0 0.25 0.75 1). So a mask over the third column holds 0.75 of the total 2: 0.375."""
    coarse = torch.tensor([[0.0, 1.0]]).expand(2, 2)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[:, 2] = True
    m, k = ev.to_mask_size(coarse, mask)
    assert m.tolist() == [[[0.0, 0.25, 0.75, 1.0]] * 2] and torch.equal(k, mask[None])
    assert ev.energy_inside(coarse, mask).item() == pytest.approx(0.375)


def test_pointing_game_is_strict_by_default():
    """A peak one pixel off the object misses, unless a tolerance is asked for (the module's
    pointing game is "without a tolerance"; lesson 09 adds one explicitly)."""
    mask = square_mask()  # rows and columns 2..4
    next_to_it = torch.zeros(8, 8)
    next_to_it[5, 3] = 1.0  # right below the square
    assert ev.pointing_game(next_to_it, mask).tolist() == [False]
    assert ev.pointing_game(next_to_it, mask, tolerance=1).tolist() == [True]


def test_ssim_defaults_to_a_7_tap_gaussian_window_of_sigma_1_5():
    """An independent SSIM (Wang et al. 2004, eq. 13) with SciPy's Gaussian filter of
    sigma 1.5 truncated at radius 3 (7 taps), replicated borders ('nearest'), each map
    first scaled to [0, 1]; on maps with structure up to the border, where padding counts."""
    from scipy.ndimage import gaussian_filter

    g = np.random.default_rng(4)
    a = g.random((20, 20))
    b = np.clip(0.7 * a + 0.3 * g.random((20, 20)), 0, None)

    def reference(x, y):
        x, y = ((v - v.min()) / (v.max() - v.min()) for v in (x, y))

        def blur(v):
            return gaussian_filter(v, sigma=1.5, mode="nearest", radius=3)

        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        c1, c2 = 0.01**2, 0.03**2
        return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()

    expected = reference(a, b)
    assert 0.3 < expected < 0.95  # a non-trivial pair
    assert ev.ssim(a, b) == pytest.approx(expected, abs=1e-12)


def test_ssim_refuses_maps_that_are_not_two_2d_maps_of_one_size():
    with pytest.raises(ValueError, match=r"two 2-D maps of one size, got \(8, 8\) and \(4, 4\)"):
        ev.ssim(torch.rand(8, 8), torch.rand(4, 4))
    with pytest.raises(ValueError, match=r"two 2-D maps of one size, got \(2, 8, 8\) and \(2, 8, 8\)"):
        ev.ssim(torch.rand(2, 8, 8), torch.rand(2, 8, 8))


def test_a_map_at_the_masks_size_is_used_as_it_is():
    """Resized only when needed: a map already at the mask's size keeps its exact values,
    so a log-scaled map (-inf where the map was 0; no resampling to smear it into NaN)
    points where the map points."""
    mask = square_mask()  # rows and columns 2..4
    m = torch.zeros(8, 8)
    m[3, 4] = 3.0  # the peak, on the object
    m[0, 0] = 1.0
    log_m = m.log()
    assert torch.equal(ev.to_mask_size(log_m, mask)[0][0], log_m)
    assert ev.pointing_game(torch.stack([m, log_m]), torch.stack([mask, mask])).tolist() == [True, True]


def test_masks_and_maps_may_be_lists_of_per_image_tensors_or_arrays():
    """A list of (H, W) masks (one tensor per scene, or NumPy arrays) is stacked as a batch:
    the same answers as the stacked tensor."""
    mask = square_mask()  # rows and columns 2..4
    on, off = torch.zeros(8, 8), torch.zeros(8, 8)
    on[3, 3], off[7, 0] = 1.0, 1.0
    stacked_maps, stacked_masks = torch.stack([on, off]), torch.stack([mask, mask])
    for maps, masks in [([on, off], [mask, mask]), ([on.numpy(), off.numpy()], [mask.numpy(), mask.numpy()]),
                        (stacked_maps.numpy(), stacked_masks.numpy()), (stacked_maps, stacked_masks)]:
        assert ev.pointing_game(maps, masks).tolist() == [True, False]
        assert ev.energy_inside(maps, masks).tolist() == [1.0, 0.0]


def test_pointing_game_tolerance_reaches_the_same_distance_in_every_direction():
    """A one-pixel object at (4, 4): peaks 2 pixels above, below, left and right of it are
    hits with a tolerance of 2, and misses with a tolerance of 1."""
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[4, 4] = True
    maps = torch.zeros(4, 9, 9)
    for i, (y, x) in enumerate([(2, 4), (6, 4), (4, 2), (4, 6)]):
        maps[i, y, x] = 1.0
    masks = torch.stack([mask] * 4)
    assert ev.pointing_game(maps, masks, tolerance=2).tolist() == [True] * 4
    assert ev.pointing_game(maps, masks, tolerance=1).tolist() == [False] * 4


def test_energy_inside_does_not_depend_on_the_maps_scale():
    """A share: the same 18 / 20 for a map of total 20, 0.2 or 0.002 (e.g. a normalised map)."""
    mask = square_mask()
    peaked = torch.zeros(8, 8)
    peaked[2:5, 2:5] = 2.0
    peaked[0, 0] = 2.0
    for scale in (1.0, 0.01, 1e-4):
        assert ev.energy_inside(peaked * scale, mask).item() == pytest.approx(18 / 20), scale


class PixelAt(nn.Module):
    """Class 1's logit is channel 0 of the pixel (row, col); class 0's is 0."""

    def __init__(self, row, col):
        super().__init__()
        self.row, self.col = row, col

    def forward(self, x):
        v = x[:, 0, self.row, self.col]
        return torch.stack([torch.zeros_like(v), v], dim=1)


def test_curves_rank_the_pixels_of_the_map_as_the_lessons_show_it():
    """A 1 x 4 image, one pixel per step; the model looks at the last pixel (column 3).
    A coarse map (0, 1, 0.65) is upsampled bilinearly with align_corners=False, as
    cam.upsample draws it: (0, 0.625, 0.86875, 0.65), so column 3 goes second
    (with align_corners=True, (0, 0.667, 0.883, 0.65), it would go third).
    A map at the image's size is used as it is, even log-scaled (-inf where it was 0):
    log(0, 3, 0, 1) ranks columns 1, 3, 0, 2, so column 3 goes second too."""
    x = torch.full((1, 3, 1, 4), 2.0)
    s, half = torch.sigmoid(torch.tensor(2.0)).item(), 0.5
    expected = torch.tensor([[s, s, half, half, half]])
    _, deleted = ev.deletion_curve(PixelAt(0, 3), x, torch.tensor([[[0.0, 1.0, 0.65]]]), 1, steps=4)
    torch.testing.assert_close(deleted, expected)
    log_map = torch.tensor([[[0.0, 3.0, 0.0, 1.0]]]).log()
    _, deleted = ev.deletion_curve(PixelAt(0, 3), x, log_map, 1, steps=4)
    torch.testing.assert_close(deleted, expected)


def test_ssim_of_flat_maps_is_defined():
    """A flat map scales to all zeros (not 0/0): two flat maps, at any levels, are identical
    (SSIM 1), and a flat map against a structured one gives a number, not NaN."""
    assert ev.ssim(torch.full((8, 8), 3.0), torch.zeros(8, 8)) == 1.0
    img = torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
    assert 0.0 <= ev.ssim(torch.ones(8, 8), img) < 0.5


def test_cascading_randomization_resets_a_block_of_layers():
    """A block (a Sequential of convolution, batch norm and ReLU) can be given as one layer:
    each of its layers drawn as torch.manual_seed(seed) and their reset_parameters() in turn;
    the layers outside the block keep their weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()),
                          nn.Flatten(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        model[0][1].weight.fill_(3.0)
    _, twin = next(ev.cascading_randomization(model, ["0"], seed=2))
    by_hand = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        by_hand[0][0].reset_parameters()
        by_hand[0][1].reset_parameters()
    for k, v in by_hand.state_dict().items():
        assert torch.equal(v, twin.state_dict()[k]), k
    assert not torch.equal(twin[0][0].weight, model[0][0].weight)
    assert torch.equal(twin[0][1].weight, torch.ones(4)) and torch.equal(twin[2].weight, model[2].weight)
