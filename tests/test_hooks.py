"""The safe core: layer lookup, the guard, capturing activations and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_utils.coursenet import CourseNet
from course_utils.hooks import (
    LayerNotFoundError,
    capture,
    eval_mode,
    RELU_RULES,
    get_layer,
    layer_name,
    layer_names,
    list_layers,
    model_guard,
    relu_rule,
)
from course_utils.targets import class_list, resolve_targets
from tests.conftest import all_hooks, assert_same_state, model_state


def activations_and_gradients(model, x, layers, target=None):
    """(logits, activations, gradients of the target score) by layer name, through cam.GradCAM: the
    course's one forward pass with layers kept and gradients taken to them, on any layer (spatial or not)."""
    from course_utils.cam import GradCAM

    g = GradCAM(model, x, layers)
    return g.logits, {n: g.acts[n].detach() for n in g.layers}, {n: g.gradients(target, n)[0] for n in g.layers}


def tiny_linear_head():
    """conv -> relu -> flatten -> fc. The gradient of logit c with respect to the
    flatten output is fc.weight[c], whatever the input: an answer we can write down."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3)
    ).eval()


# --- layer lookup ----------------------------------------------------------------


def test_list_layers_finds_the_course_model_convs():
    assert list_layers(CourseNet(), "conv") == [f"features.conv{i}" for i in range(1, 6)]
    assert list_layers(CourseNet(), "linear") == ["fc"]


def test_list_layers_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown layer kind 'convolution'"):
        list_layers(CourseNet(), "convolution")


def test_get_layer_by_dotted_name(resnet18_random):
    assert get_layer(resnet18_random, "layer4.1.conv2") is resnet18_random.layer4[1].conv2
    assert get_layer(CourseNet(), "features.conv3").out_channels == 64


def test_get_layer_typo_lists_close_matches_and_conv_layers():
    with pytest.raises(LayerNotFoundError) as err:
        get_layer(CourseNet(), "features.cnv4")
    msg = str(err.value)
    assert "no layer named 'features.cnv4'" in msg
    assert "Did you mean 'features.conv4'" in msg
    assert "features.conv1, features.conv2" in msg  # the conv layers, listed


def test_get_layer_rejects_foreign_modules_and_non_strings():
    with pytest.raises(LayerNotFoundError, match="not part of this model"):
        get_layer(CourseNet(), nn.ReLU())
    with pytest.raises(TypeError, match="named by a string"):
        get_layer(CourseNet(), 3)
    with pytest.raises(LayerNotFoundError):
        get_layer(CourseNet(), "")  # the root is not a layer


def test_a_layer_given_as_a_module_is_resolved_to_its_dotted_name():
    model = CourseNet()
    assert layer_name(model, model.features.relu5) == "features.relu5"
    assert layer_name(model, model.features) == "features"  # a container is itself, not a child
    assert layer_name(model, "features.conv2") == "features.conv2"
    assert get_layer(model, model.features) is model.features
    with pytest.raises(LayerNotFoundError, match=r"the ReLU given as a layer is not part of this model \(CourseNet\)"):
        layer_name(model, nn.ReLU())
    with pytest.raises(LayerNotFoundError, match="the model itself is not one of its layers"):
        get_layer(model, model)
    with pytest.raises(TypeError, match="named by a string such as 'features.conv4' or given as a module "
                                        "of the model, got None"):
        get_layer(model, None)


def test_capture_and_gradients_take_modules_and_report_names():
    model = tiny_linear_head()
    x = torch.randn(1, 1, 4, 4)
    with capture(model, [model[0], "2"]) as acts:
        model(x)
    assert sorted(acts) == ["0", "2"]
    with capture(model, model[1]) as acts:
        model(x)
    assert list(acts) == ["1"]
    _, acts, grads = activations_and_gradients(model, x, model[2], target=1)
    assert list(acts) == list(grads) == ["2"] and torch.allclose(grads["2"][0], model[3].weight[1])
    with pytest.raises(TypeError, match=r"a dotted name such as 'features.relu5', a module of the model, "
                                        r"or a list of these, got None"):
        activations_and_gradients(model, x, None, target=0)
    with pytest.raises(TypeError, match="got None"):
        with capture(model, None):
            pass
    assert all_hooks(model) == 0


def test_activations_and_gradients_refuses_inference_mode():
    model = tiny_linear_head()
    with torch.inference_mode():
        with pytest.raises(RuntimeError) as err:
            activations_and_gradients(model, torch.randn(1, 1, 4, 4), "2", target=0)
    assert str(err.value) == ("GradCAM cannot take gradients inside torch.inference_mode(): "
                              "run it outside that block (torch.no_grad() is fine)")
    assert all_hooks(model) == 0


# --- the guard ---------------------------------------------------------------------


def _vandalise(model: nn.Module):
    """Change everything the guard promises to restore."""
    model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    model.layer1[0].relu.inplace = False
    model.layer2.register_forward_hook(lambda *a: None)
    model.conv1.register_forward_pre_hook(lambda *a: None)
    model.fc.register_full_backward_hook(lambda *a: None)
    model.layer3[0].relu = nn.Identity()  # a replaced module


def test_guard_restores_everything_after_normal_exit(resnet18_random):
    model = resnet18_random
    model.layer1.register_forward_hook(lambda *a: None)  # the caller's own hook stays
    before = model_state(model)
    with model_guard(model):
        _vandalise(model)
        assert model.training and all_hooks(model) == 4
    assert_same_state(before, model_state(model))
    assert isinstance(model.layer3[0].relu, nn.ReLU) and model.layer1[0].relu.inplace


def test_guard_restores_everything_when_an_exception_is_raised(resnet18_random):
    model = resnet18_random
    before = model_state(model)
    with pytest.raises(ZeroDivisionError):
        with model_guard(model):
            _vandalise(model)
            1 / 0
    assert_same_state(before, model_state(model))


def test_guard_restores_a_module_that_two_parents_share():
    """The guard walks each module once, a shared one too, and restores it whichever parent it is reached by."""
    shared = nn.ReLU(inplace=True)
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 1, 1), shared), nn.Sequential(shared)).eval()
    before = model_state(model)
    with model_guard(model):
        model[1][0].inplace = False
        model[1][0].train()
        model[0][1].register_forward_hook(lambda *a: None)
    assert_same_state(before, model_state(model))
    assert shared.inplace and not shared.training and all_hooks(model) == 0


# --- capture ---------------------------------------------------------------------


def test_capture_keeps_outputs_and_removes_its_hooks():
    model = CourseNet().eval()
    x = torch.randn(2, 3, 64, 64)
    with capture(model, ["features.conv1", "features.relu5"]) as acts:
        model(x)
    assert acts["features.conv1"].shape == (2, 16, 64, 64)
    assert acts["features.relu5"].shape == (2, 64, 16, 16)
    assert all_hooks(model) == 0


def test_capture_is_safe_from_a_later_inplace_relu():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    model = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.tensor([[[[-1.0, 2.0]]]])
    for detach in (True, False):
        with capture(model, "0", detach=detach) as acts:
            out = model(x)
        assert acts["0"].flatten().tolist() == [-1.0, 2.0]  # not clipped by the ReLU
        assert out.flatten().tolist() == [0.0, 2.0]  # the network's answer is unchanged


def test_capture_start_graph_records_only_from_the_first_layer_up():
    """Under no_grad with start_graph, the kept output is a leaf that requires grad (nothing before it
    is recorded, no parameter frozen), the gradient to it is the hand-computed fc weights, and the
    mode is back to no_grad when the block ends. Without start_graph and with grad on, the conv is recorded."""
    model = tiny_linear_head()
    x = torch.randn(1, 1, 4, 4)
    with torch.no_grad():  # as in a notebook cell that switched gradients off
        with torch.no_grad(), capture(model, "2", detach=False, start_graph=True) as acts:
            logits = model(x)
        assert not torch.is_grad_enabled()
    assert acts["2"].is_leaf and acts["2"].requires_grad and logits.requires_grad
    (grad,) = torch.autograd.grad(logits[0, 1], acts["2"])
    assert torch.equal(grad[0], model[3].weight[1])
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    with capture(model, "2", detach=False) as acts:
        model(x)
    assert acts["2"].grad_fn is not None  # the ordinary way records the conv below the layer
    with pytest.raises(ValueError, match="detach=False"):
        with capture(model, "2", start_graph=True):
            pass
    assert all_hooks(model) == 0


def test_capture_checks_names_before_adding_any_hook():
    model = CourseNet()
    with pytest.raises(LayerNotFoundError):
        with capture(model, ["features.conv1", "nope"]):
            pass
    assert all_hooks(model) == 0


def test_capture_can_stop_the_forward_pass_once_every_layer_has_run():
    """stop_early: nothing after the last captured layer runs, the block ends at the model call
    and the code after the block goes on; without it the same pass runs to the end."""
    model = tiny_linear_head()
    x = torch.randn(2, 1, 4, 4)
    ran, after_call = [], []
    model[2].register_forward_pre_hook(lambda *a: ran.append("flatten"))
    for detach in (True, False):
        with capture(model, [model[1], "0"], detach=detach, stop_early=True) as acts:
            model(x)
            after_call.append(detach)  # never reached
        assert sorted(acts) == ["0", "1"] and ran == [] and after_call == []
        assert all_hooks(model) == 1  # only the test's own pre-hook
        assert torch.equal(acts["1"], acts["0"].clamp(min=0))
    with capture(model, "1", stop_early=False) as acts:
        logits = model(x)
    assert logits.shape == (2, 3) and ran == ["flatten"]


def test_a_stopping_capture_inside_another_ends_only_its_own_block():
    """The inner block's stop is its own: the outer block goes on; the outer block's stop
    is not swallowed by an inner capture; any other error goes through."""
    model = tiny_linear_head()
    x = torch.randn(1, 1, 4, 4)
    with capture(model, "3") as outer:
        with capture(model, "0", stop_early=True) as inner:
            model(x)
        assert "0" in inner and "3" not in outer
        model(x)
    assert "3" in outer
    reached = []
    with capture(model, "0", stop_early=True):
        with capture(model, "3"):
            model(x)
        reached.append(True)  # the outer stop ends the outer block, not just the inner one
    assert reached == [] and all_hooks(model) == 0
    with pytest.raises(RuntimeError, match="half way"):
        with capture(model, "3", stop_early=True):
            raise RuntimeError("an error half way")


# --- targets ---------------------------------------------------------------------


def test_resolve_targets_every_form():
    logits = torch.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    assert resolve_targets(logits, 2).tolist() == [2.0, 3.0]
    assert resolve_targets(logits, [0, 1]).tolist() == [1.0, 0.0]
    assert resolve_targets(logits, None).tolist() == [5.0, 7.0]
    assert resolve_targets(logits, lambda out: out[:, 0] - out[:, 2]).tolist() == [-1.0, 4.0]


@pytest.mark.parametrize(
    "target, error, message",
    [
        (3, ValueError, r"class index 3 is out of range: this model has classes 0..2"),
        (-1, ValueError, r"out of range"),
        ([0], ValueError, r"1 targets given for a batch of 2 images"),
        (1.0, TypeError, r"a target is a class index"),
        ([0, 1.5], TypeError, r"a class index is an int"),
        (lambda out: out.sum(), ValueError, r"one score per image"),
    ],
)
def test_resolve_targets_errors(target, error, message):
    with pytest.raises(error, match=message):
        resolve_targets(torch.zeros(2, 3), target)


def test_class_range_message_states_the_real_range():
    with pytest.raises(ValueError) as err:
        class_list(-1, 1, 6)
    assert str(err.value) == ("class index -1 is out of range: this model has classes 0..5 "
                              "(a negative index does not count from the end)")
    with pytest.raises(ValueError) as err:
        class_list([0, 6], 2, 6)
    assert str(err.value) == "class index 6 is out of range: this model has classes 0..5"
    # before the number of classes is known, only the form is checked (the range once the logits exist)
    assert class_list([-1, 99], 2, None) == [-1, 99]
    with pytest.raises(TypeError, match="a class index is an int"):
        class_list([0, 1.5], 2, None)


# --- gradients ---------------------------------------------------------------------


def test_gradient_to_a_layer_equals_the_hand_computed_weights():
    model = tiny_linear_head()
    x = torch.randn(2, 1, 4, 4)
    logits, acts, grads = activations_and_gradients(model, x, "2", target=[1, 2])
    assert torch.allclose(grads["2"][0], model[3].weight[1])
    assert torch.allclose(grads["2"][1], model[3].weight[2])
    assert torch.allclose(logits, model(x))
    assert acts["2"].shape == (2, 8)


def test_gradient_matches_finite_differences():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 2, 3), nn.Flatten(),
                          nn.Linear(2 * 2 * 2, 3)).double().eval()
    x = torch.randn(1, 1, 4, 4, dtype=torch.double)
    _, acts, grads = activations_and_gradients(model, x, "1", target=0)
    head = model[2:]
    a, eps = acts["1"], 1e-6
    numeric = torch.zeros_like(a)
    for i in range(a.numel()):
        d = torch.zeros_like(a).flatten()
        d[i] = eps
        d = d.view_as(a)
        numeric.view(-1)[i] = (head(a + d)[0, 0] - head(a - d)[0, 0]) / (2 * eps)
    assert torch.allclose(grads["1"], numeric, atol=1e-8)


def test_gradients_work_under_no_grad_on_a_frozen_model_and_touch_nothing():
    model = tiny_linear_head()
    for p in model.parameters():
        p.requires_grad_(False)
    before = model_state(model)
    with torch.no_grad():
        _, _, grads = activations_and_gradients(model, torch.randn(1, 1, 4, 4), "2", target=0)
    assert torch.allclose(grads["2"][0], model[3].weight[0])
    assert_same_state(before, model_state(model))


def test_parameters_grad_stays_untouched():
    model = tiny_linear_head()
    activations_and_gradients(model, torch.randn(1, 1, 4, 4), "0", target=1)
    assert all(p.grad is None for p in model.parameters())


def test_layer_off_the_path_is_a_clear_error():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(2, 3), nn.Linear(2, 3)

        def forward(self, x):  # x: (N, 1, 1, 2), one "image" of two pixels
            self.unused(x)  # runs, but the output is thrown away
            return self.used(x).flatten(1)

    model = TwoHeads()
    with pytest.raises(RuntimeError, match="does not depend on layer 'unused'"):
        activations_and_gradients(model, torch.randn(1, 1, 1, 2), "unused", target=0)
    assert all_hooks(model) == 0


def test_layer_that_never_runs_is_a_clear_error():
    class Spare(nn.Module):
        def __init__(self):
            super().__init__()
            self.head, self.spare = nn.Linear(2, 3), nn.Linear(2, 2)

        def forward(self, x):  # x: (N, 1, 1, 2)
            return self.head(x).flatten(1)

    model = Spare()
    with pytest.raises(RuntimeError, match=r"did not run during the forward pass"):
        activations_and_gradients(model, torch.randn(1, 1, 1, 2), "spare", target=0)


def test_resnet_with_inplace_relus_is_left_exactly_as_it_was(resnet18_random):
    model = resnet18_random
    before = model_state(model)
    x = torch.randn(2, 3, 64, 64)
    logits, acts, grads = activations_and_gradients(model, x, ["layer4", "layer1.0.bn1"], target=None)
    # bn1 is followed by an in-place ReLU: the kept activation must still hold negatives
    assert (acts["layer1.0.bn1"] < 0).any()
    assert grads["layer4"].shape == acts["layer4"].shape == (2, 512, 2, 2)
    assert torch.isfinite(grads["layer1.0.bn1"]).all()
    assert_same_state(before, model_state(model))


def test_training_model_runs_in_eval_mode_and_comes_back_training(resnet18_random):
    model = resnet18_random.train()
    before = model_state(model)
    x = torch.randn(2, 3, 64, 64)
    logits, _, _ = activations_and_gradients(model, x, "layer4", target=0)
    assert model.training
    assert_same_state(before, model_state(model))  # batch-norm running stats untouched
    with torch.no_grad():
        assert torch.allclose(logits, model.eval()(x), atol=1e-5)


def test_error_half_way_leaves_no_hook_and_restores_the_model(resnet18_random):
    model = resnet18_random
    model.train()  # a caller's model in training mode stays in training mode
    before = model_state(model)

    def exploding_target(out):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        activations_and_gradients(model, torch.randn(1, 3, 64, 64), "layer3", target=exploding_target)
    assert_same_state(before, model_state(model))


def test_repeated_calls_do_not_accumulate_hooks():
    model = CourseNet().eval()
    x = torch.randn(1, 3, 64, 64)
    for _ in range(50):
        activations_and_gradients(model, x, "features.relu5", target=0)
    assert all_hooks(model) == 0


def test_numpy_class_indices_are_targets_too():
    """Labels often come from NumPy arrays (make_scenes): np.int64 and arrays are accepted."""
    import numpy as np

    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    assert resolve_targets(logits, np.int64(1)).tolist() == [1.0, 4.0]
    assert resolve_targets(logits, np.array([2, 0])).tolist() == [2.0, 3.0]
    assert resolve_targets(logits, [np.int64(0), 1]).tolist() == [0.0, 4.0]
    with pytest.raises(ValueError, match="out of range"):
        resolve_targets(logits, np.array([3, 0]))


# --- mixed training flags and errors inside capture (each test fails on a known mutation) -------


def mixed_mode_model(root_training: bool):
    """conv -> batch norm -> dropout -> flatten -> linear, with the submodules' flags not all
    the same as the root's: what a caller with frozen batch norm (or MC dropout) hands us."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(2 * 2 * 2, 3))
    model.train(root_training)
    model[1].eval()    # batch norm frozen
    model[2].train()   # dropout on
    model[4].train(not root_training)
    return model


