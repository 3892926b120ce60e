"""Pure drawing functions and the exercise checks."""

from __future__ import annotations

import math

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


def test_mosaic_places_each_tile_with_gaps():
    tiles = np.arange(3.0)[:, None, None] * np.ones((3, 2, 2))  # tile k is all k
    expected = np.array([[0, 0, -1, 1, 1],
                         [0, 0, -1, 1, 1],
                         [-1, -1, -1, -1, -1],
                         [2, 2, -1, -1, -1],
                         [2, 2, -1, -1, -1]], np.float32)
    np.testing.assert_array_equal(plotting.mosaic(tiles, ncols=2, gap=1, fill=-1.0), expected)
    assert plotting.mosaic(np.zeros((16, 3, 3, 3))).shape == (15, 15, 3)  # 4×4 by default, RGB kept
    assert plotting.mosaic(torch.zeros(2, 4, 4), ncols=5).shape == (4, 9)  # never more columns than tiles
    with pytest.raises(ValueError, match=r"\(n, h, w\)"):
        plotting.mosaic(np.zeros((2, 2)))


def test_draw_kernels_puts_out_channels_in_rows_and_in_channels_in_columns():
    w = torch.arange(2 * 3 * 1 * 2, dtype=torch.float32).view(2, 3, 1, 2)
    m = np.ma.filled(plotting.draw_kernels(w, colorbar=False).axes[0].images[0].get_array(), np.nan)
    assert m.shape == (3, 8)
    np.testing.assert_array_equal(m[0, 3:5], w[0, 1, 0].numpy())  # out 0, in 1
    np.testing.assert_array_equal(m[2, 6:8], w[1, 2, 0].numpy())  # out 1, in 2
    assert np.isnan(m[1]).all() and np.isnan(m[:, 2]).all()  # the gaps


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
        (torch.tensor([1.0, 2.0 + 3e-7]), [1.0, 2.0], True, "close (max difference within the allowed 1e-05)"),
        ([1.0, 2.001], [1.0, 2.0], False, "max difference 0.001 (allowed 1e-05)"),  # the default tolerance is tight
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


# --- pinned by mutation testing ---


def test_verdict_on_empty_answers_and_on_a_difference_of_exactly_the_tolerance():
    assert checks.verdict("nothing", [], []) == (True, "✓ nothing: exact")
    assert checks.verdict("half", [0.5], [0.0], atol=0.5) == (
        True, "✓ half: close (max difference within the allowed 0.5)")  # the tolerance itself is allowed


def test_compare_allows_1e5_by_default_and_check_softmax_takes_a_single_row(capsys):
    checks.compare("x", [1.0 + 3e-7], [1.0])
    checks.check_softmax([0.25 + 5e-7, 0.75 - 5e-7], [0.0, math.log(3)])  # one row of logits: e^0 : e^ln3 = 1 : 3
    assert capsys.readouterr().out.splitlines() == [
        "✓ x: close (max difference within the allowed 1e-05)",
        "✓ softmax: close (max difference within the allowed 1e-06)",
    ]
