"""The leaderboard of lesson 11 (course_utils.leaderboard) and its explorer.

Each measure is checked on maps and models small enough to work the answer out by hand; the
board's wiring against lesson 09's own numbers; the explorer as a test drives it (set a
control, look at the picture)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from course_utils import evaluation as ev
from course_utils import leaderboard as lb
from course_utils import plotting
from course_utils.leaderboard import METRICS, SANITY_THRESHOLD, Board, leaderboard
from course_utils.methods import explain
from course_utils.models import load_model
from course_utils.scenes import make_scenes
from course_utils.widgets import LeaderboardExplorer
from course_utils.widgets.leaderboard import leaderboard_figure
from tests.conftest import assert_each_change_redraws, assert_same_state, model_state


@pytest.fixture(scope="module")
def course():
    return load_model("course")


@pytest.fixture(scope="module")
def small_board(course):
    """Three methods on four scenes and two pairs of the course model: a few seconds."""
    return leaderboard(course, ["vanilla gradient", "CAM", "Grad-CAM"], n_scenes=4, n_pairs=2, progress=False)


def hand_board(model: str = "by hand", scores: dict | None = None, n: int = 2, side: int = 8,
               masks: bool = False) -> Board:
    """A board with made-up numbers (what the explorer and the table need, nothing computed)."""
    scores = scores or {"Grad-CAM": {"deletion AUC": 0.2, "insertion AUC": 0.7, "sanity": 0.1},
                        "Occlusion": {"deletion AUC": 0.3, "insertion AUC": 0.6, "sanity": 0.6}}
    methods, metrics = list(scores), list(next(iter(scores.values())))
    gen = torch.Generator().manual_seed(0)
    per_scene = {m: {k: torch.full((n,), v, dtype=torch.float64) for k, v in s.items()} for m, s in scores.items()}
    maps = {m: torch.rand(n, side // 4, side // 4, generator=gen) for m in methods}
    images = np.random.default_rng(0).integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    square = np.zeros((n, side, side), bool)
    square[:, 2:5, 2:5] = True
    return Board(model, methods, metrics, scores, per_scene, maps, images, square if masks else None,
                 [0] * n, ["a class"] * n, {m: 1.0 for m in methods})


# --- each measure, worked out by hand ------------------------------------------------------------


def test_the_measures_are_lesson_09s_in_order_with_their_directions():
    assert list(METRICS) == ["pointing game", "energy inside", "deletion AUC", "insertion AUC",
                             "class sensitivity", "sanity"]
    assert [m.higher_is_better for m in METRICS.values()] == [True, True, False, True, True, False]
    assert [m.needs_masks for m in METRICS.values()] == [True, True, False, False, True, False]
    assert "course's choice" in METRICS["sanity"].about and str(SANITY_THRESHOLD) in METRICS["sanity"].about


def test_the_options_name_real_methods_and_options():
    from course_utils.methods import METHODS

    assert set(lb.OPTIONS) <= set(METHODS)
    assert lb._batch_size(torch.zeros(1, 3, 64, 64)) == 32 and lb._batch_size(torch.zeros(1, 3, 224, 224)) == 2


def test_pointing_game_and_energy_on_maps_made_by_hand():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, :2, :2] = True  # the object: the top-left 2×2 corner
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0], maps[0, 3, 3] = 3.0, 1.0  # peak on the object; 3 of 4 units inside
    maps[1, 0, 1], maps[1, 2, 2], maps[1, 3, 0] = 1.0, 2.0, -5.0  # peak outside; 1 of 3 positive units inside
    out = lb._localization(maps, masks)
    assert out["pointing game"].tolist() == [1.0, 0.0]
    assert out["energy inside"].tolist() == pytest.approx([3 / 4, 1 / 3])


def test_class_sensitivity_is_the_energy_on_the_object_asked_about_minus_on_the_other():
    own, other = torch.zeros(2, 4, 4, dtype=torch.bool), torch.zeros(2, 4, 4, dtype=torch.bool)
    own[:, 0, :2], other[:, 3, :2] = True, True
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0], maps[0, 3, 0], maps[0, 1, 3] = 3.0, 1.0, 4.0  # 3/8 on the one asked about, 1/8 on the other
    maps[1, 3, 1] = 2.0  # everything on the other object: the wrong one
    assert lb._class_sensitivity(maps, own, other).tolist() == pytest.approx([3 / 8 - 1 / 8, -1.0])


def test_sanity_is_the_rank_correlation_with_the_randomized_models_map():
    a = torch.arange(16.0).view(1, 4, 4).repeat(3, 1, 1)
    randomized = torch.stack([a[0] * 10 + 1, -a[0], torch.zeros(4, 4)])  # same order, reversed, flat
    assert lb._sanity(a, randomized).tolist() == pytest.approx([1.0, -1.0, 0.0])


class _OneClass(nn.Module):
    """Two logits: the sum of four chosen pixels' values, and 0. p(class 0) = sigmoid(that sum)."""

    def __init__(self):
        super().__init__()
        self.w = torch.zeros(1, 1, 4, 4)
        self.w[0, 0, 1:3, 1:3] = 1.0

    def forward(self, x):
        s = (x * self.w).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def _trapezoid(values: list[float]) -> float:  # 17 points, 1/16 apart
    return sum((a + b) / 2 for a, b in zip(values, values[1:])) / 16