@pytest.mark.parametrize("root_training", [True, False])
def test_guard_restores_each_submodules_training_flag_not_just_the_roots(root_training):
    """A model in mixed modes: model.eval() inside the guard (as every method does) must come
    back with every module's own flag, not the root's flag spread over all of them."""
    model = mixed_mode_model(root_training)
    flags = [m.training for m in model.modules()]
    assert len(set(flags)) == 2  # really mixed
    with model_guard(model):
        model.eval()
    assert [m.training for m in model.modules()] == flags
    with pytest.raises(ZeroDivisionError), model_guard(model):
        model.train()
        1 / 0
    assert [m.training for m in model.modules()] == flags
    before = model_state(model)
    activations_and_gradients(model, torch.randn(2, 1, 4, 4), "3", target=0)
    assert [m.training for m in model.modules()] == flags
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize("root_training", [True, False])
def test_eval_mode_sets_every_module_to_eval_and_hands_back_each_flag_after_an_error(root_training):
    """CAM's lighter guard: every module in eval mode inside (also when the root already is),
    each module's own flag back after the block, whether it ends normally or by an error."""
    model = mixed_mode_model(root_training)
    flags = [m.training for m in model.modules()]
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == flags
    with pytest.raises(ZeroDivisionError), eval_mode(model):
        1 / 0
    assert [m.training for m in model.modules()] == flags


