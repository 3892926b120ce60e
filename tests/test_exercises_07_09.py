"""The exercise checks of lessons 07-09: for each exercise, the solution gets ✓ and the mistake
a student would really make gets ✗ (with what is off), and a check never raises."""

from __future__ import annotations

import copy

import pytest
import torch

from course_utils import cam, checks, evaluation, saliency
from course_utils.hooks import capture, relu_rule
from course_utils.methods import explain
from course_utils.models import load_model
from course_utils.scenes import make_scene, make_scenes

from .conftest import assert_same_state, model_state, printed


@pytest.fixture(scope="module")
def course():
    return load_model("course")


# --- lesson 07 ---


def guided_grad_cam_solution(model, x, target, layer):
    gb = saliency.guided_backprop(model, x, target)
    heat = cam.normalize_maps(cam.grad_cam(model, x, target, layer=layer).upsampled(x.shape[-2:]))
    return gb * heat[:, None]


def test_07_guided_grad_cam_solution_passes_and_leaves_the_model(course, capsys):
    before = model_state(course.model)
    checks.check_guided_grad_cam(guided_grad_cam_solution, course)
    assert printed(capsys).startswith("✓ Guided Grad-CAM")
    assert_same_state(before, model_state(course.model))


def test_07_guided_grad_cam_with_the_raw_map_as_mask_fails(course, capsys):
    def raw_mask(model, x, target, layer):  # forgot to scale the map to [0, 1]
        gb = saliency.guided_backprop(model, x, target)
        return gb * cam.grad_cam(model, x, target, layer=layer).upsampled(x.shape[-2:])[:, None]

    checks.check_guided_grad_cam(raw_mask, course)
    out = printed(capsys)
    assert out.startswith("✗") and "normalize_maps" in out


def test_07_guided_grad_cam_ignoring_the_layer_fails(course, capsys):
    def last_block(model, x, target, layer):  # the map at the default layer, not the one asked for
        return guided_grad_cam_solution(model, x, target, None)

    checks.check_guided_grad_cam(last_block, course)
    out = printed(capsys)
    assert out.startswith("✗") and "the layer you are given" in out


def test_07_guided_grad_cam_by_the_library_call_fails(course, capsys):
    def library(model, x, target, layer):
        return cam.guided_grad_cam(model, x, target, layer=layer)

    checks.check_guided_grad_cam(library, course)
    out = printed(capsys)
    assert out.startswith("✗") and "guided_grad_cam" in out


def test_07_guided_grad_cam_not_answered_and_raising(course, capsys):
    checks.check_guided_grad_cam(lambda model, x, target, layer: None, course)
    assert printed(capsys).startswith("… Guided Grad-CAM: not answered yet")

    def broken(model, x, target, layer):
        raise IndexError("index 9 is out of bounds")

    checks.check_guided_grad_cam(broken, course)
    assert printed(capsys) == "✗ Guided Grad-CAM: your code raised IndexError: index 9 is out of bounds\n"


def rule_grad_cam_solution(model, x, target, layer, rule):
    with relu_rule(rule), capture(model, layer, detach=False) as acts:
        logits = model(x)
    a = acts[layer]
    (grad,) = torch.autograd.grad(logits[0, target], a)
    alpha = grad.mean(dim=(2, 3))
    return torch.einsum("nk,nkhw->nhw", alpha, a.detach()).clamp(min=0)


def test_07_rule_grad_cam_solution_passes(course, capsys):
    checks.check_rule_grad_cam(rule_grad_cam_solution, course)
    assert printed(capsys).startswith("✓ Grad-CAM with a ReLU rule")


def test_07_rule_grad_cam_with_the_rule_outside_the_forward_pass_fails_on_the_hand_case(course, capsys):
    def rule_too_late(model, x, target, layer, rule):  # the rule wraps the gradient, not the forward pass
        with capture(model, layer, detach=False) as acts:
            logits = model(x)
        with relu_rule(rule):
            (grad,) = torch.autograd.grad(logits[0, target], acts[layer])
        return torch.einsum("nk,nkhw->nhw", grad.mean(dim=(2, 3)), acts[layer].detach()).clamp(min=0)

    checks.check_rule_grad_cam(rule_too_late, course)
    out = printed(capsys)
    assert out.startswith("✗") and "rule 'guided' on a tiny model worked out by hand" in out


def test_07_rule_grad_cam_with_summed_gradients_fails(course, capsys):
    def summed(model, x, target, layer, rule):  # alpha as the sum over positions, not the mean
        with relu_rule(rule), capture(model, layer, detach=False) as acts:
            logits = model(x)
        (grad,) = torch.autograd.grad(logits[0, target], acts[layer])
        return torch.einsum("nk,nkhw->nhw", grad.sum(dim=(2, 3)), acts[layer].detach()).clamp(min=0)

    checks.check_rule_grad_cam(summed, course)
    out = printed(capsys)
    assert out.startswith("✗") and "rule 'plain'" in out and "by hand the maps are plain (0.5, 0)" in out


