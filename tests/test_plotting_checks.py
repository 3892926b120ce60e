"""Pure drawing functions and the exercise checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils import checks, plotting


def test_figure_to_png_returns_png_bytes():
    fig = plotting.show_image(np.zeros((8, 8, 3), np.uint8))
    assert plotting.figure_to_png(fig).startswith(b"\x89PNG")


def test_image_grid_lays_out_and_hides_spare_axes():
    fig = plotting.image_grid([np.zeros((4, 4, 3), np.uint8)] * 5, titles=list("abcde"), ncols=3)
    axes = fig.axes
    assert len(axes) == 6 and not axes[5].axison and axes[4].get_title() == "e"
    with pytest.raises(ValueError, match="no images"):
        plotting.image_grid([])


def test_float_images_outside_0_1_are_refused_with_a_hint():
    with pytest.raises(ValueError, match=r"spans \[-2, 2\].*to_display"):
        plotting.show_image(np.linspace(-2, 2, 48).reshape(4, 4, 3))
    with pytest.raises(ValueError, match="NaN"):
        plotting.show_image(np.full((4, 4, 3), np.nan))


def test_overlay_heatmap_needs_a_2d_map():
    with pytest.raises(ValueError, match="2-D"):
        plotting.overlay_heatmap(np.zeros((8, 8, 3), np.uint8), np.zeros((1, 4, 4)))
    fig = plotting.overlay_heatmap(np.zeros((8, 8, 3), np.uint8), np.eye(4))
    assert len(fig.axes[0].images) == 2


def test_topk_bars_draws_one_bar_per_class_most_likely_on_top():
    fig = plotting.topk_bars([("star", 0.7), ("cross", 0.2), ("circle", 0.1)])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["circle", "cross", "star"]
    assert [round(p.get_width(), 2) for p in ax.patches] == [0.1, 0.2, 0.7]


@pytest.mark.parametrize(
    "yours, expected, passed, words",
    [
        (None, [1.0], False, "not answered yet"),
        ([1.0, 2.0], [1.0, 2.0], True, "exact"),
        (torch.tensor([1.0, 2.0 + 3e-7]), [1.0, 2.0], True, "max difference < 1e-06"),
        ([1.0, 2.1], [1.0, 2.0], False, "max difference 0.1"),
        ([1.0], [[1.0]], False, "shape (1,) but expected (1, 1)"),
        ([float("nan")], [1.0], False, "NaN"),
        ("abc", [1.0], False, "cannot read your answer"),
    ],
)
def test_verdict(yours, expected, passed, words):
    ok, message = checks.verdict("thing", yours, expected)
    assert ok is passed and words in message and "thing" in message


def test_checks_print_one_line_and_never_raise(capsys):
    checks.check_softmax(None, torch.zeros(1, 3))
    checks.check_softmax(torch.full((1, 3), 1 / 3), torch.zeros(1, 3))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("… softmax") and out[1].startswith("✓ softmax")