def test_cam_on_a_mixed_mode_model_failing_half_way_leaves_it_unchanged():
    """CAM guards with eval_mode only: a forward pass that raises after the captured layer ran
    must still leave no hook and every flag as it was (and a normal call the same)."""
    from course_utils.cam import cam

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 3))
    model[2].train()
    model[0].train()
    before, flags = model_state(model), [m.training for m in model.modules()]
    x = torch.randn(1, 1, 5, 6)
    assert cam(model, x, 1, layer="1", fc="5").maps.shape == (1, 3, 4)
    assert [m.training for m in model.modules()] == flags

    def explode(*args):
        raise RuntimeError("half way")

    model[3].register_forward_hook(explode)
    with pytest.raises(RuntimeError, match="half way"):
        cam(model, x, 1, layer="1", fc="5")
    assert [m.training for m in model.modules()] == flags and all_hooks(model) == 1  # only the caller's hook
    model[3]._forward_hooks.clear()
    assert_same_state(before, model_state(model))


def test_an_error_inside_capture_leaves_no_hook():
    """The hooks go also when the block raises (outside any guard, capture alone)."""
    model = tiny_linear_head()
    with pytest.raises(RuntimeError, match="half way"):
        with capture(model, ["0", model[1], "3"]) as acts:
            model(torch.randn(1, 1, 4, 4))
            assert sorted(acts) == ["0", "1", "3"] and all_hooks(model) == 3
            raise RuntimeError("an error half way")
    assert all_hooks(model) == 0
    with pytest.raises(KeyboardInterrupt):  # not only Exception subclasses
        with capture(model, "2", detach=False):
            raise KeyboardInterrupt
    assert all_hooks(model) == 0