def test_deletion_and_insertion_auc_on_a_model_worked_out_by_hand():
    """16 pixels, 16 steps: one pixel per step. Only the four middle pixels count (1 each)."""
    model, x = _OneClass(), torch.ones(1, 1, 4, 4)
    good = model.w[0, 0].clone()[None] * 2 + torch.arange(16.0).view(1, 4, 4) / 100  # the four first
    bad = -good  # the four last
    for ranking, first in ((good, True), (bad, False)):
        out = lb._faithfulness(model, x, ranking, [0])
        counted = [min(k, 4) if first else max(0, k - 12) for k in range(17)]  # middle pixels among the k first
        deleted = [_sigmoid(4 - c) for c in counted]
        inserted = [_sigmoid(c) for c in counted]
        assert out["deletion AUC"].item() == pytest.approx(_trapezoid(deleted), abs=1e-6)
        assert out["insertion AUC"].item() == pytest.approx(_trapezoid(inserted), abs=1e-6)
    assert lb._faithfulness(model, x, good, [0])["deletion AUC"] < lb._faithfulness(model, x, bad, [0])["deletion AUC"]


# --- the board's verdicts and its table -----------------------------------------------------------


THREE = {"A": {"deletion AUC": 0.30, "sanity": 0.1}, "B": {"deletion AUC": 0.20, "sanity": 0.5},
         "C": {"deletion AUC": 0.25, "sanity": 0.7}}


def test_best_follows_each_measures_direction():
    board = hand_board(scores=THREE)
    assert board.best("deletion AUC") == "B"  # lower is better
    assert board.best("sanity") == "A"
    up = hand_board(scores={"A": {"insertion AUC": 0.3}, "B": {"insertion AUC": 0.6}})
    assert up.best("insertion AUC") == "B"  # higher is better
    assert board.ranking("deletion AUC") == ["B", "C", "A"]


def test_values_equal_as_shown_keep_registry_order_whatever_the_last_bits():
    board = hand_board(scores={"first": {"deletion AUC": 0.25012}, "second": {"deletion AUC": 0.24991},
                               "third": {"deletion AUC": 0.2}})
    assert board.ranking("deletion AUC") == ["third", "first", "second"]  # 0.250 = 0.250: a tie
    assert board.ranking("deletion AUC", digits=4) == ["third", "second", "first"]
    assert board.table(digits=2).splitlines()[1:] == ["third             0.20", "first             0.25",
                                                      "second            0.25"]


