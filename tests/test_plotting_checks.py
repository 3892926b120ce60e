"""Pure drawing functions (the explorers' pictures too, drawn without any widget) and the exercise checks."""

from __future__ import annotations

import ast
import io
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from course_utils import checks, figures, plotting


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


# --- the explorers' pictures, from hand-made data ---------------------------------------------------

SHOWN = np.zeros((8, 8, 3), np.float32)


def _image(ax) -> np.ndarray:
    return np.ma.filled(ax.images[0].get_array().astype(float), np.nan)


def test_prediction_figure_shows_the_input_and_one_bar_per_class():
    fig = figures.prediction_figure(SHOWN, [("star", 0.7), ("cross", 0.2)], "course")
    ax_img, ax_bar = fig.axes
    assert ax_img.get_title() == "what course sees" and ax_bar.get_title() == "top 2 classes"
    assert [round(p.get_width(), 2) for p in ax_bar.patches] == [0.2, 0.7]


def test_feature_maps_figure_enlarges_the_clamped_channel_and_pages_from_first():
    maps = torch.arange(20 * 4 * 4, dtype=torch.float32).view(20, 4, 4)
    fig = figures.feature_maps_figure(SHOWN, maps, "features.relu1", "per-channel min-max", first=16, channel=50)
    ax_in, ax_ch, ax_grid = fig.axes
    assert ax_ch.get_title().startswith("features.relu1 ch. 19  (4×4)\nmin 304.00")  # channel 50 does not exist
    assert ax_grid.get_title() == "relu1: channels 16–19 of 20, per-channel min-max"
    enlarged = _image(ax_ch)
    assert enlarged.shape == (4, 4) and enlarged.min() == 0 and enlarged.max() == 1


def test_filter_figure_shows_a_slice_on_the_layers_scale_with_its_numbers():
    weight = torch.linspace(-2, 1, 4 * 3 * 3 * 3).view(4, 3, 3, 3)
    fig = figures.filter_figure(weight, out_channel=1, in_channel=2, model="course", layer="features.conv1")
    ax_all, ax_one, ax_near = fig.axes[:3]
    np.testing.assert_allclose(_image(ax_one), weight[1, 2].numpy() / 2, rtol=1e-6)  # ÷ the layer's max |w|
    assert [t.get_text() for t in ax_one.texts][:2] == [f"{v:.2f}" for v in weight[1, 2, 0, :2].tolist()]
    assert len(ax_one.texts) == 9 and ax_one.get_title() == "filter 1, input 2"
    assert ax_all.get_title() == "filter 1: its 3 input slices (R, G, B)"
    assert "4×3×3×3" in fig._suptitle.get_text() and "±2.000" in fig._suptitle.get_text()
    per_filter = figures.filter_figure(weight, out_channel=1, in_channel=2, per_filter=True)
    assert np.abs(_image(per_filter.axes[1])).max() <= 1
    assert "each filter ÷ its own max" in per_filter._suptitle.get_text()


def test_activation_max_figure_plots_the_objective_per_step():
    fig = figures.activation_max_figure(SHOWN, [1.0, 2.0, 3.0], "course: class 'star'", "pixels", 0.5, logit=True)
    ax_img, ax_curve = fig.axes
    assert ax_img.get_title() == "course: class 'star'\npixels, high-frequency energy 0.500"
    assert list(ax_curve.lines[0].get_xdata()) == [1, 2, 3] and ax_curve.get_ylabel() == "logit"
    assert ax_curve.get_title() == "objective: 1.00 → 3.00"
    assert figures.activation_max_figure(SHOWN, [], "x", "fourier", 0.0).axes[1].get_title() == "no step ran"