# --- pinned by mutation testing ---


def test_a_wrong_layer_argument_is_described_by_its_type_and_value():
    model = CourseNet()
    with pytest.raises(TypeError, match=r"of the model, got int 3$"):
        get_layer(model, 3)
    with pytest.raises(TypeError, match=r"of the model, got None$"):
        get_layer(model, None)
    with pytest.raises(TypeError) as err:
        layer_names(model, {"features.conv1"})  # a set is not a list
    assert str(err.value).endswith("got set {'features.conv1'}")
    with pytest.raises(TypeError) as err:
        layer_names(model, dict.fromkeys(range(30)))  # a long repr is cut to 60 characters
    assert str(err.value).endswith("got dict {0: None, 1: None, 2: None, 3: None, 4: None, 5: None, 6:...")


def test_only_a_negative_class_index_gets_the_negative_index_hint():
    # index 0 is out of range only when there are no classes at all: nothing negative about it
    with pytest.raises(ValueError, match="class index 0 is out of range") as err:
        resolve_targets(torch.zeros(1, 0), 0)
    assert "negative" not in str(err.value)


@pytest.mark.parametrize("rule", list(RELU_RULES))
def test_out_of_place_relu_spellings_leave_their_input_alone_under_every_rule(rule):
    """Only relu_ / inplace=True may overwrite the input; x.relu() is as out of place as F.relu."""
    for spelling in (F.relu, torch.relu, torch.Tensor.relu, lambda t: t.relu()):
        x = torch.tensor([-1.0, 2.0])
        with relu_rule(rule) as mode:
            y = spelling(x)
        assert mode.calls == 1
        assert x.tolist() == [-1.0, 2.0] and y.tolist() == [0.0, 2.0]


def test_target_classes_is_the_class_behind_each_score():
    """The same reading of a target as resolve_targets: the score is the logit of that class."""
    from course_utils.targets import target_classes

    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, -1.0, 0.5]])
    assert target_classes(logits, None).tolist() == [1, 0]
    assert target_classes(logits, 2).tolist() == [2, 2]
    assert target_classes(logits, [2, 1]).tolist() == [2, 1]
    assert target_classes(logits, lambda z: z[:, 0]).tolist() == [-1, -1]
    for target in (None, 2, [2, 1]):
        picked = logits.gather(1, target_classes(logits, target).view(-1, 1))[:, 0]
        assert torch.equal(resolve_targets(logits, target), picked)
    with pytest.raises(ValueError, match="class index 3 is out of range"):
        target_classes(logits, 3)