def test_a_mean_that_is_zero_as_shown_is_never_minus_zero():
    board = hand_board(scores={"below": {"class sensitivity": -0.003}, "above": {"class sensitivity": 0.004},
                               "negative": {"class sensitivity": -0.3}})
    assert [line.split()[-1] for line in board.table().splitlines()[1:]] == ["0.00", "0.00", "-0.30"]
    assert lb.shown(-0.0004, 3) == "0.000" and lb.shown(-0.0006, 3) == "-0.001"


def test_the_sanity_threshold_fails_methods_at_or_above_it():
    assert SANITY_THRESHOLD == 0.5
    board = hand_board(scores={"low": {"sanity": 0.49}, "at": {"sanity": 0.5}, "high": {"sanity": 0.51},
                               "negative": {"sanity": -0.3}})
    assert board.failing_sanity() == ["at", "high"]


def test_the_table_is_fixed_width_sorted_by_its_first_measure():
    board = hand_board(scores=THREE)
    assert board.table() == ("method  deletion AUC ↓  sanity ↓\n"
                             "B                 0.20      0.50\n"
                             "C                 0.25      0.70\n"
                             "A                 0.30      0.10")
    assert board.table(["sanity"], digits=3) == ("method  sanity ↓\n"
                                                 "A          0.100\n"
                                                 "B          0.500\n"
                                                 "C          0.700")
    with pytest.raises(ValueError, match="board.cost"):
        board.table(["deletion AUC", "cost"])
    with pytest.raises(ValueError, match="no measure 'pointing game'"):
        board.best("pointing game")


# --- the board on the course's models -------------------------------------------------------------


def test_the_board_is_lesson_09s_recipe(course, small_board):
    """Every number is what lesson 09 computes by hand with explain and evaluation."""
    b = small_board
    assert b.model == "course" and b.methods == ["vanilla gradient", "CAM", "Grad-CAM"]
    assert b.metrics == list(METRICS)
    scenes, pairs = make_scenes(4, seed=21), make_scenes(2, seed=22, n_objects=2)
    x = course.batch(list(scenes.images))
    masks = torch.from_numpy(scenes.masks[:, 0])
    assert b.targets == scenes.labels[:, 0].tolist()  # the course model's answer is the true class here
    assert np.array_equal(b.images, scenes.images) and np.array_equal(b.masks, scenes.masks[:, 0])
    xp = course.batch(list(pairs.images)).repeat(2, 1, 1, 1)
    asked = pairs.labels[:, 0].tolist() + pairs.labels[:, 1].tolist()
    own = torch.from_numpy(np.concatenate([pairs.masks[:, 0], pairs.masks[:, 1]]))
    other = torch.from_numpy(np.concatenate([pairs.masks[:, 1], pairs.masks[:, 0]]))
    for method in b.methods:
        m = explain(course.model, x, method, b.targets)
        assert torch.equal(b.maps[method], m)
        fractions, deleted = ev.deletion_curve(course.model, x, m, b.targets, steps=16)
        _, inserted = ev.insertion_curve(course.model, x, m, b.targets, steps=16)
        mp = explain(course.model, xp, method, asked)
        expected = {"pointing game": ev.pointing_game(m, masks).float().mean(),
                    "energy inside": ev.energy_inside(m, masks).mean(),
                    "deletion AUC": ev.auc(fractions, deleted).mean(),
                    "insertion AUC": ev.auc(fractions, inserted).mean(),
                    "class sensitivity": (ev.energy_inside(mp, own) - ev.energy_inside(mp, other)).mean()}
        for metric, value in expected.items():
            assert b.scores[method][metric] == pytest.approx(float(value), abs=1e-6), (method, metric)
        assert len(b.per_scene[method]["class sensitivity"]) == 4  # two pairs, each asked about both objects
        assert len(b.per_scene[method]["pointing game"]) == 4 and b.cost[method] > 0
        assert b.scores[method]["sanity"] == pytest.approx(float(b.per_scene[method]["sanity"].mean()))


