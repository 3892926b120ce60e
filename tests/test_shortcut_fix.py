"""Lesson 10's fix and its exercise checks: ``train.retrain_head`` (deep feature reweighting), the
retrained checkpoint, and that each exercise's check fails a plausible wrong answer and passes the solution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_utils import checks, evaluation, train
from course_utils.coursenet import CourseNet
from course_utils.methods import explain
from course_utils.models import load_model
from course_utils.scenes import make_scene, make_scenes

from .conftest import assert_same_state, model_state


class TwoFeatures(nn.Module):
    """Images -> two features (the means of channels 0 and 1) -> a linear head with three classes."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


def separable(n_per_class: int = 10):
    """Three classes told apart by channel 0 alone (-3, 0 or 3, give or take 0.5); channels 1 and 2 noise."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(n_per_class)
    x = torch.rand(len(y), 3, 2, 2, generator=gen) - 0.5
    x[:, 0] += 3.0 * (y[:, None, None] - 1)
    return x, y


# --- train.retrain_head -----------------------------------------------------------------------------


def test_retrain_head_fits_linearly_separable_features_exactly():
    torch.manual_seed(0)
    model = TwoFeatures()
    x, y = separable()
    new = train.retrain_head(model, x, y, weight_decay=0.0)
    with torch.no_grad():
        assert torch.equal(new(x).argmax(1), y)
        # the class follows channel 0 alone: one point per class, made by hand, well inside its class
        by_hand = torch.zeros(3, 3, 2, 2)
        by_hand[:, 0] = torch.tensor([-3.0, 0.0, 3.0])[:, None, None]
        assert new(by_hand).argmax(1).tolist() == [0, 1, 2]


def test_retrain_head_leaves_the_callers_model_unchanged():
    torch.manual_seed(0)
    model = TwoFeatures().train()
    model.pool.requires_grad_(False)
    model.fc.bias.requires_grad_(False)
    before = model_state(model)
    new = train.retrain_head(model, *separable())
    assert_same_state(before, model_state(model))
    assert new is not model and not torch.equal(new.fc.weight, model.fc.weight)
    assert new.training and not new.fc.bias.requires_grad  # the copy keeps the caller's flags


def test_retrain_head_leaves_the_model_unchanged_when_it_fails(monkeypatch):
    model = TwoFeatures().train()
    before = model_state(model)

    def broken(*args, **kwargs):
        raise RuntimeError("no optimizer today")

    monkeypatch.setattr(torch.optim, "LBFGS", broken)
    with pytest.raises(RuntimeError, match="no optimizer"):
        train.retrain_head(model, *separable())
    assert_same_state(before, model_state(model))


def test_retrain_head_is_deterministic():
    model = TwoFeatures()
    x, y = separable()
    a, b = train.retrain_head(model, x, y), train.retrain_head(model, x, y)
    assert torch.equal(a.fc.weight, b.fc.weight) and torch.equal(a.fc.bias, b.fc.bias)


def test_weight_decay_shrinks_the_head():
    model, (x, y) = TwoFeatures(), separable()
    loose, tight = (train.retrain_head(model, x, y, weight_decay=wd) for wd in (1e-4, 1.0))
    assert tight.fc.weight.norm() < loose.fc.weight.norm()


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: train.retrain_head(m, x[:, :, 0], y), r"\(N, C, H, W\)"),
    (lambda m, x, y: train.retrain_head(m, x, y[:-1]), "one class index per image"),
    (lambda m, x, y: train.retrain_head(m, x, y.float()), "one class index per image"),
    (lambda m, x, y: train.retrain_head(m, x, y + 1), "from 0 to 2"),
    (lambda m, x, y: train.retrain_head(m, x, y, layer="pool"), "AdaptiveAvgPool2d.*Linear"),
    (lambda m, x, y: train.retrain_head(m, x, y, layer="fcc"), "fc"),
])
def test_retrain_head_bad_input_gets_a_clear_error(call, message):
    model, (x, y) = TwoFeatures(), separable()
    with pytest.raises(Exception, match=message):
        call(model, x, y)


# --- the shipped fix ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lesson():
    """The lesson's models and its first 120 unbiased test scenes (seed 21)."""
    unbiased = make_scenes(120, seed=21, bias=0.0)
    shortcut, course = load_model("shortcut"), load_model("course")
    return shortcut, course, unbiased, course.batch(list(unbiased.images)), unbiased.masks[:, 0]


