"""The explorer, driven as a test drives it: set a control's value, look at the picture."""

from __future__ import annotations

import datetime
import io

import numpy as np
import pytest
from PIL import Image

from course_utils.images import SAMPLE_PHOTOS
from course_utils.widgets import PredictionExplorer, choose_image, image_choices

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def upload(explorer, name: str, content: bytes) -> None:
    explorer.controls["upload"].value = (
        {"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
         "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)},
    )


def test_image_choices_cover_scenes_and_every_sample_photo():
    choices = image_choices()
    assert choices[0] == "scene 0" and any(c.startswith("two objects") for c in choices)
    assert [c for c in choices if c.startswith("photo: ")] == [f"photo: {p}" for p in SAMPLE_PHOTOS]
    assert choose_image("scene 2").shape == (64, 64, 3)
    with pytest.raises(ValueError, match="unknown image 'scene 99'"):
        choose_image("scene 99")


def test_explorer_draws_at_once_and_redraws_on_every_control(empty_torch_home):
    ex = PredictionExplorer()
    assert ex.controls["model"].options == ("course",)  # no ImageNet weights here
    first = bytes(ex.view.value)
    assert first.startswith(PNG_MAGIC) and ex.renders == 1
    ex.controls["image"].value = "scene 3"
    assert ex.renders == 2 and bytes(ex.view.value) != first
    second = bytes(ex.view.value)
    ex.controls["k"].value = 2
    assert ex.renders == 3 and bytes(ex.view.value) != second
    assert ex.message.value == ""


def test_explorer_root_and_view_carry_the_classes_the_browser_test_uses(empty_torch_home):
    ex = PredictionExplorer()
    assert "course-explorer" in ex.widget._dom_classes
    assert "course-explorer-view" in ex.view._dom_classes
    assert ex.controls["image"].description == "Image"


def test_uploaded_image_is_shown_and_a_bad_upload_is_a_message_not_a_crash(empty_torch_home):
    ex = PredictionExplorer()
    upload(ex, "red.png", png_bytes(np.full((30, 40, 3), (255, 0, 0), np.uint8)))
    assert ex.controls["image"].value == "upload: red.png" and ex.renders == 2
    before = bytes(ex.view.value)
    upload(ex, "notes.png", b"this is not an image")
    assert "cannot load" in ex.message.value and "not an image" in ex.message.value
    assert bytes(ex.view.value) == before  # the last good picture stays


def test_imagenet_models_are_offered_when_their_weights_are_cached(imagenet_cache):
    ex = PredictionExplorer()
    assert ex.controls["model"].options == ("course", "resnet18", "resnet50", "vgg16")
    ex.controls["image"].value = "photo: cat"
    ex.controls["model"].value = "resnet18"
    assert ex.message.value == "" and ex.renders == 3


def test_pictures_dropped_in_my_images_are_offered(tmp_path, monkeypatch, empty_torch_home):
    monkeypatch.setenv("COURSE_MY_IMAGES", str(tmp_path))
    (tmp_path / "drawing.png").write_bytes(png_bytes(np.zeros((20, 20, 3), np.uint8)))
    (tmp_path / "notes.txt").write_text("not offered")
    assert [c for c in image_choices() if c.startswith("mine: ")] == ["mine: drawing.png"]
    assert choose_image("mine: drawing.png").shape == (20, 20, 3)
    ex = PredictionExplorer()
    ex.controls["image"].value = "mine: drawing.png"
    assert ex.renders == 2 and ex.message.value == ""
