"""Model loading: the shipped course model, ImageNet models from the cache, no network."""

from __future__ import annotations

import hashlib
import io
import re
import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from course_utils import coursenet, download, models
from course_utils.models import (
    WeightsNotAvailableError,
    available_models,
    load_model,
    weights_path,
)
from course_utils.scenes import CLASSES, make_scene, make_scenes
from course_utils.train import HELDOUT_SEED, HELDOUT_SIZE, accuracy

# --- the course model ------------------------------------------------------------


def test_checkpoint_is_small_and_loads_with_weights_only():
    path = models.weights_path("course")
    assert path.stat().st_size <= 5 * 1024 * 1024
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["classes"] == list(CLASSES)


def test_course_model_accuracy_on_the_fixed_heldout_set():
    m = load_model("course")
    held = make_scenes(HELDOUT_SIZE, seed=HELDOUT_SEED)
    acc = accuracy(m.model, held.images, held.labels[:, 0])
    assert acc >= 0.97, f"held-out accuracy {acc:.2%} is below 97%"
    # the number in the model card / checkpoint is the one measured here
    # (within two scenes, for floating-point differences between CPUs)
    assert abs(acc - m.info["heldout_accuracy"]) <= 2 / HELDOUT_SIZE


def test_course_model_predicts_a_scene_and_is_in_eval_mode():
    m = load_model("course")
    assert not m.model.training and m.categories == list(CLASSES)
    scene = make_scene(HELDOUT_SEED, 0, classes=["star"])
    top = m.predict([scene.image], k=3)[0]
    assert top[0][0] == "star" and len(top) == 3
    assert top[0][1] > top[1][1] >= top[2][1] and 0.99 <= sum(p for _, p in m.predict([scene.image], k=6)[0]) <= 1.01


def test_course_batch_resizes_any_image_and_round_trips_for_display():
    m = load_model("course")
    scene = make_scene(0, 0)
    x = m.batch([scene.image])
    assert x.shape == (1, 3, 64, 64) and m.input_size == 64
    assert np.abs(m.to_display(x)[0] * 255 - scene.image).max() < 0.51  # exact up to rounding
    big = np.zeros((120, 200, 3), np.uint8)
    assert m.batch(big).shape == (1, 3, 64, 64)  # centre-cropped and resized


def test_batch_refuses_what_is_not_an_rgb_uint8_image():
    m = load_model("course")
    with pytest.raises(ValueError, match=r"load_image converts any image"):
        m.batch([np.zeros((64, 64), np.uint8)])
    with pytest.raises(ValueError, match=r"dtype float64"):
        m.batch([np.zeros((64, 64, 3))])