def test_the_debiased_model_is_the_shortcut_model_retrained_and_recognises_the_shapes(lesson):
    shortcut, _, unbiased, x, _ = lesson
    fixed = load_model("debiased")
    assert fixed.info["train"]["init"] == "shortcutnet.pt" and fixed.info["train"]["bias"] == 0.0
    assert train.accuracy(fixed.model, unbiased.images, unbiased.labels[:, 0]) > 0.9
    assert train.accuracy(shortcut.model, unbiased.images, unbiased.labels[:, 0]) < 0.35


def test_last_layer_retraining_cannot_fix_the_shortcut_model(lesson):
    """Its pooled features hold the background, not the shape: a new head stays near chance."""
    shortcut, _, unbiased, x, _ = lesson
    balanced = make_scenes(300, seed=5, bias=0.0)
    new = train.retrain_head(shortcut.model, shortcut.batch(list(balanced.images)), balanced.labels[:, 0])
    assert train.accuracy(new, unbiased.images, unbiased.labels[:, 0]) < 0.4


def test_make_debiased_starts_from_the_shortcut_checkpoint_on_balanced_scenes(tmp_path, monkeypatch):
    """``python -m course_utils.train --debiased``, with the training itself replaced by a stand-in."""
    seen = {}

    def fake_train(epochs, per_epoch, seed, bias, init, history):
        seen.update(epochs=epochs, per_epoch=per_epoch, bias=bias, init=init)
        history += [0.5] * epochs
        model = CourseNet()
        model.load_state_dict(init)
        return model, 0.5

    monkeypatch.setattr(train, "train", fake_train)
    monkeypatch.setattr(train, "accuracy", lambda model, images, labels: 0.25)
    train.main(["--debiased", "--out", str(tmp_path / "fixed.pt")])
    shortcut = torch.load(train.SHORTCUT_CHECKPOINT, weights_only=True)["state_dict"]
    assert seen["bias"] == 0.0 and seen["epochs"] == train.DEBIASED_SETTINGS["epochs"]
    assert all(torch.equal(seen["init"][k], shortcut[k]) for k in shortcut)
    ckpt = torch.load(tmp_path / "fixed.pt", weights_only=True)
    assert ckpt["train"]["init"] == "shortcutnet.pt" and ckpt["train"]["history"] == [0.5] * seen["epochs"]
    assert ckpt["heldout"]["bias"] == 0.0 and ckpt["heldout_accuracy_biased"] == 0.25


def test_shortcut_and_debiased_cannot_be_asked_together(capsys):
    with pytest.raises(SystemExit):
        train.main(["--shortcut", "--debiased"])
    assert "choose one" in capsys.readouterr().err


# --- the exercises' checks ------------------------------------------------------------------------------


def said(capsys, check, *args) -> str:
    check(*args)
    return capsys.readouterr().out


def swapped_answer(shortcut, own_backgrounds_too=False):
    """Exercise 1's solution; with ``own_backgrounds_too`` the mistake of keeping the 24 scenes with b == s."""
    cases = [(s, b, i) for s in range(6) for b in range(6) if own_backgrounds_too or b != s for i in range(4)]
    x = shortcut.batch([make_scene(41, i, classes=[s], background=b).image for s, b, i in cases])
    with torch.no_grad():
        top = shortcut.model(x).argmax(1)
    shapes, colours = torch.tensor([c[:2] for c in cases]).T
    return [(top == shapes).float().mean().item(), (top == colours).float().mean().item()]