def test_saliency_figure_shows_the_map_as_its_display_and_over_the_input():
    grad = torch.zeros(3, 8, 8)
    grad[0, 2, 3], grad[1, 5, 5] = 1.0, -2.0
    fig = figures.saliency_figure(SHOWN, grad, "star (0.90)", "guided backprop", "signed", alpha=0.3)
    ax_in, ax_map, ax_over = fig.axes
    signed = _image(ax_map)
    assert signed.shape == (8, 8) and signed.min() == -1 and signed[2, 3] > 0
    assert ax_map.get_title() == "guided backprop\nsigned: red raises, blue lowers"
    assert len(ax_over.images) == 2 and ax_over.get_title() == "signed over the input\nopacity 0.30"
    rgb = figures.saliency_figure(SHOWN, grad, "star", "guided backprop", "rgb")
    assert _image(rgb.axes[1]).shape == (8, 8, 3) and rgb.axes[2].get_title().startswith("abs over the input")


def test_class_map_figure_shows_the_raw_map_and_its_overlay_with_each_methods_titles():
    raw = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    fig = figures.class_map_figure(SHOWN, raw, "star (0.90)", "features.relu5", "CAM", alpha=0.25)
    ax_in, ax_raw, ax_over = fig.axes
    np.testing.assert_allclose(_image(ax_raw), [[0, 0.25], [0.5, 1]])
    assert ax_in.get_title() == "the input\nclass: star (0.90)"
    assert ax_raw.get_title() == "CAM at features.relu5\nraw, 2×2"
    assert ax_over.get_title() == "upsampled to 8×8\nopacity 0.25" and len(ax_over.images) == 2
    flat = figures.class_map_figure(SHOWN, -raw, "star", "layer4", "counterfactual Grad-CAM")
    assert flat.axes[1].get_title() == "counterfactual Grad-CAM at layer4\nraw, 2×2  (all zero)"
    assert flat.axes[2].get_title() == "upsampled, opacity 0.50"
    assert "all zero" not in figures.class_map_figure(SHOWN, -raw, "star", "fc", "CAM").axes[1].get_title()


def test_guided_grad_cam_figure_shows_a_colour_picture_or_a_map_over_the_input():
    fig = figures.guided_grad_cam_figure(SHOWN, np.full((8, 8, 3), 0.5), "star", "guided backprop", "features.relu4")
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "guided backprop\n(grey = 0)"
    flat = figures.guided_grad_cam_figure(SHOWN, np.zeros((8, 8)), "star", "Grad-CAM", "features.relu4")
    assert flat.axes[1].get_title().startswith("Grad-CAM at features.relu4\n(all zero")
    assert len(flat.axes[1].images) == 2


def test_compare_panels_colour_each_method_as_the_lessons_do():
    """8×8 maps blown up 28 times (224 pixels); a panel's pixel (5, 5) shows the maps' value at (0, 0)."""
    image = np.zeros((8, 8, 3), np.float32)
    image[..., 0] = 0.5
    heat = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    results = {"feature maps": np.full((3, 5), 0.25), "vanilla gradient": heat[::-1].copy(),
               "CAM": "CAM does not apply to vgg16", "Grad-CAM": heat, "Guided Grad-CAM": heat}
    panels, titles, notes = figures.compare_panels(image, results, "star", alpha=0.4, where={
        "feature maps": "features.relu3", "Grad-CAM": "features.relu3"})
    assert [p.shape for p in panels] == [(224, 224, 3)] * 6
    np.testing.assert_allclose(panels[0][5, 5], [0.5, 0, 0])
    np.testing.assert_allclose(panels[1][5, 5], [0.25] * 3, atol=1 / 255)  # the grey colour map (256 steps)
    np.testing.assert_allclose(panels[2][5, 5], matplotlib.colormaps["inferno"](heat[7, 0])[:3])
    assert (panels[3] == 0.94).all() and notes == {3: "CAM does not apply to vgg16"}
    np.testing.assert_allclose(panels[4][5, 5], [0.6 * 0.5, 0, 0.4 * 0.5], atol=1e-6)  # jet(0) = (0, 0, 0.5)
    np.testing.assert_allclose(panels[4][223, 223], 0.6 * np.array([0.5, 0, 0]) + 0.4 * np.array(
        matplotlib.colormaps["jet"](1.0)[:3]), atol=1e-6)
    assert titles == ["the input\nclass: star", "feature maps at features.relu3\n16 most active channels",
                      "vanilla gradient\n|g|, max over colours", "CAM\nnot applicable",
                      "Grad-CAM\nat features.relu3", "Guided Grad-CAM\n|g|, max over colours"]
    assert figures.compare_panels(image, {"CAM": np.zeros((8, 8))}, "star")[1][1] == "CAM (all zero)"
    attributed = figures.compare_panels(image, {"Integrated Gradients": heat, "vanilla gradient": heat}, "star",
                                        attributions={"Integrated Gradients"})[1][1:]
    assert attributed == ["Integrated Gradients\n|attribution|, max over colours", "vanilla gradient\n|g|, max over colours"]
    course = figures.compare_panels(np.zeros((64, 64, 3), np.uint8), {}, "star")[0]
    assert course[0].shape == (256, 256, 3)  # 64² shown 4 times as big, whole pixels
    with pytest.raises(ValueError, match="float images are shown in"):
        figures.compare_panels(image * 3, {}, "star")


