"""Model loading: the shipped course model, ImageNet models from the cache, no network."""

from __future__ import annotations

import hashlib
import io
import urllib.error

import numpy as np
import pytest
import torch

from course_utils import models
from course_utils.models import (
    MODEL_NAMES,
    WeightsNotAvailableError,
    available_models,
    load_model,
    weights_path,
)
from course_utils.scenes import CLASSES, make_scene, make_scenes
from course_utils.train import HELDOUT_SEED, HELDOUT_SIZE, accuracy

# --- the course model ------------------------------------------------------------


def test_checkpoint_is_small_and_loads_with_weights_only():
    path = models.course_checkpoint_path()
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
    with pytest.raises(WeightsNotAvailableError, match="git checkout datasets/coursenet.pt"):
        load_model("course")


# --- names -----------------------------------------------------------------------


def test_unknown_model_name_suggests_the_close_one():
    with pytest.raises(ValueError, match=r"unknown model 'resnet5'.*Did you mean 'resnet50'"):
        load_model("resnet5")


# --- no network unless asked -------------------------------------------------------


def test_available_models_without_cache_and_without_network(empty_torch_home, no_network):
    assert available_models() == {"course": True, "resnet18": False, "resnet50": False, "vgg16": False}


def test_uncached_weights_fail_fast_with_instructions(empty_torch_home, no_network):
    with pytest.raises(WeightsNotAvailableError) as err:
        load_model("resnet50")
    msg = str(err.value)
    assert "not on this machine" in msg and str(weights_path("resnet50")) in msg
    assert "make weights" in msg and "download=True" in msg


def test_download_when_offline_gives_one_clear_error(empty_torch_home, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(models.urllib.request, "urlopen", offline)
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
    monkeypatch.setattr(models.urllib.request, "urlopen", lambda url, timeout: FakeResponse(data))
    models._fetch("https://example.invalid/net.pth", good, timeout=1)
    assert good.read_bytes() == data
    bad = tmp_path / "net-00000000.pth"
    with pytest.raises(WeightsNotAvailableError, match="wrong checksum"):
        models._fetch("https://example.invalid/net.pth", bad, timeout=1)
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
    assert dict(m.model.named_modules())[m.last_conv_layer] is not None


def test_download_skips_models_already_cached(imagenet_cache, no_network):
    paths = models.download_weights(["resnet18"])
    assert paths["resnet18"].is_file()


def test_download_command_lists_what_is_here(imagenet_cache, no_network, capsys):
    from course_utils.download import main

    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{n:10s} ready" in out for n in MODEL_NAMES)


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