def test_swapped_rates_check_passes_the_solution_and_names_each_mistake(lesson, capsys):
    shortcut = lesson[0]
    right = swapped_answer(shortcut)
    assert said(capsys, checks.check_swapped_rates, right, shortcut).startswith("✓")
    assert said(capsys, checks.check_swapped_rates, None, shortcut).startswith("… ")
    for mistake, answer, says in [
        ("counts instead of shares", [120 * r for r in right], "counts"),
        ("each shape on its own colours kept", swapped_answer(shortcut, own_backgrounds_too=True), "own class's colours"),
        ("the two numbers swapped", right[::-1], "other way round"),
        ("the second number wrong", [right[0], 0.5], "the accuracy is right, the share naming the background's class is off"),
        ("one number", right[:1], "give two numbers"),
    ]:
        out = said(capsys, checks.check_swapped_rates, answer, shortcut)
        assert out.startswith("✗") and says in out, (mistake, out)


def true_class_energy(models, x, masks, targets, mode="bilinear"):
    """Exercise 2's solution, by hand; ``mode="nearest"`` upsamples with F.interpolate's default."""
    inside = torch.from_numpy(masks).flatten(1)
    means = []
    for m in models:
        raw = explain(m.model, x, "Grad-CAM", targets)[:, None]
        heat = (torch.nn.functional.interpolate(raw, size=64, mode="bilinear", align_corners=False) if mode == "bilinear"
                else torch.nn.functional.interpolate(raw, size=64)).flatten(1).clamp(min=0)
        total = heat.sum(1)
        means.append(torch.where(total != 0, (heat * inside).sum(1) / total, 0.0).mean().item())
    return means


def test_true_class_energy_check_passes_the_solution_and_names_each_mistake(lesson, capsys):
    shortcut, course, unbiased, x, masks = lesson
    true = unbiased.labels[:, 0].tolist()
    right = true_class_energy((shortcut, course), x, masks, true)
    assert said(capsys, checks.check_true_class_energy, right, shortcut, course, x, masks, true).startswith("✓")
    top_class = [evaluation.energy_inside(explain(m.model, x, "Grad-CAM"), masks).mean().item() for m in (shortcut, course)]
    for mistake, answer, says in [
        ("the top class's maps, as in section 5", top_class, "top class"),
        ("nearest-neighbour upsampling", true_class_energy((shortcut, course), x, masks, true, mode="nearest"),
         "upsample bilinearly"),
        ("the two numbers swapped", right[::-1], "other way round"),
        ("the course model's number wrong", [right[0], right[1] + 0.01], "the shortcut model's is right"),
    ]:
        out = said(capsys, checks.check_true_class_energy, answer, shortcut, course, x, masks, true)
        assert out.startswith("✗") and says in out, (mistake, out)


def unchanged_share(models, scenes, fill="outside", compare_with="top"):
    """Exercise 3's solution; ``fill="all"`` paints the whole image's mean colour, ``compare_with="label"``
    compares the answer without the shape with the true class instead of the answer with it."""
    out = []
    for m in models:
        erased = []
        for image, mask in zip(scenes.images, scenes.masks[:, 0]):
            img = image.astype(np.float32) / 255
            img[mask] = img[~mask].mean(axis=0) if fill == "outside" else img.reshape(-1, 3).mean(axis=0)
            erased.append((img - 0.5) / 0.25)
        with torch.no_grad():
            after = m.model(torch.from_numpy(np.stack(erased)).permute(0, 3, 1, 2)).argmax(1)
            before = (m.model(m.batch(list(scenes.images))).argmax(1) if compare_with == "top"
                      else torch.from_numpy(scenes.labels[:, 0]))
        out.append((after == before).float().mean().item())
    return out


def test_unchanged_without_shape_check_passes_the_solution_and_names_each_mistake(lesson, capsys):
    shortcut, course, unbiased, _, _ = lesson
    models = (shortcut, course)
    right = unchanged_share(models, unbiased)
    assert said(capsys, checks.check_unchanged_without_shape, right, shortcut, course, unbiased).startswith("✓")
    for mistake, answer, says in [
        ("compared with the true class", unchanged_share(models, unbiased, compare_with="label"), "true class"),
        ("the whole image's mean colour", unchanged_share(models, unbiased, fill="all"), "outside the object only"),
        ("the shortcut model's number wrong", [0.5, right[1]], "the course model's is right, the shortcut model's is off"),
        ("not a number", ["high", "low"], "give two numbers"),
    ]:
        out = said(capsys, checks.check_unchanged_without_shape, answer, shortcut, course, unbiased)
        assert out.startswith("✗") and says in out, (mistake, out)
