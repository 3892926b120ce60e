"""Lesson 01: capturing feature maps, display normalizations, and the explorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_utils import features
from course_utils.hooks import LayerNotFoundError
from tests.conftest import all_hooks, assert_each_change_redraws, assert_same_state, ForwardCounter, model_state

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_model() -> nn.Sequential:
    """conv (1 -> 1, 2x2 kernel [[1, 2], [3, 4]], bias -50) -> ReLU -> 2x2 max pool."""
    conv = nn.Conv2d(1, 1, 2, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
        conv.bias.fill_(-50.0)
    return nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2)).eval()


X = torch.arange(1.0, 10.0).view(1, 1, 3, 3)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


# --- capturing ----------------------------------------------------------------------


def test_feature_maps_equal_values_worked_out_by_hand():
    acts = features.feature_maps(tiny_model(), X, ["0", "1", "2"])
    # 1*1 + 2*2 + 4*3 + 5*4 = 37, then 47, 67, 77; minus 50
    assert torch.equal(acts["0"], torch.tensor([[[[-13.0, -3.0], [17.0, 27.0]]]]))
    assert torch.equal(acts["1"], torch.tensor([[[[0.0, 0.0], [17.0, 27.0]]]]))
    assert torch.equal(acts["2"], torch.tensor([[[[27.0]]]]))
    assert list(acts) == ["0", "1", "2"] and not acts["0"].requires_grad


def test_layer_shapes_of_the_tiny_and_the_course_model():
    assert features.layer_shapes(tiny_model(), X) == [
        ("0", "Conv2d", (1, 1, 2, 2)), ("1", "ReLU", (1, 1, 2, 2)), ("2", "MaxPool2d", (1, 1, 1, 1))]
    from course_utils.models import load_model

    course = load_model("course")
    table = {n: (t, s) for n, t, s in features.layer_shapes(course.model, torch.zeros(1, 3, 64, 64))}
    assert table["features.relu1"] == ("ReLU", (1, 16, 64, 64))
    assert table["features.pool2"] == ("MaxPool2d", (1, 32, 16, 16))
    assert table["features.relu5"] == ("ReLU", (1, 64, 16, 16))
    assert table["fc"] == ("Linear", (1, 6)) and "features" not in table  # leaves only
    top = features.layer_shapes(course.model, torch.zeros(1, 3, 64, 64), depth=1)
    assert [n for n, _, _ in top] == ["features", "gap", "fc"]
    with pytest.raises(ValueError, match="at least 1"):
        features.layer_shapes(course.model, torch.zeros(1, 3, 64, 64), depth=0)


def test_layer_shapes_of_resnet_blocks(resnet18_random):
    table = {n: s for n, _, s in features.layer_shapes(resnet18_random, torch.zeros(1, 3, 224, 224), depth=1)}
    assert table["maxpool"] == (1, 64, 56, 56) and table["layer4"] == (1, 512, 7, 7) and table["fc"] == (1, 1000)
    assert all_hooks(resnet18_random) == 0


def test_feature_layers_are_the_spatial_ones_in_order():
    from course_utils.models import load_model

    names = features.feature_layers(load_model("course").model)
    assert names[:4] == ["features.conv1", "features.relu1", "features.pool1", "features.conv2"]
    assert names[-1] == "features.relu5" and len(names) == 12  # 5 conv, 5 relu, 2 pool
    assert not any(n.startswith(("features.bn", "gap", "fc")) for n in names)


def test_no_hook_left_after_normal_runs_and_after_an_error_half_way():
    model = tiny_model()
    before = model_state(model)
    features.feature_maps(model, X, ["0", "2"])
    features.layer_shapes(model, X)
    features.mean_activation(model, X, "1")
    assert_same_state(before, model_state(model))

    broken = nn.Sequential(tiny_model()[0], nn.ReLU(), Boom()).eval()
    before = model_state(broken)
    with pytest.raises(RuntimeError, match="boom"):
        features.feature_maps(broken, X, ["0", "1"])
    assert_same_state(before, model_state(broken))
    assert all_hooks(broken) == 0


def test_unknown_layer_is_a_clear_error_and_adds_no_hook():
    model = tiny_model()
    with pytest.raises(LayerNotFoundError, match="no layer named 'conv'"):
        features.feature_maps(model, X, ["0", "conv"])
    with pytest.raises(LayerNotFoundError):
        features.mean_activation(model, X, "relu")
    assert all_hooks(model) == 0


def test_feature_maps_agree_with_torchvision_feature_extractor():
    from torchvision.models.feature_extraction import create_feature_extractor

    from course_utils.models import load_model

    model = load_model("course").model
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    names = ["features.conv1", "features.pool2", "features.relu5"]
    ours = features.feature_maps(model, x, names)
    with torch.no_grad():
        theirs = create_feature_extractor(model, names)(x)
    for n in names:
        torch.testing.assert_close(ours[n], theirs[n], rtol=0, atol=1e-6)
    assert all_hooks(model) == 0


# --- normalizations -------------------------------------------------------------------

TWO = np.array([[[0.0, 1.0], [2.0, 3.0]], [[10.0, 10.0], [10.0, 30.0]]])  # two 2x2 channels


def test_minmax_per_channel_by_hand():
    out = features.minmax_per_channel(TWO)
    np.testing.assert_allclose(out, [[[0, 1 / 3], [2 / 3, 1]], [[0, 0], [0, 1]]], rtol=1e-6)
    assert out.dtype == np.float32


def test_shared_scale_keeps_relative_strength():
    out = features.minmax_shared(TWO)
    np.testing.assert_allclose(out, TWO / 30.0, rtol=1e-6)  # min 0, max 30 over both channels
    # per-channel min-max shows a weak channel as strongly as a strong one; a shared scale does not
    weak_strong = np.stack([np.eye(3) * 0.01, np.eye(3) * 10.0])
    assert features.minmax_per_channel(weak_strong)[0].max() == features.minmax_per_channel(weak_strong)[1].max()
    assert features.minmax_shared(weak_strong)[0].max() == pytest.approx(0.001)


def test_standardize_recipe_by_hand():
    a = np.array([[[-1.0, -1.0], [1.0, 1.0]],  # mean 0, std 1 -> 128 -+ 64
                  [[0.0, 0.0], [0.0, 4.0]]])  # mean 1, std sqrt(3): 128 - 64/sqrt(3) = 91.05, 128 + 192/sqrt(3) = 238.85
    out = features.standardize_recipe(a)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[[64, 64], [192, 192]], [[91, 91], [91, 239]]])
    # one bright pixel among zeros: mean 12.5, std 33.07 -> z = 2.65, 128 + 64 z = 297 clips to 255
    spike = np.array([[[0.0] * 4, [0.0] * 3 + [100.0]]])
    np.testing.assert_array_equal(features.standardize_recipe(spike), [[[104] * 4, [104] * 3 + [255]]])


@pytest.mark.parametrize("method", list(features.NORMALIZATIONS))
@pytest.mark.parametrize("fill", [0.0, 5.0, -2.5])
def test_a_constant_channel_never_gives_nan(method, fill):
    maps = torch.full((3, 4, 4), fill)
    out = features.normalize(maps, method)
    assert out.dtype == np.float32 and out.shape == (3, 4, 4) and np.isfinite(out).all()
    expected = 128 / 255 if method.startswith("standardize") else 0.0  # mid-grey, or black
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_a_constant_channel_next_to_a_live_one():
    maps = np.stack([np.zeros((4, 4)), np.arange(16.0).reshape(4, 4)])
    assert (features.minmax_per_channel(maps)[0] == 0).all()
    assert (features.standardize_recipe(maps)[0] == 128).all()
    assert features.minmax_per_channel(maps)[1].max() == 1.0


@pytest.mark.parametrize("method", list(features.NORMALIZATIONS))
def test_normalize_gives_float32_in_0_1_with_the_input_shape(method):
    maps = torch.randn(2, 5, 7, 9, generator=torch.Generator().manual_seed(1)) * 40
    out = features.normalize(maps, method)
    assert out.dtype == np.float32 and out.shape == (2, 5, 7, 9)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert features.normalize(maps[0, 0], method).shape == (7, 9)  # a single map works too


def test_normalize_refuses_bad_input():
    with pytest.raises(ValueError, match="choose one of"):
        features.normalize(np.zeros((2, 2)), "minmax")
    with pytest.raises(ValueError, match="NaN"):
        features.normalize(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="at least 2-D"):
        features.normalize(np.zeros(4))


# --- arranging channels and finding selective ones ---------------------------------


def test_channel_pages():
    assert features.channel_pages(40, 16) == [("0–15", 0), ("16–31", 16), ("32–39", 32)]
    assert features.channel_pages(16, 16) == [("0–15", 0)]


def test_mean_activation_and_most_selective_channel_by_hand():
    acts = features.mean_activation(tiny_model(), torch.cat([X, X * 0, X * 2]), "1", batch_size=2)
    # ReLU maps: [[0, 0], [17, 27]] -> mean 11; zeros -> 0 (bias -50); X*2: [[24, 44], [84, 104]] -> 64
    torch.testing.assert_close(acts, torch.tensor([[11.0], [0.0], [64.0]]))
    means = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 2.0], [0.0, 3.0, 2.0]])
    # targets (rows 0, 1) minus the rest (row 2): [1, -3, 0] -> channel 0
    assert features.most_selective_channel(means, [True, True, False]) == 0
    assert features.most_selective_channel(means, [False, False, True]) == 1
    with pytest.raises(ValueError, match="some images"):
        features.most_selective_channel(means, [True, True, True])
    with pytest.raises(ValueError, match="one True/False per image"):
        features.most_selective_channel(means, [True, False])


# --- the explorer --------------------------------------------------------------------


@pytest.fixture
def explorer(empty_torch_home):
    from course_utils.widgets.feature_maps import FeatureMapExplorer

    return FeatureMapExplorer()


def test_explorer_redraws_on_every_control(explorer):
    first = bytes(explorer.view.value)
    assert first.startswith(PNG_MAGIC) and explorer.renders == 1 and explorer.message.value == ""
    assert_each_change_redraws(explorer, [("normalization", "shared scale"), ("channel", 5), ("layer", "features.relu3"),
                        ("page", 16), ("normalization", "standardize x64 +128"), ("image", "scene 3")])


def test_opening_the_explorer_runs_the_model_once():
    from course_utils.widgets.base import cached_model
    from course_utils.widgets.feature_maps import FeatureMapExplorer

    with ForwardCounter(cached_model("course").model) as counter:
        ex = FeatureMapExplorer()
    assert counter.calls == 1 and ex.renders == 1  # the first picture reuses that pass


def test_only_a_new_image_runs_the_model(explorer):
    with ForwardCounter(explorer.loaded.model) as counter:
        explorer.controls["normalization"].value = "shared scale"
        explorer.controls["page"].value = 0
        explorer.controls["channel"].value = 9
        explorer.controls["layer"].value = "features.conv4"
        explorer.controls["page"].value = 48
        assert counter.calls == 0 and explorer.renders == 5
        explorer.controls["image"].value = "photo: cat"
        assert counter.calls == 1
        explorer.controls["image"].value = "scene 0"  # seen before: from the cache
        explorer.controls["normalization"].value = "per-channel min-max"
        assert counter.calls == 1
    assert all_hooks(explorer.loaded.model) == 0


def test_changing_layer_fits_page_and_channel_to_its_width(explorer):
    ex = explorer
    ex.controls["layer"].value = "features.relu5"  # 64 channels
    ex.controls["page"].value = 48
    ex.controls["channel"].value = 60
    renders = ex.renders
    ex.controls["layer"].value = "features.relu2"  # 32 channels: page 48 and channel 60 do not exist
    assert ex.renders == renders + 1
    assert [v for _, v in ex.controls["page"].options] == [0, 16]
    assert ex.controls["page"].value == 0
    assert ex.controls["channel"].max == 31 and ex.controls["channel"].value == 31
    ex.controls["page"].value = 16
    ex.controls["layer"].value = "features.conv3"  # 64 channels: page 16 still exists, kept
    assert ex.controls["page"].value == 16 and ex.controls["channel"].max == 63


def test_explorer_keeps_its_cache_small_and_refuses_unknown_layers(empty_torch_home):
    from course_utils.widgets.feature_maps import FeatureMapExplorer

    ex = FeatureMapExplorer(cache_size=2)
    for choice in ["scene 1", "scene 2", "scene 3"]:
        ex.controls["image"].value = choice
    assert len(ex.caches()["cache"]) == 2
    with pytest.raises(ValueError, match="choose a layer"):
        FeatureMapExplorer(layer="fc")


def test_explorer_shows_an_upload(explorer):
    import datetime
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((40, 30, 3), (200, 30, 30), np.uint8)).save(buf, format="PNG")
    content = buf.getvalue()
    before = bytes(explorer.view.value)
    explorer.controls["upload"].value = (
        {"name": "red.png", "type": "image/png", "size": len(content), "content": memoryview(content),
         "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)},)
    assert explorer.controls["image"].value == "upload: red.png" and explorer.message.value == ""
    assert bytes(explorer.view.value) != before and explorer.renders == 2


def test_show_feature_maps_returns_a_figure():
    from matplotlib.figure import Figure

    from course_utils.plotting import show_feature_maps

    fig = show_feature_maps(np.random.default_rng(0).random((6, 8, 8)), ncols=3, first_channel=10,
                            highlight=12, title="t")
    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == [str(c) for c in range(10, 16)] and len(fig.axes[0].patches) == 1


def test_a_model_in_training_mode_comes_back_unchanged():
    from course_utils.coursenet import CourseNet

    model = CourseNet().train()
    before = model_state(model)
    features.feature_maps(model, torch.randn(2, 3, 64, 64), ["features.bn1", "features.relu5"])
    assert_same_state(before, model_state(model))  # batch-norm running statistics included
