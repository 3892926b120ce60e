"""The explorer, driven as a test drives it: set a control's value, look at the picture."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import io

import ipywidgets as w
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

import course_utils.widgets as widgets
from course_utils.cam import cam
from course_utils.images import SAMPLE_PHOTOS
from course_utils.widgets import PredictionExplorer, choose_image, image_choices
from course_utils.widgets.base import Cache
from tests.conftest import ForwardCounter

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
    assert ex.controls["model"].options == ("course", "efficientnet_lite0")  # no downloaded weights here
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



def test_an_explorer_carries_its_current_picture_for_viewers_that_run_no_widget_code(empty_torch_home):
    """Beside the live widget, the display bundle holds the picture shown now as a plain PNG (GitHub's
    view draws it) and a sentence instead of the widgets' repr; a new picture is the next display's."""
    ex = PredictionExplorer()
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == bytes(ex.view.value)
    assert bundle["text/plain"].startswith("PredictionExplorer: an explorer; run the notebook in JupyterLab")
    ex.controls["image"].value = "scene 3"
    assert base64.b64decode(ex._repr_mimebundle_()["image/png"]) == bytes(ex.view.value) != \
        base64.b64decode(bundle["image/png"])

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
    assert ex.controls["model"].options == ("course", "efficientnet_lite0", "resnet18", "resnet50", "vgg16")
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


# --- the base class is a template; its cache; the prepared input as a record ---------------------


class _Recorder(widgets.ClassExplorer):
    """A class explorer with a control of its own that notes what each step of the template sees."""

    def __init__(self):
        self.log = []
        super().__init__(models=["course"], k=3)

    def make_controls(self):
        self.log.append(("make_controls", hasattr(self, "controls")))
        return {**super().make_controls(), "extra": w.Dropdown(options=["a", "b"], value="a")}

    def callbacks(self):
        self.log.append(("callbacks", sorted(self.controls)))
        return super().callbacks()

    def prepare(self, loaded, x):
        self.log.append(("prepare", sorted(self.controls), self.controls["extra"].value))
        return super().prepare(loaded, x)

    def draw(self):
        self.log.append(("draw", self.controls["extra"].value, self.controls["target"].value))
        return Figure(figsize=(1, 1))


def test_the_template_makes_controls_then_wires_them_then_prepares_then_draws_once(empty_torch_home):
    ex = _Recorder()
    everything = ["extra", "image", "model", "target", "upload"]
    top = ex.controls["target"].options[0][1]
    assert ex.log == [("make_controls", False), ("callbacks", everything), ("prepare", everything, "a"),
                      ("draw", "a", top)]  # the first draw sees every control, the class list filled in
    assert ex.renders == 1 and ex.message.value == ""
    ex.controls["extra"].value = "b"  # a subclass's control redraws by default, and runs nothing again
    assert ex.log[-1] == ("draw", "b", top) and ex.renders == 2 and [e[0] for e in ex.log].count("prepare") == 1


def test_the_cache_keeps_the_most_recently_used_and_computes_each_value_once():
    cache, calls = Cache(2), []

    def make(value):
        return lambda: calls.append(value) or value

    assert cache.fetch("a", make(1)) == 1 and cache.fetch("b", make(2)) == 2
    assert cache.fetch("a", make(99)) == 1  # a hit: not computed again, and "a" is now the most recent
    assert cache.fetch("c", make(3)) == 3  # a third entry: the least recently used one ("b") goes
    assert list(cache) == ["a", "c"] and calls == [1, 2, 3]
    assert cache.fetch("b", make(4)) == 4 and list(cache) == ["c", "b"] and calls == [1, 2, 3, 4]
    assert cache.put("d", 5) == 5 and list(cache) == ["b", "d"]
    with pytest.raises(ZeroDivisionError):
        cache.fetch("e", lambda: 1 / 0)
    assert "e" not in cache and len(cache) == 2  # a failed computation keeps nothing
    unbounded = Cache()
    for i in range(50):
        unbounded.fetch(i, make(i))
    assert len(unbounded) == 50


def test_a_class_explorer_prepares_each_input_once_as_a_record(empty_torch_home):
    ex = widgets.CAMExplorer(k=4)
    model = widgets.cached_model("course").model
    p = ex.prepared()
    assert p.x.shape == (1, 3, 64, 64) and p.shown.shape == (64, 64, 3) and 0 <= p.shown.min() <= p.shown.max() <= 1
    with torch.no_grad():
        probs = model(p.x).softmax(dim=1)[0]
    torch.testing.assert_close(p.logits.softmax(dim=1)[0], probs)
    assert [c for _, c in p.options] == probs.topk(4).indices.tolist()  # the top 4, the most likely first
    assert [float(label.rsplit("(", 1)[1].rstrip(")")) for label, _ in p.options] == [
        round(v, 2) for v in probs.topk(4).values.tolist()]
    c = p.options[1][1]
    torch.testing.assert_close(p.kept[c], cam(model, p.x, c).maps[0])  # CAM keeps every class's map
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = None
    with ForwardCounter(model) as counter:
        assert ex.prepared() is p
        ex.controls["image"].value = "scene 3"  # a star: a new input, a new record
        assert counter.calls == 1 and ex.prepared().options[0][0].startswith("star")
        ex.controls["image"].value = "scene 0"
        assert ex.prepared() is p and counter.calls == 1  # back to the first image: from the cache


def test_an_explorer_lists_its_caches_by_name():
    from course_utils.widgets.base import Cache

    ex = widgets.SaliencyExplorer()
    caches = ex.caches()
    assert {"inputs", "grads"} <= set(caches) and all(isinstance(c, Cache) for c in caches.values())
    assert len(caches["inputs"]) == 1 and len(caches["grads"]) == 1  # the first image and its gradient
    caches["grads"].clear()
    ex.controls["alpha"].value = 0.3  # a redraw computes the gradient again, into the same cache
    assert len(ex.caches()["grads"]) == 1