def test_missing_course_checkpoint_says_how_to_restore_it(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CHECKPOINT", str(tmp_path / "nope.pt"))
    with pytest.raises(WeightsNotAvailableError, match="git checkout course_utils/checkpoints/coursenet.pt"):
        load_model("course")


# --- names -----------------------------------------------------------------------


def test_unknown_model_name_suggests_the_close_one():
    with pytest.raises(ValueError, match=r"unknown model 'resnet5'.*Did you mean 'resnet50'"):
        load_model("resnet5")


# --- no network unless asked -------------------------------------------------------


def test_available_models_without_cache_and_without_network(empty_torch_home, no_network):
    assert available_models() == {"course": True, "efficientnet_lite0": True, "resnet18": False, "resnet50": False,
                                  "vgg16": False}  # the two that install with the course, and no others


def test_uncached_weights_fail_fast_with_instructions(empty_torch_home, no_network):
    with pytest.raises(WeightsNotAvailableError) as err:
        load_model("resnet50")
    msg = str(err.value)
    assert "not on this machine" in msg and str(weights_path("resnet50")) in msg
    assert "make weights" in msg and "download=True" in msg


def test_download_when_offline_gives_one_clear_error(empty_torch_home, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(WeightsNotAvailableError, match=r"could not download the weights for 'vgg16'.*online"):
        load_model("vgg16", download=True)
    assert not list((empty_torch_home / "hub" / "checkpoints").glob("*"))  # nothing half-written


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}

    def __exit__(self, *exc):
        self.close()


def test_fetch_checks_the_hash_in_the_file_name(tmp_path, monkeypatch):
    data = b"pretend weights"
    good = tmp_path / f"net-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: FakeResponse(data))
    download._fetch("https://example.invalid/net.pth", good, timeout=1)
    assert good.read_bytes() == data
    bad = tmp_path / "net-00000000.pth"
    with pytest.raises(WeightsNotAvailableError, match="wrong checksum"):
        download._fetch("https://example.invalid/net.pth", bad, timeout=1)
    assert not bad.exists() and not list(tmp_path.glob("*.part"))


def test_corrupt_weights_file_names_the_file(empty_torch_home):
    path = weights_path("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsNotAvailableError, match=r"cannot be read.*course_utils.download resnet18"):
        load_model("resnet18")


# --- ImageNet models, with random weights in a temporary cache ----------------------


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg16"])
def test_imagenet_models_load_from_the_cache(imagenet_cache, no_network, name):
    assert available_models()[name]
    m = load_model(name)
    assert len(m.categories) == 1000 and m.categories[281] == "tabby"
    photo = np.random.default_rng(0).integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    x = m.batch([photo, photo])
    assert x.shape == (2, 3, 224, 224) and m.input_size == 224  # weights.transforms(): resize 256, crop 224
    top = m.predict([photo], k=5)[0]
    assert len(top) == 5 and all(c in m.categories for c, _ in top)
    # the loaded weights are the cached file's, not a fresh random draw
    saved = torch.load(weights_path(name), weights_only=True)
    first = next(iter(saved))
    assert torch.equal(m.model.state_dict()[first], saved[first])
    assert dict(m.model.named_modules())[m.record.gradcam_layer] is not None


def test_download_skips_models_already_cached(imagenet_cache, no_network):
    paths = download.download_weights(["resnet18"])
    assert paths["resnet18"].is_file()


def test_download_command_lists_what_is_here(imagenet_cache, no_network, capsys):
    from course_utils.download import main

    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{n:18s} ready" in out for n in models.model_names())


def test_the_shortcut_model_learned_the_background():
    """Lesson 10's checkpoint: right on biased scenes, near chance when the background
    says nothing, while the course model gets both right."""
    from course_utils.models import load_model
    from course_utils.scenes import make_scenes
    from course_utils.train import accuracy

    shortcut, course = load_model("shortcut"), load_model("course")
    biased, unbiased = make_scenes(120, seed=1, bias=0.95), make_scenes(120, seed=1, bias=0.0)
    assert accuracy(shortcut.model, biased.images, biased.labels[:, 0]) > 0.9
    assert accuracy(shortcut.model, unbiased.images, unbiased.labels[:, 0]) < 0.35
    assert accuracy(course.model, unbiased.images, unbiased.labels[:, 0]) > 0.9
    assert shortcut.info["train"]["bias"] == 0.95


# --- predict leaves a model in train mode alone ----------------------------------------


def test_predict_on_a_model_in_train_mode_uses_eval_mode_and_leaves_it():
    m = load_model("course")
    images = [make_scene(0, 0, classes=["star"]).image, make_scene(0, 1, classes=["circle"]).image]
    expected = m.predict(images, k=6)  # in eval mode, as loaded
    m.model.train()
    buffers = {k: v.clone() for k, v in m.model.named_buffers()}
    got = m.predict(images, k=6)
    assert m.model.training and all(mod.training for mod in m.model.modules())  # handed back in train mode
    for k, v in m.model.named_buffers():
        assert torch.equal(v, buffers[k]), f"{k} changed"  # batch-norm running statistics untouched
    assert [[c for c, _ in top] for top in got] == [[c for c, _ in top] for top in expected]
    assert np.allclose([[p for _, p in top] for top in got], [[p for _, p in top] for top in expected], atol=1e-6)


# --- the centre crop of non-square images ------------------------------------------------


def distinct_pixels(h, w):
    """An (h, w, 3) uint8 image in which every row and every column differs."""
    return np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("h, w, rows, cols", [
    (64, 100, slice(0, 64), slice(18, 82)),  # wide: left = (100 - 64) // 2 = 18
    (100, 64, slice(18, 82), slice(0, 64)),  # tall: top = (100 - 64) // 2 = 18
    (65, 64, slice(0, 64), slice(0, 64)),    # one row too many: top = 1 // 2 = 0
    (64, 67, slice(0, 64), slice(1, 65)),    # three columns too many: left = 3 // 2 = 1
])
def test_course_transform_crops_the_centre_of_a_non_square_image(h, w, rows, cols):
    """A crop to 64 x 64 needs no resize, so the result is exactly the centre pixels."""
    m = load_model("course")
    image = distinct_pixels(h, w)
    shown = m.to_display(m.batch(image))[0] * 255
    assert np.abs(shown - image[rows, cols]).max() < 0.51


def test_course_transform_crops_before_resizing():
    """10 high x 16 wide, every column its own value: the centre square is columns 3..12."""
    column = np.arange(16, dtype=np.uint8) * 10          # 0, 10, ..., 150
    image = np.broadcast_to(column[None, :, None], (10, 16, 3)).copy()
    t = coursenet.CourseTransform(size=10)                   # square side 10: a crop, no resize
    out = t(torch.from_numpy(image).permute(2, 0, 1))
    back = (out * t.std + t.mean) * 255
    expected = torch.arange(3, 13).float() * 10           # 30, 40, ..., 120 in every row and channel
    assert back.shape == (3, 10, 10)
    torch.testing.assert_close(back, expected.expand(3, 10, 10), atol=1e-3, rtol=0)


# --- damaged checkpoints: one clear error, naming the file --------------------------------


def course_checkpoint(**changes):
    """The shipped checkpoint's contents, with some entries replaced (None deletes one)."""
    ckpt = torch.load(models.CHECKPOINTS / "coursenet.pt", map_location="cpu", weights_only=True)
    for key, value in changes.items():
        if value is None:
            del ckpt[key]
        else:
            ckpt[key] = value
    return ckpt


def with_nan(state, key):
    state = {k: v.clone() for k, v in state.items()}
    state[key].view(-1)[0] = float("nan")
    return state


def shipped_state():
    return course_checkpoint()["state_dict"]


DAMAGED_COURSE = {
    "random bytes": (lambda: None, r"cannot be read"),
    "a list": (lambda: [1, 2, 3], r"holds a list"),
    "a bare state dict": (shipped_state, r"bare state dict.*'classes'"),
    "no classes": (lambda: course_checkpoint(classes=None), r"no 'classes'"),
    "wrong architecture": (lambda: course_checkpoint(state_dict=torch.nn.Linear(3, 2).state_dict()),
                           r"not the course architecture.*missing"),
    "too few classes": (lambda: course_checkpoint(classes=["a", "b"]), r"fc.weight.*\(6, 64\).*\(2, 64\)"),
    "NaN weights": (lambda: course_checkpoint(state_dict=with_nan(shipped_state(), "features.conv3.weight")),
                    r"NaN or infinite.*features.conv3.weight"),
    "inf weights": (lambda: course_checkpoint(state_dict={**shipped_state(), "fc.bias": torch.full((6,), float("inf"))}),
                    r"NaN or infinite.*fc.bias"),
    "a weight that is not a tensor": (lambda: course_checkpoint(state_dict={**shipped_state(), "fc.bias": [0.0] * 6}),
                                      r"not a tensor.*fc.bias"),
    "classes that are not names": (lambda: course_checkpoint(classes=7), r"'classes'"),
}


def write_checkpoint(path, content):
    if content is None:
        path.write_bytes(np.random.default_rng(0).bytes(1000))
    else:
        torch.save(content, path)
    return path


@pytest.mark.parametrize("case", list(DAMAGED_COURSE))
def test_damaged_course_checkpoint_gives_one_clear_error(case, tmp_path, monkeypatch):
    make, what = DAMAGED_COURSE[case]
    path = write_checkpoint(tmp_path / "coursenet.pt", make())
    monkeypatch.setenv("COURSE_CHECKPOINT", str(path))
    with pytest.raises(WeightsNotAvailableError) as err:
        load_model("course")
    msg = str(err.value)
    assert type(err.value) is WeightsNotAvailableError, type(err.value)
    assert str(path) in msg and re.search(what, msg), msg
    assert "git checkout course_utils/checkpoints/coursenet.pt" in msg and "python -m course_utils.train" in msg
    assert "course_utils.download" not in msg  # that command knows no "course"


@pytest.mark.parametrize("case", ["random bytes", "a bare state dict", "NaN weights"])
def test_damaged_shortcut_checkpoint_gives_one_clear_error(case, tmp_path, monkeypatch):
    make, what = DAMAGED_COURSE[case]
    content = make()  # from the shipped checkpoint, before the path is moved
    monkeypatch.setattr(models, "CHECKPOINTS", tmp_path)
    path = write_checkpoint(tmp_path / "shortcutnet.pt", content)
    assert weights_path("shortcut") == path
    with pytest.raises(WeightsNotAvailableError) as err:
        load_model("shortcut")
    msg = str(err.value)
    assert str(path) in msg and re.search(what, msg), msg
    assert "git checkout course_utils/checkpoints/shortcutnet.pt" in msg
    assert "python -m course_utils.train --shortcut" in msg and "course_utils.download" not in msg


def test_a_damaged_checkpoint_is_listed_as_available_and_load_model_says_what_is_wrong(tmp_path, monkeypatch):
    """available_models() only looks for the file (cheap, documented); load_model reports the damage."""
    path = write_checkpoint(tmp_path / "coursenet.pt", None)
    monkeypatch.setenv("COURSE_CHECKPOINT", str(path))
    assert available_models()["course"]
    assert "damaged" in available_models.__doc__ and "load_model" in available_models.__doc__
    with pytest.raises(WeightsNotAvailableError, match="cannot be read"):
        load_model("course")


@pytest.mark.parametrize("case, make, what", [
    ("another model's weights", lambda: torch.nn.Linear(3, 2).state_dict(), r"not the resnet18 architecture"),
    ("a list", lambda: [1, 2], r"holds a list"),
    ("NaN weights", lambda: with_nan(torchvision.models.resnet18().state_dict(), "layer4.1.conv2.weight"),
     r"NaN or infinite.*layer4.1.conv2.weight"),
])
def test_damaged_imagenet_weights_give_one_clear_error(empty_torch_home, no_network, case, make, what):
    path = weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(make(), path)
    with pytest.raises(WeightsNotAvailableError) as err:
        load_model("resnet18")
    msg = str(err.value)
    assert str(path) in msg and re.search(what, msg), msg
    assert "python -m course_utils.download resnet18" in msg


def test_old_imagenet_files_without_num_batches_tracked_still_load(empty_torch_home, no_network):
    """torchvision's resnet18 file predates batch norm's num_batches_tracked: torch fills
    it in, so the damage checks must not call those keys missing."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(old, path)
    m = load_model("resnet18")
    assert torch.equal(m.model.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])


# --- pinned by mutation testing ---


def test_downscaling_averages_neighbouring_pixels_instead_of_skipping_them():
    """128 x 128 columns 0, 0, 255, 255, ... down to 64 x 64: bilinear with antialiasing
    weighs the four columns around each output column 1/8, 3/8, 3/8, 1/8, so the
    stripes blur to 2/8 * 255 = 63.75 and 6/8 * 255 = 191.25 (a plain bilinear sample
    at factor 2 would keep 0 and 255: aliasing). At the edges the weights that fall
    outside are dropped: 1/7 * 255 = 36.4 on the left, 6/7 * 255 = 218.6 on the right."""
    m = load_model("course")
    column = np.array([0, 0, 255, 255] * 32, np.uint8)
    image = np.broadcast_to(column[None, :, None], (128, 128, 3)).copy()
    shown = m.to_display(m.batch(image))[0] * 255  # (64, 64, 3)
    expected = np.array([36.4] + [191.25, 63.75] * 31 + [218.6])  # 64 columns
    assert np.abs(shown - expected[None, :, None]).max() < 1.0


def test_top_classes_default_is_five_and_a_single_logit_vector_is_one_image():
    m = load_model("course")
    probs = torch.tensor([0.02, 0.08, 0.10, 0.15, 0.25, 0.40])  # softmax(log p) = p
    c = m.categories
    expected = [(c[5], 0.40), (c[4], 0.25), (c[3], 0.15), (c[2], 0.10), (c[1], 0.08)]
    for logits in (probs.log(), probs.log()[None]):  # (6,) and (1, 6)
        top = m.top_classes(logits)
        assert len(top) == 1 and [name for name, _ in top[0]] == [name for name, _ in expected]
        assert np.allclose([p for _, p in top[0]], [p for _, p in expected], atol=1e-6)


def test_the_course_checkpoint_env_variable_is_named_only_for_the_course_model(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT", str(tmp_path / "mine.pt"))
    with pytest.raises(WeightsNotAvailableError, match=r"COURSE_CHECKPOINT environment variable points "
                                                       r"at this file; unset it"):
        load_model("course")
    # the shortcut model is never read from COURSE_CHECKPOINT: its error does not mention it
    monkeypatch.setattr(models, "CHECKPOINTS", tmp_path)
    with pytest.raises(WeightsNotAvailableError) as err:
        load_model("shortcut")
    assert "shortcutnet.pt" in str(err.value) and "COURSE_CHECKPOINT" not in str(err.value)


@pytest.mark.parametrize("content, missing", [
    ("no classes", "no 'classes' entry;"),
    ({}, "no 'state_dict', 'classes', 'mean', 'std' entries;"),
])
def test_only_a_dict_of_tensors_is_called_a_bare_state_dict(content, missing, tmp_path, monkeypatch):
    ckpt = course_checkpoint(classes=None) if content == "no classes" else content
    monkeypatch.setenv("COURSE_CHECKPOINT", str(write_checkpoint(tmp_path / "coursenet.pt", ckpt)))
    with pytest.raises(WeightsNotAvailableError) as err:
        load_model("course")
    msg = str(err.value)
    assert f"it is not a course checkpoint: it has {missing}" in msg and "bare state dict" not in msg


class RecordingBar:
    """Stands in for tqdm: records the total it is given and what it is told."""

    made: list = []

    def __init__(self, total=None, **kwargs):
        self.total, self.n = total, 0
        RecordingBar.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        self.n += n


@pytest.mark.parametrize("content_length", [True, False])
def test_fetch_shows_the_size_when_the_server_gives_it_and_works_without(content_length, tmp_path, monkeypatch):
    import tqdm.auto

    data = b"pretend weights" * 1000
    response = FakeResponse(data)
    if not content_length:
        response.headers = {}  # the server sent no Content-Length
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: response)
    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    RecordingBar.made = []
    dest = tmp_path / f"net-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    download._fetch("https://example.invalid/net.pth", dest, timeout=1)
    assert dest.read_bytes() == data
    [bar] = RecordingBar.made
    assert bar.total == (len(data) if content_length else None) and bar.n == len(data)


# --- the registry: one record per model ----------------------------------------------------------


@pytest.mark.parametrize("name", list(models.MODELS))
def test_each_record_names_layers_its_architecture_has_and_cam_applies_where_it_says(name):
    """Blocks are spatial, in forward order; CAM works at the record's CAM layer exactly
    when the record names one (random weights: the architecture decides, not training)."""
    from course_utils import cam
    from course_utils.hooks import capture

    record = models.MODELS[name]
    torch.manual_seed(0)
    net = record.build().eval()
    assert type(net) is record.architecture and models.record_for(net).blocks == record.blocks
    x = torch.randn(1, 3, record.input_size, record.input_size)
    order = []
    hooks = [net.get_submodule(b).register_forward_hook(lambda m, i, o, b=b: order.append(b)) for b in record.blocks]
    with capture(net, list(record.blocks)) as acts, torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    assert order == list(record.blocks), "blocks are listed early to late"
    sides = [acts[b].shape[-1] for b in record.blocks]
    assert all(acts[b].ndim == 4 for b in record.blocks) and sides == sorted(sides, reverse=True)
    if record.cam_layer is None:
        with pytest.raises(ValueError, match="CAM does not apply"):
            cam.cam(net, x)
    else:
        assert record.cam_layer == record.gradcam_layer and record.fc
        assert cam.cam(net, x).maps.shape == acts[record.cam_layer].shape[:1] + acts[record.cam_layer].shape[2:]


def test_records_of_one_architecture_agree_on_the_default_layers():
    """record_for() picks the first record of a network's architecture: those defaults must fit them all."""
    by_arch = {}
    for r in models.MODELS.values():
        by_arch.setdefault(r.architecture, set()).add((r.cam_layer, r.fc, r.gradcam_layer))
    assert all(len(defaults) == 1 for defaults in by_arch.values()), by_arch
    assert "shortcut" in models.MODELS and "shortcut" not in models.model_names()  # loaded by name, never offered
    assert [n for n in models.model_names() if models.MODELS[n].shipped] == ["course", "efficientnet_lite0"]


def test_a_network_missing_a_layer_its_record_names_has_no_record():
    """record_for() follows each named layer down the children: one missing two levels down (the course
    model's features.relu5) or at the top (ResNet's fc) and the network is not the course's model."""
    net = coursenet.CourseNet()
    assert models.record_for(net).name == "course"
    del net.features.relu5
    with pytest.raises(ValueError, match="CourseNet is not one of the course's models"):
        models.record_for(net)
    resnet = torchvision.models.resnet18()
    assert models.record_for(resnet).architecture is torchvision.models.ResNet
    del resnet.fc
    with pytest.raises(ValueError, match="ResNet is not one of the course's models"):
        models.record_for(resnet)


@pytest.mark.parametrize("name", [n for n, r in models.MODELS.items() if not r.shipped])
def test_imagenet_records_match_their_weights_preprocessing(name):
    tf = models.MODELS[name].tv_weights.transforms()
    assert tuple(tf.mean) == models.MODELS[name].mean and tuple(tf.std) == models.MODELS[name].std
    assert tf.crop_size[0] == models.MODELS[name].input_size


def test_course_records_match_their_shipped_checkpoints():
    for name in ("course", "shortcut", "debiased"):
        ckpt = torch.load(weights_path(name), map_location="cpu", weights_only=True)
        record = models.MODELS[name]
        assert tuple(ckpt["mean"]) == record.mean and tuple(ckpt["std"]) == record.std, name