def test_07_rule_grad_cam_by_the_library_call_fails(course, capsys):
    checks.check_rule_grad_cam(lambda model, x, t, layer, rule: cam.grad_cam(model, x, t, layer=layer, rule=rule).maps,
                               course)
    out = printed(capsys)
    assert out.startswith("✗") and "grad_cam" in out


def scene_and_noise(course):
    scene = make_scene(seed=2, index=11, n_objects=2)
    noise = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return course.batch([scene.image]), noise, int(scene.labels[0])


def test_07_noise_alpha_solution_passes(course, capsys):
    x, noise, cross = scene_and_noise(course)
    with relu_rule("deconvnet"), capture(course.model, "features.relu4", detach=False) as acts:
        logits = course.model(noise)
    (grad,) = torch.autograd.grad(logits[0, cross], acts["features.relu4"])
    checks.check_noise_alpha(grad.mean(dim=(2, 3)), course.model, x, noise, cross)
    assert printed(capsys).startswith("✓ deconvnet alpha at relu4, noise vs the scene")


def test_07_noise_alpha_with_the_plain_rule_fails(course, capsys):
    x, noise, cross = scene_and_noise(course)
    with capture(course.model, "features.relu4", detach=False) as acts:  # relu_rule forgotten
        logits = course.model(noise)
    (grad,) = torch.autograd.grad(logits[0, cross], acts["features.relu4"])
    checks.check_noise_alpha(grad.mean(dim=(2, 3)), course.model, x, noise, cross)
    out = printed(capsys)
    assert out.startswith("✗") and "plain rule's alpha" in out
    checks.check_noise_alpha(None, course.model, x, noise, cross)
    assert printed(capsys).startswith("…")


# --- lesson 08 ---


def test_08_count_op_solution_passes_and_counting_every_node_fails(capsys):
    checks.check_count_op(lambda ops, op: sum(node.op == op for node in ops))
    assert printed(capsys).startswith("✓ count_op")
    checks.check_count_op(lambda ops, op: len(ops))
    out = printed(capsys)
    assert out.startswith("✗") and "that is every node" in out


def test_08_count_op_by_substring_fails(capsys):
    checks.check_count_op(lambda ops, op: sum(op in node.op for node in ops))  # 'aten::relu' in 'aten::relu_'
    out = printed(capsys)
    assert out.startswith("✗") and "'aten::relu'" in out and "expected 1" in out


@pytest.fixture(scope="module")
def resnet_and_ops(tmp_path_factory):
    import torchvision

    from course_utils import tensorboard as tb

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    logdir = tmp_path_factory.mktemp("runs") / "resnet18"
    tb.write_graph(resnet, torch.zeros(1, 3, 64, 64), logdir)  # the same operations as at 224x224, traced faster
    return resnet, tb.layer_ops(tb.read_graph(logdir))


def test_08_residual_adds_solution_passes_and_a_list_of_the_right_length_fails(resnet_and_ops, capsys):
    resnet, ops = resnet_and_ops
    checks.check_residual_adds([node.layer for node in ops if node.op == "aten::add_"], resnet)
    assert printed(capsys) == "✓ residual additions: one in each of the 8 blocks, layer1.0 to layer4.1\n"
    checks.check_residual_adds([None] * 8, resnet)  # passed the old length-only check
    assert printed(capsys) == "✗ residual additions: entry 0 is None, expected 'layer1.0'\n"


def test_08_residual_adds_node_names_or_the_wrong_op_fail(resnet_and_ops, capsys):
    resnet, ops = resnet_and_ops
    checks.check_residual_adds([node.name for node in ops if node.op == "aten::add_"], resnet)
    assert "node.layer" in printed(capsys)
    checks.check_residual_adds([node.layer for node in ops if node.op == "aten::add"], resnet)  # no underscore
    assert "'aten::add_'" in printed(capsys)


# --- lesson 09 ---


def pointing_game_solution(maps, masks, tolerance):
    up = cam.upsample(maps, masks.shape[-2:])
    flat = up.flatten(1)
    rows, cols = flat.argmax(dim=1) // up.shape[-1], flat.argmax(dim=1) % up.shape[-1]
    hits = torch.zeros(len(up), dtype=torch.bool)
    for j in range(len(up)):
        ys, xs = torch.nonzero(masks[j], as_tuple=True)
        nearest = ((ys - rows[j]) ** 2 + (xs - cols[j]) ** 2).min()
        hits[j] = nearest <= tolerance**2 and flat[j].max() > flat[j].min()
    return hits


def test_09_pointing_game_solution_passes(capsys):
    checks.check_pointing_game(pointing_game_solution)
    assert printed(capsys).startswith("✓ pointing game")


def test_09_pointing_game_with_a_square_window_fails(capsys):
    def square_window(maps, masks, tolerance):  # rows and columns within the tolerance: a square, not a disk
        up = cam.upsample(maps, masks.shape[-2:]).flatten(1)
        peak = up.argmax(dim=1)
        grown = torch.nn.functional.max_pool2d(masks[:, None].float(), 2 * tolerance + 1, 1, tolerance)[:, 0] > 0
        return grown.flatten(1).gather(1, peak[:, None])[:, 0] & (up.amax(1) > up.amin(1))

    checks.check_pointing_game(square_window)
    out = printed(capsys)
    assert out.startswith("✗") and "(4.2 px), tolerance 4 px: yours says hit, it is a miss" in out