def test_the_board_reproduces_lesson_09s_deletion_and_insertion_table(course):
    """Lesson 09, section 5: the first 12 held-out scenes, 16 steps (its stored table, 3 decimals)."""
    b = leaderboard(course, ["guided backprop", "Grad-CAM"], n_pairs=1, progress=False)
    lesson_09 = {"guided backprop": (0.304, 0.343), "Grad-CAM": (0.263, 0.670)}
    for method, (deletion, insertion) in lesson_09.items():
        assert round(b.scores[method]["deletion AUC"], 3) == deletion, method
        assert round(b.scores[method]["insertion AUC"], 3) == insertion, method


def test_the_randomized_copy_has_every_layer_new_and_the_model_is_untouched(course):
    names = lb._every_layer(course.model)
    assert names[:3] == ["fc", "features.bn5", "features.conv5"] and names[-1] == "features.conv1"
    assert len(names) == 11  # five convolutions, five batch norms, fc
    before = model_state(course.model)
    twin = lb._randomized(course.model, seed=0)
    assert_same_state(before, model_state(course.model))
    trained, modules = dict(course.model.named_modules()), dict(twin.named_modules())
    for name in names:
        m = modules[name]
        if isinstance(m, nn.BatchNorm2d):  # back to its initial state
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0) and torch.all(m.running_var == 1), name
        else:
            assert not torch.allclose(m.weight, trained[name].weight), name
    again = lb._randomized(course.model, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(twin.parameters(), again.parameters()))  # seeded


def test_the_model_and_the_random_state_are_unchanged_after_a_board(course, monkeypatch):
    before, rng = model_state(course.model), torch.get_rng_state()
    leaderboard(course, ["SmoothGrad", "Grad-CAM"], n_scenes=2, n_pairs=1, progress=False)
    assert_same_state(before, model_state(course.model))
    assert torch.equal(rng, torch.get_rng_state())
    calls = []

    def fails_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("stopped half way")
        return explain(*args[:4])

    monkeypatch.setattr(lb, "_explain", lambda model, x, method, targets, seed: fails_on_the_second(
        model, x, method, targets))
    with pytest.raises(RuntimeError, match="stopped half way"):
        leaderboard(course, ["Grad-CAM"], n_scenes=2, n_pairs=1, progress=False)
    assert_same_state(before, model_state(course.model))


def test_the_imagenet_board_scores_photos_with_the_measures_that_need_no_mask():
    board = leaderboard("efficientnet_lite0", ["Grad-CAM"], progress=False)
    assert board.metrics == ["deletion AUC", "insertion AUC", "sanity"] and board.masks is None
    assert board.images.shape == (len(lb.PHOTOS), 224, 224, 3) and board.images.dtype == np.uint8
    assert board.labels == ["tiger cat", "espresso"]  # each photo's top class
    assert board.maps["Grad-CAM"].shape == (2, 7, 7)
    assert set(board.per_scene["Grad-CAM"]) == set(board.metrics)


def test_a_full_board_leaves_out_the_methods_that_do_not_apply(course, monkeypatch):
    from course_utils.methods import METHODS

    assert lb._checked_methods(None, course.model) == list(METHODS)  # every method applies to the course model
    real = lb.method_layer

    def no_cam(model, method, layer=None):  # as for VGG-16, whose fully connected layers CAM cannot read
        if method == "CAM":
            raise ValueError("CAM does not apply to this model")
        return real(model, method, layer)

    monkeypatch.setattr(lb, "method_layer", no_cam)
    assert lb._checked_methods(None, course.model) == [m for m in METHODS if m != "CAM"]
    assert lb._checked_methods(["Grad-CAM", "CAM", "CAM"], course.model) == ["CAM", "Grad-CAM"]  # registry order


