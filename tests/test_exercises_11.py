"""The exercise checks of lesson 11: for each exercise, the solution gets ✓ and the mistakes a student
would really make get ✗ (with what is off), and a check never raises."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from course_utils import checks
from course_utils.cam import GRADIENT_CAMS
from course_utils.models import load_model

from .conftest import assert_same_state, model_state, printed


@pytest.fixture(scope="module")
def course():
    return load_model("course")


# --- exercise 1: Grad-CAM++ from A and G ---


def grad_cam_pp_solution(a, g):
    g2 = g * g
    denominator = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where(denominator != 0, g2 / safe, torch.zeros_like(g2))
    weights = (alpha * g.clamp(min=0)).sum(dim=(2, 3))
    return torch.relu((weights[:, :, None, None] * a).sum(dim=1))


def _pp(a, g, *, positive=True, channel_sum=True, reduce="sum", final_relu=True, safe=True):
    """Grad-CAM++ with one step done another way (each keyword names a mistake)."""
    g2 = g * g
    total = a.sum(dim=(2, 3), keepdim=True) if channel_sum else a
    denominator = 2 * g2 + total * g2 * g
    alpha = torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator, 1.0), 0.0) if safe \
        else g2 / denominator
    per_position = alpha * (g.clamp(min=0) if positive else g)
    weights = per_position.sum(dim=(2, 3)) if reduce == "sum" else per_position.mean(dim=(2, 3))
    m = (weights[:, :, None, None] * a).sum(dim=1)
    return torch.relu(m) if final_relu else m


def test_11_grad_cam_pp_solution_passes(capsys):
    checks.check_grad_cam_pp(grad_cam_pp_solution)
    assert printed(capsys).startswith("✓ Grad-CAM++ by hand: right on three cases worked out by hand")


def test_11_grad_cam_pp_hand_case_is_what_the_package_computes():
    """The check's hand-worked answers, (1/6, 1/2) and (0, 3/2), are the package's maps too."""
    a, g, right, _ = checks._pp_hand_cases()
    assert torch.allclose(GRADIENT_CAMS["Grad-CAM++"](a, g).clamp(min=0), right)
    assert torch.allclose(right, torch.tensor([[[1 / 6, 1 / 2]], [[0.0, 1.5]]]))


@pytest.mark.parametrize("mistake, fn, words", [
    ("Grad-CAM's mean gradient as the weight", lambda a, g: torch.relu((g.mean(dim=(2, 3))[:, :, None, None] * a)
                                                                       .sum(dim=1)), "that is Grad-CAM"),
    ("alpha times G, not ReLU(G)", lambda a, g: _pp(a, g, positive=False), "the negative gradients count too"),
    ("A at the position in the denominator", lambda a, g: _pp(a, g, channel_sum=False), "sum_ab A_ab"),
    ("a mean over the positions", lambda a, g: _pp(a, g, reduce="mean"), "a sum over the positions, not a mean"),
    ("no final ReLU", lambda a, g: _pp(a, g, final_relu=False), "the final ReLU is missing"),
    ("plain division: 0 / 0 where G = 0", lambda a, g: _pp(a, g, safe=False), "0 / 0"),
])
def test_11_grad_cam_pp_mistakes_are_named(mistake, fn, words, capsys):
    checks.check_grad_cam_pp(fn)
    out = printed(capsys)
    assert out.startswith("✗ Grad-CAM++ by hand") and words in out, (mistake, out)


def test_11_grad_cam_pp_the_library_call_missing_and_raising(capsys):
    def library(a, g):
        return GRADIENT_CAMS["Grad-CAM++"](a, g).clamp(min=0)

    checks.check_grad_cam_pp(library)
    out = printed(capsys)
    assert out.startswith("✗") and "GRADIENT_CAMS" in out
    checks.check_grad_cam_pp(None)
    assert printed(capsys).startswith("… Grad-CAM++ by hand: not answered yet")
    checks.check_grad_cam_pp(lambda a, g: None)
    assert printed(capsys).startswith("… Grad-CAM++ by hand: not answered yet")
    checks.check_grad_cam_pp(lambda a, g: a.sum(dim=(1, 2, 3)))  # one number per image
    assert "should give (2, 1, 2)" in printed(capsys)

    def broken(a, g):
        raise IndexError("dimension out of range")

    checks.check_grad_cam_pp(broken)
    assert printed(capsys).startswith("✗ Grad-CAM++ by hand: your code raised IndexError: dimension out of range")


# --- exercise 2: Integrated Gradients ---


def _ig(model, x, target, steps, points="mid", score="logit", reduce="mean", times_x=True, backward=False):
    """Integrated Gradients along alpha x with one step done another way (each keyword names a mistake)."""
    alphas = {"mid": [(k + 0.5) / steps for k in range(steps)], "right": [(k + 1) / steps for k in range(steps)],
              "image": [1.0]}[points]
    total = torch.zeros_like(x)
    for alpha in alphas:
        point = (alpha * x).detach().requires_grad_(True)
        out = model(point)
        y = (out.softmax(dim=1) if score == "probability" else out)[:, target].sum()
        if backward:
            y.backward()
            grad = point.grad
        else:
            (grad,) = torch.autograd.grad(y, point)
        total = total + grad
    mean = total / len(alphas) if reduce == "mean" else total
    return x * mean if times_x else mean


def integrated_gradients_solution(model, x, target, steps):
    return _ig(model, x, target, steps)


def test_11_integrated_gradients_solution_passes_and_leaves_the_model(course, capsys):
    before = model_state(course.model)
    checks.check_integrated_gradients(integrated_gradients_solution, course)
    assert printed(capsys).startswith("✓ Integrated Gradients by hand: exact on a linear and a quadratic model")
    assert_same_state(before, model_state(course.model))


def test_11_integrated_gradients_tiny_models_are_worked_out_by_hand():
    """The quadratic model's IG with the midpoints is exactly W x² and adds up to the logit's change."""
    weight, bias = torch.tensor([[2.0, -1.0, 0.5, 1.0]]), torch.tensor([3.0])
    model = checks._Squares(weight, bias)
    x = torch.tensor([[[[1.0, 2.0], [-2.0, 3.0]]]])
    ig = _ig(model, x, 0, 4)
    assert torch.allclose(ig.flatten(), torch.tensor([2.0, -4.0, 2.0, 9.0]))
    assert torch.isclose(ig.sum(), model(x)[0, 0] - model(torch.zeros_like(x))[0, 0])


@pytest.mark.parametrize("mistake, options, words", [
    ("the right-hand points k/steps (the paper's eq. 3)", dict(points="right"), "k = 1..steps"),
    ("Input × Gradient: the gradient at the image only", dict(points="image"), "that is Input × Gradient"),
    ("the gradients summed, not averaged", dict(reduce="sum"), "take their mean"),
    ("the mean gradient alone", dict(times_x=False), "not multiplied by (x - baseline)"),
    ("the probability's gradient", dict(score="probability"), "not a probability"),
])
def test_11_integrated_gradients_mistakes_are_named(course, mistake, options, words, capsys):
    checks.check_integrated_gradients(lambda model, x, target, steps: _ig(model, x, target, steps, **options), course)
    out = printed(capsys)
    assert out.startswith("✗ Integrated Gradients by hand") and words in out, (mistake, out)


def test_11_integrated_gradients_with_backward_is_refused_and_the_grads_are_undone(course, capsys):
    before = model_state(course.model)
    checks.check_integrated_gradients(lambda model, x, target, steps: _ig(model, x, target, steps, backward=True),
                                      course)
    out = printed(capsys)
    assert out.startswith("✗") and "wrote .grad" in out
    assert_same_state(before, model_state(course.model))


def test_11_integrated_gradients_library_missing_wrong_shape_and_raising(course, capsys):
    from course_utils import saliency

    checks.check_integrated_gradients(
        lambda model, x, target, steps: saliency.integrated_gradients(model, x, target, steps=steps), course)
    out = printed(capsys)
    assert out.startswith("✗") and "integrated_gradients" in out
    checks.check_integrated_gradients(None, course)
    assert printed(capsys).startswith("… Integrated Gradients by hand: not answered yet")
    checks.check_integrated_gradients(lambda model, x, target, steps: x.sum(dim=1), course)
    assert "the attributions have the input's shape (2, 1, 2, 2)" in printed(capsys)

    def broken(model, x, target, steps):
        raise RuntimeError("element 0 of tensors does not require grad")

    checks.check_integrated_gradients(broken, course)
    assert printed(capsys).startswith("✗ Integrated Gradients by hand: your code raised RuntimeError")


# --- exercise 3: do the measures agree ---


def _board():
    """Four methods with scores chosen so that Spearman's correlations are worked out by hand:
    pointing game (1, 0.5, 0.5, 0) ranks (4, 2.5, 2.5, 1), centred (1.5, 0, 0, -1.5);
    insertion (0.9, 0.6, 0.7, 0.1) ranks (4, 2, 3, 1), centred (1.5, -0.5, 0.5, -1.5): rho = 4.5 / sqrt(4.5 * 5);
    minus deletion (-0.2, -0.1, -0.3, -0.4) ranks (3, 4, 2, 1), centred (0.5, 1.5, -0.5, -1.5): rho = 3 / sqrt(22.5)."""
    methods = ["a", "b", "c", "d"]
    columns = {"pointing game": [1.0, 0.5, 0.5, 0.0], "insertion AUC": [0.9, 0.6, 0.7, 0.1],
               "deletion AUC": [0.2, 0.1, 0.3, 0.4]}
    return SimpleNamespace(methods=methods, scores={m: {k: v[i] for k, v in columns.items()}
                                                    for i, m in enumerate(methods)})


BY_HAND = [3 / math.sqrt(10), 2 / math.sqrt(10)]


def test_11_metric_agreement_by_hand_passes(capsys):
    checks.check_metric_agreement(BY_HAND, _board())
    assert printed(capsys).startswith("✓ do the measures agree")


def test_11_metric_agreement_on_a_real_board(capsys):
    from course_utils.leaderboard import leaderboard

    board = leaderboard("course", ["Grad-CAM", "vanilla gradient", "deconvnet", "Eigen-CAM"], n_scenes=6,
                        n_pairs=2, progress=False)
    from course_utils import evaluation

    column = {k: [round(board.scores[m][k], 2) for m in board.methods] for k in ("pointing game", "insertion AUC",
                                                                                  "deletion AUC")}
    answer = [evaluation.spearman(column["pointing game"], column["insertion AUC"]),
              evaluation.spearman(column["pointing game"], [-v for v in column["deletion AUC"]])]
    checks.check_metric_agreement(answer, board)
    assert printed(capsys).startswith("✓")


@pytest.mark.parametrize("mistake, answer, words", [
    ("deletion not turned round", [BY_HAND[0], -BY_HAND[1]], "the wrong way round"),
    ("Pearson's correlation of the scores", None, "Pearson"),
    ("ranks by sorting twice, ties not shared", None, "mean rank"),
    ("the two swapped", BY_HAND[::-1], "both numbers are off"),
    ("one number", [0.5], "give two numbers"),
    ("words", "they agree", "give two numbers"),
])
def test_11_metric_agreement_mistakes_are_named(mistake, answer, words, capsys):
    import numpy as np

    p, i, d = (np.array([s[k] for s in _board().scores.values()]) for k in ("pointing game", "insertion AUC",
                                                                             "deletion AUC"))
    if mistake.startswith("Pearson"):
        answer = [np.corrcoef(p, i)[0, 1], np.corrcoef(p, -d)[0, 1]]
    elif mistake.startswith("ranks"):
        def ranks(v):
            return np.argsort(np.argsort(v, kind="stable"))
        answer = [np.corrcoef(ranks(p), ranks(i))[0, 1], np.corrcoef(ranks(p), ranks(-d))[0, 1]]
    checks.check_metric_agreement(answer, _board())
    out = printed(capsys)
    assert out.startswith("✗ do the measures agree") and words in out, (mistake, out)


def test_11_metric_agreement_unrounded_scores_are_named(capsys):
    """Two methods whose deletion AUCs differ in the 7th decimal (maps equal up to float rounding) tie once
    rounded as the table prints them: rounded, minus deletion ranks as the pointing game (rho = 1); unrounded,
    it ranks as insertion does (rho = 3 / sqrt(10))."""
    board = _board()
    board.scores["b"]["deletion AUC"], board.scores["c"]["deletion AUC"] = 0.3000001, 0.2999999
    checks.check_metric_agreement([3 / math.sqrt(10), 1.0], board)
    assert printed(capsys).startswith("✓")
    checks.check_metric_agreement([3 / math.sqrt(10), 3 / math.sqrt(10)], board)
    out = printed(capsys)
    assert out.startswith("✗") and "round each score to 2 decimals" in out


def test_11_metric_agreement_not_answered(capsys):
    checks.check_metric_agreement(None, _board())
    assert printed(capsys).startswith("… do the measures agree: not answered yet")