def test_09_pointing_game_counting_a_flat_map_fails(capsys):
    def no_flat_rule(maps, masks, tolerance):
        return pointing_game_solution(maps, masks, tolerance) | (maps.flatten(1).amax(1) == maps.flatten(1).amin(1)) \
            & masks.flatten(1)[:, 0]  # a flat map's argmax (pixel 0) counted like any peak

    checks.check_pointing_game(no_flat_rule)
    out = printed(capsys)
    assert out.startswith("✗") and "a flat map" in out and "yours says hit" in out


def test_09_pointing_game_library_call_fails(capsys):
    checks.check_pointing_game(lambda maps, masks, t: evaluation.pointing_game(maps, masks, tolerance=t))
    out = printed(capsys)
    assert out.startswith("✗") and "pointing_game" in out


@pytest.fixture(scope="module")
def four_scenes(course):
    held_out = make_scenes(60, seed=21)
    return course.batch(list(held_out.images))[:4], held_out.labels[:4, 0].tolist()


def correlations_by_hand(course, x, targets, reset, correlation):
    twin = copy.deepcopy(course.model).eval()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for layer in reset:
            twin.get_submodule(layer).reset_parameters()
    result = []
    for method in ["vanilla gradient", "guided backprop"]:
        a, b = explain(course.model, x, method, targets), explain(twin, x, method, targets)
        result.append(sum(correlation(p, q) for p, q in zip(a, b)) / len(x))
    return result


def ranks_correlation(a, b):
    ra, rb = (m.flatten().argsort().argsort().double() for m in (a, b))
    return torch.corrcoef(torch.stack([ra, rb]))[0, 1].item()


def test_09_randomized_spearman_solution_passes_and_leaves_the_model(course, four_scenes, capsys):
    x, targets = four_scenes
    before = model_state(course.model)
    checks.check_randomized_spearman(correlations_by_hand(course, x, targets, ["fc", "features.conv5"],
                                                          ranks_correlation), course.model, x, targets)
    assert printed(capsys).startswith("✓ Spearman after randomizing fc and conv5")
    assert_same_state(before, model_state(course.model))


def test_09_randomized_spearman_with_pearson_or_fc_only_fails(course, four_scenes, capsys):
    x, targets = four_scenes

    def pearson(a, b):  # the values' correlation, not the ranks'
        return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]).double())[0, 1].item()

    checks.check_randomized_spearman(correlations_by_hand(course, x, targets, ["fc", "features.conv5"], pearson),
                                     course.model, x, targets)
    assert "Pearson" in printed(capsys)
    checks.check_randomized_spearman(correlations_by_hand(course, x, targets, ["fc"], ranks_correlation),
                                     course.model, x, targets)
    assert "fc alone random" in printed(capsys)


def energy_share_solution(maps, masks):
    positive = cam.upsample(maps, masks.shape[-2:]).clamp(min=0)
    return (positive * masks).sum(dim=(1, 2)) / positive.sum(dim=(1, 2)).clamp(min=1e-12)


def test_09_energy_share_solution_passes(capsys):
    checks.check_energy_share(energy_share_solution)
    assert printed(capsys).startswith("✓ energy share")


def test_09_energy_share_with_negative_values_fails(capsys):
    def all_values(maps, masks):  # the positive part forgotten
        m = cam.upsample(maps, masks.shape[-2:])
        return (m * masks).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp(min=1e-12)

    checks.check_energy_share(all_values)
    out = printed(capsys)
    assert out.startswith("✗") and "only the positive part counts" in out


def test_09_energy_share_dividing_zero_by_zero_fails(capsys):
    def unguarded(maps, masks):  # an all-zero map gives 0 / 0
        positive = cam.upsample(maps, masks.shape[-2:]).clamp(min=0)
        return (positive * masks).sum(dim=(1, 2)) / positive.sum(dim=(1, 2))

    checks.check_energy_share(unguarded)
    out = printed(capsys)
    assert out.startswith("✗") and "not NaN" in out and "yours nan" in out


def test_answers_of_the_wrong_kind_are_reported_not_raised(resnet_and_ops, capsys):
    checks.check_residual_adds(8, resnet_and_ops[0])  # the count, not the list
    assert printed(capsys) == "✗ residual additions: expected a list of layer names, got int\n"
    checks.check_pointing_game(lambda maps, masks, t: [[True], [True, False]])  # ragged: not one bool per map
    assert printed(capsys) == "✗ pointing game: not one bool per map for 5 maps\n"
    checks.check_energy_share(lambda maps, masks: maps.mean(dim=(1, 2)))  # one number per map, but not the share
    assert printed(capsys).startswith("✗ energy share: a map of 1s, the mask the left half: yours 1, by hand 0.5")