def test_panel_picture_lays_out_panels_four_to_a_row_with_titles_above():
    """Panels 224 pixels wide, 12 apart and from the edges, each 36 below its row's top (its title)."""
    panels = [np.full((224, 224, 3), v, np.float32) for v in (0.2, 0.4, 0.6, 0.8, 1.0)]
    picture = figures.panel_picture(panels, ["a\nb"] * 5, {1: "no"})
    canvas = np.asarray(picture)
    assert canvas.shape == (2 * (224 + 36) + 12, 4 * 224 + 5 * 12, 3)

    def pixel(i, y=100, x=5):  # of panel i (reading order)
        return canvas[(i // 4) * (224 + 36) + 36 + y, 12 + (i % 4) * (224 + 12) + x]

    assert [int(pixel(i)[0]) for i in (0, 2, 3, 4)] == [51, 153, 204, 255]
    assert (pixel(0, -1) == 0).all() and (pixel(4, 224) == 0).all()  # the frames
    assert (pixel(5) == 255).all() and (canvas[-11:] == 255).all()  # no sixth panel; the margin
    assert (canvas[:36, 12:236] < 128).any() and (canvas[:36, 12:236] < 128).mean() < 0.1  # a title, in a few strokes
    assert (canvas[36 + 100:36 + 124, 248 + 100:248 + 124] < 128).any()  # the note, on panel 1's middle
    assert (canvas[36 + 100:36 + 124, 12 + 100:12 + 124] == 51).all()  # none on panel 0
    assert np.asarray(figures.compare_figure(np.zeros((8, 8, 3)), {}, "star")).shape == (224 + 36 + 12, 248, 3)
    png = plotting.figure_to_png(picture)
    assert png.startswith(b"\x89PNG") and Image.open(io.BytesIO(png)).size == picture.size


def test_graph_figure_counts_the_commonest_types_and_highlights_one():
    counts = Counter({"aten::conv": 10, "aten::relu": 20, **{f"aten::op{i}": 1 for i in range(12)}})
    fig = figures.graph_figure(counts, "course", 42, chosen="aten::conv")
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 12 and labels[-2:] == ["conv", "relu"]  # the commonest on top, 12 of 14 types
    assert [p.get_width() for p in ax.patches][-2:] == [10, 20]
    colours = [p.get_facecolor() for p in ax.patches]
    assert colours[-2] != colours[-1] and colours.count(colours[-1]) == 11  # conv alone in another colour
    assert ax.get_title() == "course: 42 operations"


def test_evaluation_figure_marks_the_peak_and_the_scene_among_the_others():
    image, masks = np.zeros((8, 8, 3), np.uint8), np.zeros((1, 8, 8), bool)
    masks[0, 4:, :4] = True
    raw = torch.tensor([[0.0, 0.0], [1.0, 0.0]])  # the peak in the lower left
    scores = torch.tensor([0.2, 0.9, 0.5])
    fig = figures.evaluation_figure(image, masks, raw, scores, 1, "star", "CAM", "pointing game")
    ax_in, ax_map, ax_metric = fig.axes
    px, py = ax_map.lines[0].get_xdata()[0], ax_map.lines[0].get_ydata()[0]
    assert px < 4 <= py
    assert [p.get_facecolor() for p in ax_metric.patches][1] != ax_metric.patches[0].get_facecolor()
    assert ax_metric.get_title() == "pointing game: this scene 0.90, mean 0.53 (dashed)"
    assert ax_in.get_title() == "scene 1: star"
    fractions, curves = torch.linspace(0, 1, 5), torch.rand(3, 5)
    fig = figures.evaluation_figure(image, masks, raw, scores, 1, "star", "CAM", "deletion", (fractions, curves))
    assert len(fig.axes[2].lines) == 2 and fig.axes[2].get_title().endswith("(lower is better)")
    np.testing.assert_allclose(fig.axes[2].lines[1].get_ydata(), curves[1].numpy())


def test_shortcut_figure_says_how_much_of_the_map_is_on_the_shape():
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 2:6, 2:6] = True
    fig = figures.shortcut_figure(np.zeros((8, 8, 3), np.uint8), masks, torch.rand(2, 2),
                                  [("star", 0.8), ("cross", 0.2)], "star", "its own class's", "vanilla gradient",
                                  "shortcut", 0.25)
    ax_in, ax_map, ax_bar = fig.axes
    assert ax_map.get_title() == "vanilla gradient for 'star'\n25% of it on the shape"
    assert ax_in.get_title() == "a star, background: its own class's"
    assert ax_bar.patches[1].get_facecolor() != ax_bar.patches[0].get_facecolor()  # the true shape highlighted
    heat = ax_map.images[1].get_array()
    assert heat.shape == (8, 8) and heat.min() == 0 and heat.max() == 1


def test_compute_modules_never_import_the_pictures():
    package = Path(plotting.__file__).parent
    pictures = {"plotting", "figures", "widgets"}
    for path in package.glob("*.py"):
        if path.stem in pictures:
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                imported |= {node.module or ""} | {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        names = {part for name in imported for part in name.split(".")}
        assert not names & pictures, f"{path.name} imports {names & pictures}"


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
    checks.compare("softmax", None, torch.full((1, 3), 1 / 3))
    checks.compare("softmax", torch.zeros(1, 3).softmax(dim=-1), torch.full((1, 3), 1 / 3))
    checks.compare("softmax", "three", torch.full((1, 3), 1 / 3))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("… softmax") and out[1].startswith("✓ softmax") and out[2].startswith("✗ softmax")


# --- pinned by mutation testing ---


def test_verdict_on_empty_answers_and_on_a_difference_of_exactly_the_tolerance():
    assert checks.verdict("nothing", [], []) == (True, "✓ nothing: exact")
    assert checks.verdict("half", [0.5], [0.0], atol=0.5) == (
        True, "✓ half: close (max difference within the allowed 0.5)")  # the tolerance itself is allowed


def test_compare_allows_1e5_by_default_and_a_tighter_tolerance_when_asked(capsys):
    checks.compare("x", [1.0 + 3e-7], [1.0])
    checks.compare("softmax", [0.25 + 5e-7, 0.75 - 5e-7], [0.25, 0.75], atol=1e-6)
    checks.compare("softmax", [0.25 + 5e-6, 0.75 - 5e-6], [0.25, 0.75], atol=1e-6)
    assert capsys.readouterr().out.splitlines() == [
        "✓ x: close (max difference within the allowed 1e-05)",
        "✓ softmax: close (max difference within the allowed 1e-06)",
        "✗ softmax: max difference 5e-06 (allowed 1e-06)",
    ]


def test_rgb_to_png_writes_a_png_that_decodes_to_the_same_pixels():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)  # not square
    png = plotting.rgb_to_png(rgb)
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every row: checks the zlib stream and each chunk's CRC
    assert image.mode == "RGB" and image.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(image), rgb)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(plotting.rgb_to_png(rgb[:, ::-1])))),
                                  rgb[:, ::-1])  # a view that is not contiguous
    for bad in (rgb.astype(np.float32), rgb[..., 0], np.zeros((2, 2, 4), np.uint8)):
        with pytest.raises(ValueError, match=r"an RGB picture is \(H, W, 3\) uint8"):
            plotting.rgb_to_png(bad)