def test_bad_choices_are_clear_errors(course):
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['Grad-CAMM'\]"):
        leaderboard(course, ["Grad-CAMM"], progress=False)
    with pytest.raises(ValueError, match="unknown model 'coarse'"):
        leaderboard("coarse", progress=False)
    with pytest.raises(ValueError, match="n_scenes must be a positive int"):
        leaderboard(course, ["CAM"], n_scenes=0, progress=False)
    with pytest.raises(TypeError, match="a model's name"):
        leaderboard(course.model, ["CAM"], progress=False)


# --- the explorer ---------------------------------------------------------------------------------


@pytest.fixture
def explorer(small_board):
    return LeaderboardExplorer({"course": small_board, "photos": hand_board("photos", n=2, side=16)})


def test_every_control_of_the_explorer_redraws(explorer):
    assert explorer.renders == 1 and explorer.message.value == ""
    assert explorer.controls["method"].value == explorer.board.best("pointing game")
    assert_each_change_redraws(explorer, [("scene", 2), ("metric", "energy inside"), ("method", "vanilla gradient"),
                                          ("metric", "class sensitivity"), ("metric", "sanity"), ("scene", 3),
                                          ("model", "photos"), ("scene", 0), ("metric", "deletion AUC"),
                                          ("method", "Occlusion"), ("model", "course")])


def test_a_scene_change_shows_that_scenes_map_and_value(explorer, small_board):
    explorer.controls["metric"].value = "energy inside"
    explorer.controls["method"].value = "Grad-CAM"
    explorer.controls["scene"].value = 3
    fig = leaderboard_figure(small_board, "energy inside", "Grad-CAM", 3)
    assert bytes(explorer.view.value) == plotting.figure_to_png(fig)
    value = float(small_board.per_scene["Grad-CAM"]["energy inside"][3])
    assert fig.axes[1].get_title().endswith(f"energy inside here: {value:.2f}")
    assert bytes(explorer.view.value) != plotting.figure_to_png(leaderboard_figure(small_board, "energy inside",
                                                                                   "Grad-CAM", 2))
    pairs = leaderboard_figure(small_board, "class sensitivity", "Grad-CAM", 3)
    assert pairs.axes[1].get_title().endswith("measured on the two-object scenes")


def test_a_model_switch_offers_that_models_measures_methods_and_scenes(explorer, small_board):
    c = explorer.controls
    c["metric"].value, c["method"].value, c["scene"].value = "sanity", "vanilla gradient", 3
    c["model"].value = "photos"
    assert c["metric"].options == ("deletion AUC", "insertion AUC", "sanity") and c["metric"].value == "sanity"
    assert c["method"].options == ("Grad-CAM", "Occlusion") and c["method"].value == "Grad-CAM"
    assert c["scene"].max == 1 and c["scene"].value == 1
    assert explorer.message.value == ""
    c["model"].value = "course"
    assert c["metric"].options == tuple(small_board.metrics) and c["method"].options == tuple(small_board.methods)
    assert c["scene"].max == 3 and c["metric"].value == "sanity"


def test_the_explorer_refuses_bad_boards_and_the_picture_bad_choices(small_board):
    with pytest.raises(ValueError, match="give the boards"):
        LeaderboardExplorer({})
    single = LeaderboardExplorer(small_board)  # one board: the model control has nothing to choose
    assert list(single.controls["model"].options) == ["course"] and single.controls["model"].disabled
    with pytest.raises(ValueError, match="no measure 'cost'"):
        leaderboard_figure(small_board, "cost", "CAM")
    with pytest.raises(ValueError, match="no method 'Score-CAM'"):
        leaderboard_figure(small_board, "sanity", "Score-CAM")
    with pytest.raises(ValueError, match="scene 9 is out of range"):
        leaderboard_figure(small_board, "sanity", "CAM", 9)
