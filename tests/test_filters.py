"""Lesson 02: filter weights — display scaling, statistics, the random twin, the explorer.

Expected values are written out by hand from tiny weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from course_utils import filters
from course_utils.coursenet import CourseNet
from course_utils.hooks import list_layers
from course_utils.plotting import draw_kernels, draw_rgb_filters
from course_utils.widgets.filters import FilterExplorer, model_for
from tests.conftest import assert_same_state, model_state

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Two 1×1 filters over three colour channels: (out=2, in=3, 1, 1).
W2 = torch.tensor([[1.0, -1.0, 0.5], [0.5, 0.0, -0.25]]).view(2, 3, 1, 1)


def one_conv(weight: torch.Tensor) -> nn.Module:
    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2:], bias=False))
    with torch.no_grad():
        model.conv.weight.copy_(weight)
    return model


# --- scaling for display ---------------------------------------------------------


def test_rgb_tiles_shared_scale_maps_zero_to_grey_and_the_layer_max_to_full():
    tiles = filters.rgb_tiles(W2)  # scale = max |w| over the layer = 1
    assert tiles.shape == (2, 1, 1, 3)
    np.testing.assert_allclose(tiles[0, 0, 0], [1.0, 0.0, 0.75])
    np.testing.assert_allclose(tiles[1, 0, 0], [0.75, 0.5, 0.375])


def test_rgb_tiles_per_filter_scale_stretches_each_filter_to_its_own_max():
    tiles = filters.rgb_tiles(W2, per_filter=True)  # scales 1 and 0.5
    np.testing.assert_allclose(tiles[0, 0, 0], [1.0, 0.0, 0.75])
    np.testing.assert_allclose(tiles[1, 0, 0], [1.0, 0.5, 0.25])


def test_rgb_tiles_with_a_fixed_scale_clip_beyond_it():
    tiles = filters.rgb_tiles(W2, scale=2.0)
    np.testing.assert_allclose(tiles[0, 0, 0], [0.75, 0.25, 0.625])
    np.testing.assert_allclose(filters.rgb_tiles(W2, scale=0.5)[0, 0, 0], [1.0, 0.0, 1.0])  # clipped
    with pytest.raises(ValueError, match="positive"):
        filters.rgb_tiles(W2, scale=0)


def test_constant_filters_give_grey_white_or_black_never_nan():
    w = torch.stack([torch.zeros(3, 2, 2), torch.full((3, 2, 2), 0.2), torch.full((3, 2, 2), -4.0)])
    shared = filters.rgb_tiles(w)
    per = filters.rgb_tiles(w, per_filter=True)
    assert np.isfinite(shared).all() and np.isfinite(per).all()
    assert (shared[0] == 0.5).all() and (per[0] == 0.5).all()  # all zero -> grey
    np.testing.assert_allclose(shared[1], 0.5 + 0.5 * 0.2 / 4)  # shared scale 4
    assert (per[1] == 1.0).all() and (per[2] == 0.0).all()  # own scale: white / black
    zero_layer = filters.rgb_tiles(torch.zeros(2, 3, 1, 1))
    assert (zero_layer == 0.5).all()


def test_filter_scale_and_scaled():
    assert filters.filter_scale(W2).item() == 1.0
    assert filters.filter_scale(W2, per_filter=True).flatten().tolist() == [1.0, 0.5]
    assert filters.filter_scale(torch.zeros(1, 1, 2, 2)).item() == 1.0  # no division by zero
    assert filters.scaled(W2, per_filter=True)[1].flatten().tolist() == [1.0, 0.0, -0.5]


def test_rgb_tiles_refuses_non_rgb_filters_with_a_pointer_to_kernels():
    with pytest.raises(ValueError, match="3 input channels.*draw_kernels"):
        filters.rgb_tiles(torch.zeros(4, 16, 3, 3))
    with pytest.raises(ValueError, match=r"\(out, in, kh, kw\)"):
        filters.rgb_tiles(torch.zeros(3, 3, 3))


# --- reading weights and statistics -------------------------------------------------


def test_conv_weight_is_a_detached_copy_and_non_convs_are_refused():
    model = one_conv(W2)
    w = filters.conv_weight(model, "conv")
    assert w.shape == (2, 3, 1, 1) and not w.requires_grad
    w.zero_()
    assert model.conv.weight.abs().sum() > 0  # the model's weight is untouched
    with pytest.raises(ValueError, match="not a Conv2d.*features.conv1"):
        filters.conv_weight(CourseNet(), "features.bn1")


def test_weight_stats_on_hand_written_weights():
    s = filters.weight_stats(W2)
    assert s["n_weights"] == 6
    assert s["mean"] == pytest.approx(0.75 / 6)
    values = np.array([1.0, -1.0, 0.5, 0.5, 0.0, -0.25])
    assert s["std"] == pytest.approx(values.std())  # population std
    assert s["near_zero"] == pytest.approx(1 / 6)  # only the 0.0 is below 0.05 * max
    assert s["max_abs"] == 1.0
    assert filters.filter_norms(W2).tolist() == pytest.approx([1.5, math.sqrt(0.3125)])
    assert s["norm_min"] == pytest.approx(math.sqrt(0.3125)) and s["norm_max"] == pytest.approx(1.5)
    assert filters.weight_stats(W2, near_zero=0.3)["near_zero"] == pytest.approx(2 / 6)  # 0 and -0.25


def test_channel_sums_and_colour_opponency_by_hand():
    w = torch.zeros(3, 3, 2, 2)
    w[0, 0], w[0, 1] = 0.5, -0.25   # red sums to 2, green to -1: opponent, weaker side 1
    w[1] = 1.0                      # every colour positive: brightness, not opponent
    w[2, 2, 0], w[2, 2, 1] = 1.0, -1.0  # blue edge: sums 0
    np.testing.assert_allclose(filters.channel_sums(w), [[2, -1, 0], [4, 4, 4], [0, 0, 0]])
    assert filters.colour_opponency(w).tolist() == [1.0, 0.0, 0.0]
    assert filters.colour_opponency(W2).tolist() == [1.0, 0.25]


def test_filter_similarity_by_hand():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]).view(3, 2, 1, 1)
    b = torch.tensor([[3.0, 0.0], [-1.0, -1.0], [1.0, 2.0]]).view(3, 2, 1, 1)
    assert filters.filter_similarity(a, b).tolist() == pytest.approx([1.0, -1.0, 0.0])
    with pytest.raises(ValueError, match="different shapes"):
        filters.filter_similarity(a, torch.zeros(3, 3, 1, 1))


def test_all_zero_weight_is_all_near_zero_and_finite():
    s = filters.weight_stats(torch.zeros(2, 3, 1, 1))
    assert s["near_zero"] == 1.0 and s["std"] == 0.0 and s["norm_max"] == 0.0


def test_layer_stats_covers_every_conv_in_order_and_the_table_rounds():
    model = CourseNet()
    stats = filters.layer_stats(model)
    assert list(stats) == list_layers(model, "conv")
    assert stats["features.conv2"]["shape"] == (32, 16, 3, 3)
    assert stats["features.conv2"]["n_weights"] == 32 * 16 * 9
    table = filters.stats_table(filters.layer_stats(one_conv(W2)))
    assert table.splitlines()[1].split() == ["conv", "2×3×1×1", "6", "0.125", "0.641", "0.167", "1.030", "0.559",
                                             "1.500"]


def test_stats_table_never_prints_minus_zero():
    table = filters.stats_table({"c": {"shape": (1, 1, 1, 1), **filters.weight_stats(torch.full((1, 1, 1, 1), -1e-6))}})
    assert "-0.000" not in table


# --- the random twin ------------------------------------------------------------------


def test_random_twin_same_shapes_new_values_seeded_original_untouched():
    torch.manual_seed(123)
    model = CourseNet().eval()
    with torch.no_grad():
        model.features.bn1.running_mean.fill_(3.0)
    before = model_state(model)
    rng_before = torch.get_rng_state()
    twin = filters.random_twin(model, seed=0)
    assert_same_state(before, model_state(model))
    assert torch.equal(torch.get_rng_state(), rng_before)  # global random state untouched
    assert twin is not model and not twin.training
    theirs, ours = twin.state_dict(), model.state_dict()
    assert {k: v.shape for k, v in theirs.items()} == {k: v.shape for k, v in ours.items()}
    assert not torch.equal(theirs["features.conv1.weight"], ours["features.conv1.weight"])
    assert (theirs["features.bn1.running_mean"] == 0).all()  # statistics reset too
    again = filters.random_twin(model, seed=0).state_dict()
    other = filters.random_twin(model, seed=1).state_dict()
    assert all(torch.equal(theirs[k], again[k]) for k in theirs)
    assert not torch.equal(theirs["features.conv1.weight"], other["features.conv1.weight"])


def test_random_twin_of_an_imagenet_architecture(resnet18_random):
    before = model_state(resnet18_random)
    twin = filters.random_twin(resnet18_random, seed=0)
    assert_same_state(before, model_state(resnet18_random))
    assert filters.conv_weight(twin, "conv1").shape == (64, 3, 7, 7)
    assert not torch.equal(twin.conv1.weight, resnet18_random.conv1.weight)


def test_random_twin_refuses_a_layer_it_cannot_reinitialise():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.k = nn.Parameter(torch.ones(1))

    with pytest.raises(ValueError, match="no reset_parameters"):
        filters.random_twin(nn.Sequential(nn.Conv2d(1, 1, 1), Scale()))


# --- drawing helpers --------------------------------------------------------------------


def test_drawing_helpers_return_figures():
    from matplotlib.figure import Figure

    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    assert isinstance(draw_rgb_filters(w, highlight=1, title="t"), Figure)
    assert isinstance(draw_kernels(torch.randn(3, 5, 3, 3), per_filter=True, highlight=(1, 2)), Figure)


# --- the explorer ------------------------------------------------------------------------


def test_explorer_first_control_is_a_dropdown_and_offline_models(empty_torch_home):
    import ipywidgets as w

    ex = FilterExplorer()
    first = next(iter(ex.controls.values()))
    assert isinstance(first, w.Dropdown) and first.description == "Model"
    assert ex.controls["model"].options == ("course", "course (random init)", "efficientnet_lite0")
    assert ex.controls["layer"].options == tuple(list_layers(model_for("course"), "conv"))
    assert bytes(ex.view.value).startswith(PNG_MAGIC) and ex.renders == 1 and ex.message.value == ""
    assert (ex.controls["out_channel"].max, ex.controls["in_channel"].max) == (15, 2)


def test_explorer_redraws_on_every_control(empty_torch_home):
    ex = FilterExplorer()
    steps = [("out_channel", 5), ("in_channel", 2), ("per_filter", True), ("layer", "features.conv4"),
             ("in_channel", 40), ("per_filter", False), ("model", "course (random init)")]
    for n, (name, value) in enumerate(steps, start=2):
        before = bytes(ex.view.value)
        ex.controls[name].value = value
        assert ex.renders == n, f"{name} redrew {ex.renders - n + 1} times"
        assert bytes(ex.view.value) != before, f"{name} did not change the picture"
        assert ex.message.value == ""
    assert ex.controls["layer"].value == "features.conv4"  # kept across the model change
    assert (ex.controls["out_channel"].max, ex.controls["in_channel"].max) == (63, 63)


def test_explorer_clamps_channels_when_the_layer_shrinks(empty_torch_home):
    ex = FilterExplorer(layer="features.conv5")
    ex.controls["out_channel"].value = 60
    ex.controls["in_channel"].value = 50
    renders = ex.renders
    ex.controls["layer"].value = "features.conv1"
    assert ex.renders == renders + 1  # one redraw, not one per slider
    assert (ex.controls["out_channel"].value, ex.controls["in_channel"].value) == (15, 2)


def test_explorer_per_filter_toggle_changes_the_picture(empty_torch_home):
    ex = FilterExplorer()
    shared = bytes(ex.view.value)
    ex.controls["per_filter"].value = True
    assert bytes(ex.view.value) != shared
    ex.controls["per_filter"].value = False
    assert bytes(ex.view.value) == shared  # deterministic: same controls, same picture


def test_explorer_offers_imagenet_models_when_present(imagenet_cache):
    ex = FilterExplorer()
    assert ex.controls["model"].options == ("course", "course (random init)", "efficientnet_lite0", "resnet18",
                                            "resnet50", "vgg16")
    before = bytes(ex.view.value)
    ex.controls["model"].value = "resnet18"
    assert ex.message.value == "" and bytes(ex.view.value) != before
    assert ex.controls["layer"].value == "conv1"
    assert (ex.controls["out_channel"].max, ex.controls["in_channel"].max) == (63, 2)
    ex.controls["layer"].value = "layer4.1.conv2"
    assert (ex.controls["out_channel"].max, ex.controls["in_channel"].max) == (511, 511)
    assert ex.message.value == ""


def test_explorer_leaves_the_cached_model_untouched(empty_torch_home):
    model = model_for("course")
    before = model_state(model)
    ex = FilterExplorer()
    for value in ["features.conv2", "features.conv5"]:
        ex.controls["layer"].value = value
    ex.controls["model"].value = "course (random init)"
    assert_same_state(before, model_state(model))
