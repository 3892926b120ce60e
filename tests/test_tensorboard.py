"""Graphs and images written for TensorBoard, read back; the graph explorer."""

from __future__ import annotations

import re
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from course_utils import tensorboard as tb
from course_utils.coursenet import CourseNet
from tests.conftest import all_hooks, assert_same_state, model_state


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), relu=nn.ReLU(), pool=nn.MaxPool2d(2),
                                     flatten=nn.Flatten(), fc=nn.Linear(36, 2)))


def test_tiny_graph_holds_one_operation_per_layer_with_hand_computed_shapes(tmp_path):
    tb.write_graph(tiny(), torch.zeros(1, 3, 8, 8), tmp_path)
    ops = tb.layer_ops(tb.read_graph(tmp_path))
    assert [(n.layer, n.op, n.shape) for n in ops] == [
        ("conv", "aten::_convolution", (1, 4, 6, 6)),  # 8 - 3 + 1 = 6
        ("relu", "aten::relu", (1, 4, 6, 6)),
        ("pool", "aten::max_pool2d", (1, 4, 3, 3)),
        ("flatten", "aten::flatten", (1, 36)),
        ("fc", "aten::linear", (1, 2)),
    ]


def test_course_model_graph_and_the_model_comes_back_unchanged(tmp_path):
    model = CourseNet().train()  # training mode: tracing must not update batch-norm statistics
    before = model_state(model)
    tb.write_graph(model, torch.randn(2, 3, 64, 64), tmp_path)
    assert_same_state(before, model_state(model))
    counts = tb.op_counts(tb.read_graph(tmp_path))
    assert counts["aten::_convolution"] == 5 and counts["aten::relu"] == 5 and counts["aten::linear"] == 1
    assert counts["IO Node"] == 2


def test_a_failed_trace_leaves_the_model_as_it_was(tmp_path):
    model = CourseNet().train()
    before = model_state(model)
    with pytest.raises(RuntimeError):
        tb.write_graph(model, torch.zeros(1, 5, 64, 64), tmp_path)  # 5 channels: conv1 refuses
    assert_same_state(before, model_state(model))
    assert all_hooks(model) == 0


def test_images_round_trip(tmp_path):
    black, white = np.zeros((4, 4)), np.ones((4, 4))
    tb.write_images(tmp_path, "pair", np.stack([black, white]))
    tb.write_images(tmp_path, "rgb", np.full((1, 2, 2, 3), 128, np.uint8))
    stored = tb.read_images(tmp_path)
    assert set(stored) == {"pair", "rgb"}
    grid = stored["pair"][0]
    assert set(np.unique(grid)) == {0, 255}  # the two images, tiled into one picture
    assert (grid == 255).sum() == (grid == 0).sum() == 16 * grid.shape[2]
    assert stored["rgb"][0].shape == (2, 2, 3) and (stored["rgb"][0] == 128).all()


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 4, 4, 2)), r"\(N, H, W\) or \(N, H, W, 3\)"),
    (np.full((1, 4, 4), 2.0), "within \\[0, 1\\]"),
    (np.full((1, 4, 4), np.nan), "finite"),
])
def test_bad_images_are_refused(tmp_path, images, message):
    with pytest.raises(ValueError, match=message):
        tb.write_images(tmp_path, "x", images)


def test_reading_without_a_graph_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        tb.read_graph(tmp_path)
    tb.write_images(tmp_path, "only pictures", np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="hold no graph"):
        tb.read_graph(tmp_path)


def test_graph_explorer(imagenet_cache):
    from course_utils.widgets.graphs import GraphExplorer

    ex = GraphExplorer()
    assert ex.renders == 1 and ex.controls["page"].max == 0  # 20 operations: one page
    first = bytes(ex.view.value)
    ex.controls["op"].value = "aten::relu"
    assert ex.renders == 2 and bytes(ex.view.value) != first
    ex.controls["model"].value = "resnet18"
    assert ex.renders == 3  # one redraw for a new model, not one per control it resets
    assert "aten::add_" in ex.controls["op"].options and ex.controls["op"].value == "all"
    assert ex.controls["page"].max == (69 - 1) // 24  # 69 operations in ResNet-18
    table = ex.table.value
    ex.controls["page"].value = 2
    assert ex.renders == 3 and ex.message.value == ""  # a new page is a new table, not a new picture
    assert ex.table.value != table and "operations 48–68 of 69" in ex.table.value


def test_the_operations_table_lists_one_page_and_highlights_a_type():
    from course_utils.widgets.graphs import operations_table

    ops = [SimpleNamespace(op=f"aten::{kind}", layer=f"l{i}" if i else "", shape=(1, 4)) for i, kind in
           enumerate(["conv", "relu", "relu"] * 10)]
    page = operations_table(ops, chosen="aten::conv", page=1, rows=24)
    rows = re.findall(r"<tr style='color:([^']*)'>(.*?)</tr>", page)
    assert len(rows) == 6 and "operations 24–29 of 30" in page
    assert [c for c, _ in rows[:3]] == ["#c44e00", "#9aa5b1", "#9aa5b1"]  # op 24 is a conv
    assert re.findall(r"<td[^>]*>(.*?)</td>", rows[0][1]) == ["24", "l24", "conv", "(1, 4)"]
    first = operations_table(ops, rows=24)
    assert "(functional)" in first and "#c44e00" not in first  # "all": nothing dimmed, nothing highlighted
    assert "no operations on page 9" in operations_table(ops, page=9)
    odd = [SimpleNamespace(op="aten::<lambda>", layer="a&b", shape=None)]
    assert "&lt;lambda&gt;" in operations_table(odd) and "a&amp;b" in operations_table(odd)


def test_the_newest_graph_is_read_when_a_folder_holds_several(tmp_path):
    tb.write_graph(tiny(), torch.zeros(1, 3, 8, 8), tmp_path)
    tb.write_graph(CourseNet(), torch.zeros(1, 3, 64, 64), tmp_path)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    assert tb.op_counts(tb.read_graph(tmp_path))["aten::_convolution"] == 5  # the course model's


def test_images_from_several_writes_are_all_read_oldest_first(tmp_path):
    tb.write_images(tmp_path, "t", np.zeros((1, 2, 2)))
    tb.write_images(tmp_path, "t", np.ones((1, 2, 2)))
    first, second = tb.read_images(tmp_path)["t"]
    assert (first == 0).all() and (second == 255).all()


def test_a_graph_that_fails_is_a_message_not_a_traceback(empty_torch_home):
    from course_utils.widgets.graphs import GraphExplorer

    ex = GraphExplorer()

    def fails(name):
        raise ValueError(f"{name}: no graph")

    ex.ops = fails  # the picture and the table both ask for the operations
    ex.refresh()
    assert "course: no graph" in ex.message.value
