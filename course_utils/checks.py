"""Exercise checks: say at once what is right and what is off.

Each check prints one line: ``✓`` when the answer is right, ``✗`` with what is
off, ``…`` while it is still ``None``. None of them raise on a wrong or missing
answer, so a notebook with unfinished exercises still runs from top to bottom.
:func:`verdict` returns the same judgement without printing (for tests).

Where an exercise asks for a function or a class, its check calls it on inputs the
lesson never shows (a backward rule on a tiny case worked out by hand), refuses the
library call that would answer the exercise, and names the plausible mistake it
recognises; where it asks for a number, the check computes the expected value here,
so that it is not on the student's screen. Blocks below, one per lesson.
"""

from __future__ import annotations

import contextlib
import operator

import numpy as np
import torch

__all__ = ["verdict", "compare",
           "check_deconvnet", "check_smoothgrad", "check_abs_display",  # lesson 04
           "check_second_cam", "check_logits_from_cams", "check_pooled_cam",  # lesson 05
           "check_grad_cam", "check_counterfactual", "check_peak_where",  # lesson 06
           "check_guided_grad_cam", "check_rule_grad_cam", "check_noise_alpha",  # lesson 07
           "check_count_op", "check_residual_adds",  # lesson 08
           "check_pointing_game", "check_randomized_spearman", "check_energy_share",  # lesson 09
           "check_preprocess_function", "check_softmax_function",  # lesson 00
           "check_hook_function", "check_selective_channel_function", "check_minmax_function",  # lesson 01
           "check_filter_norms_function", "check_conv_params_function", "check_opponency_function",
           "check_most_opponent_filter",  # lesson 02
           "check_neuron_ascent_function", "check_hf_energy_function", "check_hf_change",
           "check_regularized_ascent_function",  # lesson 03
           "check_swapped_rates", "check_true_class_energy", "check_unchanged_without_shape",  # lesson 10
           "check_grad_cam_pp", "check_integrated_gradients", "check_metric_agreement"]  # lesson 11


def verdict(name: str, yours, expected, atol: float = 1e-5) -> tuple[bool, str]:
    """``(passed, message)`` for your answer against the expected one."""
    if yours is None:
        return False, f"… {name}: not answered yet (replace the None)"
    try:
        a, b = (v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float64)
                for v in (yours, expected))
    except (TypeError, ValueError) as exc:
        return False, f"✗ {name}: cannot read your answer as numbers ({exc})"
    if a.shape != b.shape:
        return False, f"✗ {name}: shape {a.shape} but expected {b.shape}"
    if not np.isfinite(a).all():
        return False, f"✗ {name}: your answer contains NaN or infinity"
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    if diff == 0.0:
        return True, f"✓ {name}: exact"
    if diff <= atol:
        # Not the difference itself: its last digits depend on the CPU, and the notebooks'
        # stored outputs must read the same on any machine.
        return True, f"✓ {name}: close (max difference within the allowed {atol:g})"
    return False, f"✗ {name}: max difference {diff:.3g} (allowed {atol:g})"


def compare(name: str, yours, expected, atol: float = 1e-5) -> None:
    """Print whether your answer matches: exact, close (and how close), or how far off."""
    print(verdict(name, yours, expected, atol)[1])


# --- lesson 04 ---
# Private helpers shared with the lesson 05 and 06 blocks below: a student's code that raises
# becomes one ✗ line, and a check can hide a library function that would solve the exercise.


class _Raised(Exception):
    """The student's code raised (or called a function the exercise builds by hand)."""


def _run(fn, *args):
    """``fn(*args)``; any exception becomes :class:`_Raised` with the line the check prints."""
    try:
        return fn(*args)
    except _Raised:
        raise
    except Exception as exc:
        raise _Raised(f"your code raised {type(exc).__name__}: {exc}") from None


def _report(name: str, judge) -> None:
    """Print ``judge()``'s ``(passed, message)`` as one line; ``passed=None`` means not answered."""
    try:
        passed, message = judge()
    except _Raised as exc:
        passed, message = False, str(exc)
    except Exception as exc:  # an answer of a kind the check cannot read: say so, never raise
        passed, message = False, f"cannot check your answer ({type(exc).__name__}: {exc})"
    mark = "…" if passed is None else "✓" if passed else "✗"
    print(f"{mark} {name}: {message}")


def _near(yours, expected, atol: float = 1e-5) -> bool:
    """Same shape and every value within ``atol`` (a tensor, array or list)."""
    a, b = (torch.as_tensor(np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64))
            for v in (yours, expected))
    return a.shape == b.shape and bool(torch.isfinite(a).all()) and bool(((a - b).abs() <= atol).all())


@contextlib.contextmanager
def _by_hand(fn, *library):
    """While the block runs, each ``(module, name)`` in ``library`` refuses to run, under its module's
    name and under any name the student's function ``fn`` sees it by: the exercise builds it by hand."""
    scope = getattr(fn, "__globals__", None) or getattr(getattr(fn, "__call__", None), "__globals__", {})
    saved = []
    for module, attr in library:
        real = getattr(module, attr)

        def refuse(*args, _what=f"{module.__name__.rsplit('.', 1)[-1]}.{attr}", **kwargs):
            raise _Raised(f"your code calls {_what}, which the exercise asks you to build by hand")

        names = [k for k, v in scope.items() if v is real]
        saved.append((module, attr, real, names))
        setattr(module, attr, refuse)
        scope.update(dict.fromkeys(names, refuse))
    try:
        yield
    finally:
        for module, attr, real, names in saved:
            setattr(module, attr, real)
            scope.update(dict.fromkeys(names, real))


def _deconv_relu_verdict(DeconvReLU) -> tuple[bool, str]:
    """The student's Function on a case worked out by hand: forward max(x, 0), backward g·[g > 0]."""
    if not hasattr(DeconvReLU, "apply"):
        return False, "DeconvReLU should be a torch.autograd.Function subclass (used as DeconvReLU.apply(x, rule))"
    x = torch.tensor([-2.0, -0.5, 1.0, 3.0, 0.5, -1.0], requires_grad=True)
    g = torch.tensor([1.5, -2.0, -1.0, 0.5, 2.0, -3.0])
    out = _run(DeconvReLU.apply, x, "deconvnet")
    if not _near(out, [0.0, 0.0, 1.0, 3.0, 0.5, 0.0]):
        return False, "forward is not a ReLU: it should give max(x, 0)"
    (back,) = _run(torch.autograd.grad, out, x, g)
    if back is None:
        return False, "forward is right, but backward returns None for x"
    for wrong, what in [([0.0, 0.0, -1.0, 0.5, 2.0, 0.0], "gates by the forward input (that is plain backprop)"),
                        ([0.0, 0.0, 0.0, 0.5, 2.0, 0.0], "gates by the forward input and the sign (guided backprop)"),
                        ([1.5, -2.0, -1.0, 0.5, 2.0, -3.0], "passes every gradient, negative ones too")]:
        if _near(back, wrong):
            return False, f"forward is right, but backward {what}; the deconvnet gates by the sign of g only"
    if not _near(back, [1.5, 0.0, 0.0, 0.5, 2.0, 0.0]):
        if not _near(back[g > 0], g[g > 0]):
            return False, "forward is right, but backward changes or blocks positive gradients: they pass unchanged"
        return False, "forward is right, but backward lets something through where g < 0: it should pass 0 there"
    return True, "forward and backward are right"


def check_deconvnet(DeconvReLU, my_deconvnet, model, x, target) -> None:
    """Lesson 04, exercise 1: the student's ``DeconvReLU`` on a case worked out by hand (forward,
    then backward), then ``my_deconvnet`` against the course's deconvnet of ``x`` for ``target``."""
    from .saliency import deconvnet

    def judge():
        if DeconvReLU is None:
            return None, "not answered yet (replace the None of DeconvReLU)"
        ok, message = _deconv_relu_verdict(DeconvReLU)
        if not ok:
            return False, message
        if my_deconvnet is None:
            return None, message + "; now compute my_deconvnet (replace its None)"
        ok, message = verdict("map", my_deconvnet, deconvnet(model, x, target))
        return ok, f"DeconvReLU is right, and your deconvnet {'matches' if ok else 'does not match'} course_utils" + (
            "" if ok else f" ({message.split(': ', 1)[1]})")

    _report("deconvnet", judge)


def _smoothgrad_like(model, x, targets, noise, samples, seed, sigma=None, draw=None):
    """SmoothGrad by its recipe, with one step done another way (for naming a student's mistake)."""
    from .saliency import vanilla_gradient

    n = len(x)
    gen = torch.Generator().manual_seed(seed)
    if sigma is None:
        sigma = noise * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    z = torch.randn(draw or (n, samples, *x.shape[1:]), generator=gen)
    z = z if draw is None else z.transpose(0, 1)
    copies = (x.unsqueeze(1) + torch.as_tensor(sigma).reshape(-1, 1, 1, 1, 1) * z).flatten(0, 1)
    grads = vanilla_gradient(model, copies, [t for t in targets for _ in range(samples)])
    return grads.view(n, samples, *x.shape[1:]).mean(dim=1)


def check_smoothgrad(smoothgrad_by_hand, model) -> None:
    """Lesson 04, exercise 2: ``smoothgrad_by_hand(model, x, targets, noise, samples, seed)`` on images,
    classes and settings the lesson does not show, against ``saliency.smoothgrad``."""
    from . import saliency

    gen = torch.Generator().manual_seed(404)
    x = torch.randn(2, 3, 32, 32, generator=gen) * torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)  # two ranges
    args = (x, [4, 1], 0.2, 3, 7)

    def judge():
        with _by_hand(smoothgrad_by_hand, (saliency, "smoothgrad")):
            yours = _run(smoothgrad_by_hand, model, *args)
        if yours is None:
            return None, "not answered yet (your function returns None)"
        expected = saliency.smoothgrad(model, *args[:2], noise=0.2, samples=3, seed=7, progress=False)
        if _near(yours, expected):
            return True, "right on two images, classes and settings of the check's own"
        for variant, what in [(dict(sigma=0.2), "σ should be noise × (max − min) of each image, not noise alone"),
                              (dict(sigma=0.2 * float(x.max() - x.min())),
                               "σ should come from each image's own range, not the whole batch's"),
                              (dict(draw=(3, 2, 3, 32, 32)), "draw the noise in the shape (N, samples, C, H, W)")]:
            if _near(yours, _smoothgrad_like(model, *args, **variant)):
                return False, what
        if _near(yours, 3 * expected):
            return False, "you summed the copies' gradients: average them"
        return False, verdict("", yours, expected)[1].split(": ", 1)[1] + " on the check's own images"

    _report("SmoothGrad", judge)


def check_abs_display(abs_display) -> None:
    """Lesson 04, exercise 3: ``abs_display(g)`` for a (3, H, W) gradient, on a case worked out by hand:
    pixel i has largest |g| = i (i = 0..99), so the 99th percentile is 98.01 and the map min(i / 98.01, 1)."""
    from . import saliency

    i = torch.arange(100.0)
    g = torch.zeros(3, 100)
    g[i.long() % 3, i.long()] = torch.where(i.long() % 2 == 1, -i, i)  # |g| = i, negative for odd i
    g[(i.long() + 1) % 3, i.long()] = 0.5 * (i % 7)  # smaller, and not proportional to i
    g = g.view(3, 10, 10)
    expected = (i / 98.01).clamp(max=1).view(10, 10)

    def judge():
        with _by_hand(abs_display, (saliency, "saliency_map")):
            yours = _run(abs_display, g.clone())
        if yours is None:
            return None, "not answered yet (your function returns None)"
        if _near(yours, expected):
            return True, "right on a gradient of the check's own"
        m = torch.as_tensor(yours).detach().cpu().double()
        if m.shape != expected.shape:
            return False, f"shape {tuple(m.shape)} for a (3, 10, 10) gradient: expected (10, 10), one value per pixel"
        if m.max() > 1 + 1e-6:
            return False, "values above 1: clip to [0, 1] after dividing"
        if _near(m, i.view(10, 10) / 99):
            return False, "you divided by the largest value: divide by the 99th percentile"
        for wrong, what in [(g.amax(dim=0), "take |g| before the largest over colours: a negative gradient counts"),
                            (g.abs().sum(dim=0), "take the largest |g| over the colours, not their sum")]:
            if _near(m, (wrong / torch.quantile(wrong.flatten(), 0.99)).clamp(0, 1)):
                return False, what
        return False, "not the largest |g| over colours divided by its 99th percentile"

    _report("abs display", judge)


# --- lesson 05 ---


def _cams(model, x):
    """(logits (C,), every class's CAM (C, h, w), fc's bias (C,)) for the one image ``x``."""
    from .cam import cam_all_classes

    logits, maps = cam_all_classes(model, x)
    return logits[0], maps[0], model.fc.bias.detach().cpu()


def _cam_layer(model, x):
    """The maps of the model's CAM layer for ``x`` (the record names it), detached, on the CPU."""
    from .hooks import capture, model_guard
    from .models import record_for

    layer = record_for(model).cam_layer
    with model_guard(model, eval=True), torch.no_grad(), capture(model, layer) as acts:
        model(x)
    return acts[layer].cpu()


def check_second_cam(my_second, my_cam2, model, x) -> None:
    """Lesson 05, exercise 1: the second most likely class of the one image ``x``, and its raw CAM."""

    def judge():
        if my_second is None:
            return None, "not answered yet (replace the None of my_second)"
        logits, maps, b = _cams(model, x)
        order = logits.argsort(descending=True).tolist()
        try:
            yours = operator.index(my_second)  # an int, a NumPy int or a one-number integer tensor; not 2.0
        except TypeError:
            return False, f"my_second should be a class index (an int), got {type(my_second).__name__}"
        if yours != order[1]:
            return False, ("that is the most likely class; the second is the next one" if yours == order[0] else
                           "that is the second *least* likely class (argsort sorts ascending)"
                           if yours == order[-2] else "that is not the second most likely class")
        if my_cam2 is None:
            return None, "the class is right; now build its CAM (replace the None of my_cam2)"
        if _near(my_cam2, maps[order[1]], 1e-4):
            return True, "the class is right, and so is its CAM"
        shape = tuple(torch.as_tensor(my_cam2).shape)
        for wrong, what in [(maps[order[0]], "your map is the CAM of the most likely class"),
                            (maps[order[1]] + b[order[1]], "you added the bias: CAM is Σ_k w_k A_k alone")]:
            if _near(my_cam2, wrong, 1e-4):
                return False, f"the class is right, but {what}"
        if shape != tuple(maps.shape[1:]):
            return False, f"the class is right, but your map has shape {shape}: the raw CAM is {tuple(maps.shape[1:])}"
        return False, "the class is right, but your map is not its CAM (one row of fc's weights times relu5's maps)"

    _report("second class and its CAM", judge)


def check_logits_from_cams(my_logits, model, x) -> None:
    """Lesson 05, exercise 2: every class's logit as the mean of its CAM plus its bias."""

    def judge():
        if my_logits is None:
            return None, "not answered yet (replace the None)"
        logits, maps, b = _cams(model, x)
        if _near(my_logits, logits[None], 1e-4):
            return True, "the means of the six CAMs plus the biases are the model's logits"
        flat = torch.as_tensor(my_logits).detach().cpu().double().flatten()
        if flat.shape == logits.shape and _near(flat, logits, 1e-4):
            return False, f"the right numbers in shape {tuple(torch.as_tensor(my_logits).shape)}: make it (1, 6)"
        for wrong, what in [(logits - b, "you left out the biases b"),
                            (maps.sum(dim=(1, 2)) + b, "you summed each map: the logit is its mean"),
                            (maps.sum(dim=(1, 2)), "you summed each map (the logit is its mean) and left out b")]:
            if flat.shape == wrong.shape and _near(flat, wrong, 1e-3):
                return False, what
        return False, "these are not the logits: the mean of each class's CAM, plus its bias"

    _report("logits from the six CAMs", judge)


def check_pooled_cam(my_cam4, model, x, target: int) -> None:
    """Lesson 05, exercise 3: the CAM of ``target`` from relu5's features average-pooled to 4×4."""

    def judge():
        if my_cam4 is None:
            return None, "not answered yet (replace the None)"
        logits, maps, b = _cams(model, x)
        pooled = torch.nn.functional.avg_pool2d(maps[:, None], 4)[:, 0]  # (C, 4, 4): CAM is linear
        if _near(my_cam4, pooled[target], 1e-4):
            return True, "the CAM of the pooled features is the pooled CAM"
        shape = tuple(torch.as_tensor(my_cam4).shape)
        if shape != (4, 4):
            return False, f"shape {shape}: pool the 16×16 features to 4×4 (F.avg_pool2d(A, 4)) first"
        others = [c for c in range(len(maps)) if c != target and _near(my_cam4, pooled[c], 1e-4)]
        if others:
            return False, f"this is the pooled CAM of class {others[0]}, not of the star ({target})"
        w = model.fc.weight.detach().cpu()[target]
        if _near(my_cam4, torch.einsum("k,khw->hw", w, torch.nn.functional.max_pool2d(_cam_layer(model, x), 4)[0]),
                 1e-4):
            return False, "you max-pooled the features: average-pool them (F.avg_pool2d)"
        if _near(my_cam4, pooled[target] + b[target], 1e-4):
            return False, "you added the bias: CAM is Σ_k w_k A_k alone"
        return False, "not the star's row of W applied to the average-pooled features"

    _report("CAM of pooled features", judge)


# --- lesson 06 ---


def check_grad_cam(grad_cam_by_hand, model) -> None:
    """Lesson 06, exercise 1: ``grad_cam_by_hand(model, x, target, layer)`` on images, a class and a layer
    the lesson does not use, against ``cam.grad_cam``; also that no hook stays on the model and no
    parameter's ``.grad`` is written (``torch.autograd.grad``, not ``.backward()``)."""
    from . import cam
    from .hooks import hook_counts, model_guard

    gen = torch.Generator().manual_seed(606)
    x, target, layer = torch.randn(2, 3, 48, 48, generator=gen), 2, "features.relu3"

    def judge():
        fresh = [p for p in model.parameters() if p.grad is None]
        with model_guard(model), _by_hand(grad_cam_by_hand, (cam, "grad_cam"), (cam, "GradCAM")):
            try:
                yours = _run(grad_cam_by_hand, model, x.clone(), target, layer)
                left = sum(hook_counts(model).values())  # the guard removes them on the way out
                written = any(p.grad is not None for p in fresh)
            finally:
                for p in fresh:
                    p.grad = None
        if yours is None:
            return None, "not answered yet (your function returns None)"
        if left:
            return False, f"{left} hook(s) left on the model: remove them in a finally"
        if written:
            return False, "your code wrote the parameters' .grad: take the gradient with torch.autograd.grad"
        expected = cam.grad_cam(model, x, target, layer=layer)
        if _near(yours, expected.maps):
            return True, "right on images, a class and a layer of the check's own; no hook left"
        before = cam.grad_cam(model, x, target, layer=layer, relu=False).maps
        other = cam.grad_cam(model, x, target, layer="features.relu4").maps
        h, w = before.shape[-2:]
        for wrong, what in [(before, "you left out the ReLU of eq. 2"),
                            (before.clamp(min=0) * h * w, "α is the mean of the gradient over positions, not its sum"),
                            ((-before).clamp(min=0), "the sign is flipped (that is the counterfactual map)"),
                            (other, "you used features.relu4 whatever the layer given: use the `layer` argument")]:
            if _near(yours, wrong, 1e-4):
                return False, what
        return False, verdict("", yours, expected.maps)[1].split(": ", 1)[1] + " on the check's own images"

    _report("Grad-CAM by hand", judge)


def check_counterfactual(my_counterfactual, model, x, target: int) -> None:
    """Lesson 06, exercise 2: the counterfactual Grad-CAM of ``target`` at the model's last block."""
    from .cam import grad_cam

    def judge():
        if my_counterfactual is None:
            return None, "not answered yet (replace the None)"
        before = grad_cam(model, x, target, relu=False).maps  # Σ_k α_k A_k
        if _near(my_counterfactual, (-before).clamp(min=0)):
            return True, "the negated gradient's map: what argues against the class"
        for wrong, what in [(before.clamp(min=0), "this is the ordinary Grad-CAM: negate the gradient"),
                            (-before.clamp(min=0), "you negated after the ReLU: negate the gradient, then weigh "
                                                   "and add, then the ReLU"),
                            (-before, "you left out the ReLU")]:
            if _near(my_counterfactual, wrong):
                return False, what
        return False, "not ReLU(Σ_k α_k A_k) with α from the negated gradient"

    _report("counterfactual Grad-CAM", judge)


def check_peak_where(my_where, model, x, scene) -> None:
    """Lesson 06, exercise 3: for each object k of the two-object ``scene`` (``x``: its batch of one), where
    the peak of its class's Grad-CAM (last block, upsampled to the image) falls: 0 on object k, 1 on the
    other object, 2 on the background."""
    from .cam import grad_cam

    def judge():
        if my_where is None:
            return None, "not answered yet (replace the None)"
        heat = grad_cam(model, x.repeat(2, 1, 1, 1), [int(t) for t in scene.labels]).upsampled(x.shape[-2:])
        expected = []
        for k in range(2):
            row, col = divmod(int(heat[k].argmax()), heat.shape[-1])
            on = [bool(scene.masks[j, row, col]) for j in range(2)]
            expected.append(0 if on[k] else 1 if on[1 - k] else 2)
        try:
            yours = [int(v) for v in my_where]
        except (TypeError, ValueError):
            return False, "my_where should be a list of two ints (0, 1 or 2)"
        if yours == expected:
            return True, "both peaks placed right"
        if len(yours) != 2:
            return False, f"{len(yours)} answers: give one per object, two in all"
        wrong = [k for k in range(2) if yours[k] != expected[k]]
        return False, " and ".join(["the first", "the second"][k] for k in wrong) + " answer is off"

    _report("where each class's peak falls", judge)


# --- lessons 07-09: helpers shared by their checks ---


def _code_names(fn) -> set:
    """Every global and attribute name the function's code refers to, nested functions included."""
    names, stack = set(), [getattr(fn, "__code__", None)]
    while stack:
        code = stack.pop()
        if code is not None:
            names.update(code.co_names)
            stack.extend(c for c in code.co_consts if hasattr(c, "co_names"))
    return names


def _student_call(name: str, fn, forbidden, *args):
    """``(result, None)``, or ``(None, the line to print)`` when ``fn`` is missing, calls the library
    function it should replace (one of ``forbidden``), raises, or returns None."""
    if fn is None:
        return None, f"… {name}: not answered yet (replace the None)"
    used = sorted(_code_names(fn) & set(forbidden))
    if used:
        return None, f"✗ {name}: your function calls {used[0]}, the library's answer: build it from the parts"
    try:
        result = fn(*args)
    except Exception as exc:  # the student's code: any error is reported, never raised
        return None, f"✗ {name}: your code raised {type(exc).__name__}: {exc}"
    if result is None:
        return None, f"… {name}: not answered yet (your function returns None)"
    return result, None


def _first_match(yours, candidates: dict, atol: float = 1e-5):
    """The label of the first candidate answer that ``yours`` matches, or None."""
    return next((label for label, value in candidates.items() if verdict("", yours, value, atol)[0]), None)


def _scene_input(loaded, seed: int = 7, index: int = 4):
    """A two-object scene from a seed no lesson shows: (x (1, 3, H, W), its two classes)."""
    from .scenes import make_scene

    scene = make_scene(seed=seed, index=index, n_objects=2)
    return loaded.batch([scene.image]), [int(c) for c in scene.labels]


# --- lesson 07 ---


def check_guided_grad_cam(fn, loaded_model) -> None:
    """``fn(model, x, target, layer)``, Guided Grad-CAM by hand, on a scene, class and layer not seen in lesson 07."""
    from . import cam, saliency

    name, layer = "Guided Grad-CAM", "features.relu3"
    x, (_, target) = _scene_input(loaded_model)
    yours, error = _student_call(name, fn, {"guided_grad_cam", "guided_product"}, loaded_model.model, x, target, layer)
    if error:
        return print(error)
    model = loaded_model.model
    ok, message = verdict(name, yours, cam.guided_grad_cam(model, x, target, layer=layer))
    if not ok:
        gb, raw = saliency.guided_backprop(model, x, target), cam.grad_cam(model, x, target, layer=layer)
        heat = cam.normalize_maps(raw.upsampled(x.shape[-1]))[:, None]
        off = _first_match(yours, {
            "the first factor is the plain gradient: use guided backprop":
                saliency.vanilla_gradient(model, x, target) * heat,
            "the mask is the raw Grad-CAM map: scale it to [0, 1] with cam.normalize_maps":
                gb * raw.upsampled(x.shape[-1])[:, None],
            "the map is taken at the last block: use the layer you are given": cam.guided_grad_cam(model, x, target),
            "that is guided backprop alone: multiply it by the Grad-CAM mask": gb,
        })
        message += f" ({off})" if off else ""
    print(message)


def check_rule_grad_cam(fn, loaded_model) -> None:
    """``fn(model, x, target, layer, rule)``, Grad-CAM with a ReLU rule, on a tiny model worked out by hand
    and on a scene, class and layers not seen in lesson 07."""
    from collections import OrderedDict

    from torch import nn

    from . import cam

    name = "Grad-CAM with a ReLU rule"
    # By hand: the layer gives A (2 channels at 2 positions), then ReLU, the mean over positions and
    # score = mean relu(A_0) - mean relu(A_1), so dscore/d relu(A) is +1/2 on channel 0, -1/2 on channel 1.
    # plain: A_0 = (4, -2) gates its 2nd position: alpha = (1/4, -1/2), map = relu((1 - 1/2, -1/2 - 1)) = (1/2, 0)
    # guided: also drops channel 1's negative gradient: alpha = (1/4, 0), map = relu((1, -1/2)) = (1, 0)
    # deconvnet: no forward gate, negatives dropped: alpha = (1/2, 0), map = relu((2, -1)) = (2, 0)
    tiny = nn.Sequential(OrderedDict(a=nn.Identity(), relu=nn.ReLU(), gap=nn.AdaptiveAvgPool2d(1),
                                     flat=nn.Flatten(), fc=nn.Linear(2, 1, bias=False)))
    with torch.no_grad():
        tiny.fc.weight.copy_(torch.tensor([[1.0, -1.0]]))
    a = torch.tensor([[[[4.0, -2.0]], [[1.0, 2.0]]]])  # (1, 2, 1, 2)
    for rule, by_hand in [("plain", [0.5, 0.0]), ("guided", [1.0, 0.0]), ("deconvnet", [2.0, 0.0])]:
        yours, error = _student_call(name, fn, {"grad_cam", "GradCAM"}, tiny, a, 0, "a", rule)
        if error:
            return print(error)
        ok, message = verdict(f"{name}, rule {rule!r} on a tiny model worked out by hand", yours,
                              torch.tensor([[by_hand]]))
        if not ok:  # the three hand answers differ, so a rule mixed up shows here
            return print(message + "; by hand the maps are plain (0.5, 0), guided (1, 0), deconvnet (2, 0)")
    model = loaded_model.model
    x, (target, _) = _scene_input(loaded_model, index=9)
    for layer, rule in [("features.relu3", "guided"), ("features.relu4", "deconvnet")]:
        yours, error = _student_call(name, fn, (), model, x, target, layer, rule)
        if error:
            return print(error)
        def maps(**kwargs):
            return cam.grad_cam(model, x, target, layer=layer, **kwargs).maps

        ok, message = verdict(f"{name}, {rule} at {layer}", yours, maps(rule=rule))
        if not ok:
            off = _first_match(yours, {
                "this is plain Grad-CAM: run the forward pass inside relu_rule(rule)": maps(),
                "the ReLU on the weighted sum is missing": maps(rule=rule, relu=False),
            })
            return print(message + (f" ({off})" if off else ""))
    print(f"✓ {name}: right on a tiny model worked out by hand and on a new scene at relu3 and relu4")


def check_noise_alpha(yours, model, x, noise, target) -> None:
    """Your deconvnet alpha at features.relu4 for ``noise`` against the one for the scene ``x``."""
    from . import cam

    def grad(image, rule):
        return cam.GradCAM(model, image, "features.relu4", rule=rule).gradients(target)[0]

    ok, message = verdict("deconvnet alpha at relu4, noise vs the scene", yours, grad(x, "deconvnet").mean(dim=(2, 3)))
    if ok:
        message += " (the same alpha for both images)"
    elif yours is not None:
        off = _first_match(yours, {
            "this is the plain rule's alpha for the noise: run the forward pass inside relu_rule('deconvnet')":
                grad(noise, "plain").mean(dim=(2, 3)),
            "this is the guided rule's alpha for the noise: the rule is 'deconvnet'":
                grad(noise, "guided").mean(dim=(2, 3)),
            "alpha is the mean of the gradient over the positions, not the sum":
                grad(noise, "deconvnet").sum(dim=(2, 3)),
        })
        message += f" ({off})" if off else ""
    print(message)


# --- lesson 08 ---


def check_count_op(fn) -> None:
    """``fn(ops, op)``, how many nodes of ``ops`` have the operation ``op``, on a graph not seen in lesson 08."""
    from .tensorboard import GraphNode

    name = "count_op"
    kinds = ["aten::_convolution", "aten::relu", "aten::_convolution", "aten::relu_", "aten::add_",
             "aten::_convolution"]
    ops = [GraphNode(f"Net/Module[m{i}]/out.{i}", op, (), (1, 4, 8, 8)) for i, op in enumerate(kinds)]
    for op in ["aten::_convolution", "aten::relu", "aten::add_", "aten::linear"]:
        yours, error = _student_call(name, fn, {"op_counts"}, ops, op)
        if error:
            return print(error)
        if yours != kinds.count(op):
            hint = " (that is every node)" if yours == len(ops) else ""
            return print(f"✗ {name}: {yours!r} nodes of {op!r} in a graph of {len(ops)} operations "
                         f"({', '.join(kinds)}), expected {kinds.count(op)}{hint}")
    print(f"✓ {name}: right on a graph of {len(ops)} operations, for four kinds (one absent)")


def check_residual_adds(yours, resnet) -> None:
    """Your list of the layers holding ResNet's ``aten::add_`` nodes against its residual blocks, in order."""
    name = "residual additions"
    blocks = [n for n, m in resnet.named_modules() if type(m).__name__ in ("BasicBlock", "Bottleneck")]
    if yours is None:
        return print(f"… {name}: not answered yet (replace the None)")
    if isinstance(yours, str) or not hasattr(yours, "__iter__"):
        return print(f"✗ {name}: expected a list of layer names, got {type(yours).__name__}")
    yours = list(yours)
    if yours == blocks:
        return print(f"✓ {name}: one in each of the {len(blocks)} blocks, {blocks[0]} to {blocks[-1]}")
    if not yours:
        return print(f"✗ {name}: none found; an in-place addition's op is 'aten::add_' (with the underscore)")
    if any("/" in str(v) for v in yours):
        return print(f"✗ {name}: {yours[0]!r} is a node's name; its layer is the dotted name (node.layer)")
    if len(yours) != len(blocks):
        return print(f"✗ {name}: {len(yours)} layers, but the model has {len(blocks)} residual blocks")
    i = next(i for i, (a, b) in enumerate(zip(yours, blocks)) if a != b)
    print(f"✗ {name}: entry {i} is {yours[i]!r}, expected {blocks[i]!r}")


# --- lesson 09 ---


def _mask_square(top: int, left: int, side: int, size: int = 64) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[top : top + side, left : left + side] = True
    return mask


def _unseen_maps_and_masks():
    """Eight random 16x16 maps and the masks of eight scenes from a seed no lesson shows."""
    from .scenes import make_scenes

    masks = torch.from_numpy(make_scenes(8, seed=97).masks[:, 0])
    return torch.randn(8, 16, 16, generator=torch.Generator().manual_seed(97)), masks


def _as_list(yours, dtype):
    """The student's answers as a flat list, or None when they are not numbers."""
    try:
        return np.asarray(yours.detach().cpu() if isinstance(yours, torch.Tensor) else yours,
                          dtype=dtype).ravel().tolist()
    except (TypeError, ValueError):
        return None


def _one_per_map(name: str, yours, n: int, kind):
    """``(yours as a list of ``kind``, None)``, or ``(None, the line to print)`` unless it is one per map."""
    got = _as_list(yours, kind)
    if got is None or len(got) != n:
        count = f"not one {'bool' if kind is bool else 'number'} per map" if got is None else f"{len(got)} answers"
        return None, f"✗ {name}: {count} for {n} maps"
    return got, None


def check_pointing_game(fn) -> None:
    """``fn(maps, masks, tolerance)``, the pointing game, on maps worked out by hand and on unseen scenes."""
    from . import evaluation

    name = "pointing game"
    square = _mask_square(20, 20, 10)  # rows and columns 20 to 29
    cases = [((25, 25), square, "a peak on the object"), ((25, 33), square, "a peak 4 px right of the object"),
             ((25, 34), square, "a peak 5 px right of the object"),
             ((32, 32), square, "a peak 3 px below and 3 px right of its corner (4.2 px)"),
             (None, _mask_square(0, 0, 10), "a flat map (its argmax is pixel (0, 0), on the object)")]
    maps = torch.zeros(len(cases), 64, 64)
    for j, (peak, _, _) in enumerate(cases):
        if peak:
            maps[j][peak] = 1.0
    masks = torch.stack([mask for _, mask, _ in cases])
    for tolerance, by_hand in [(4, [True, True, False, False, False]), (0, [True, False, False, False, False])]:
        yours, error = _student_call(name, fn, {"pointing_game"}, maps, masks, tolerance)
        if error:
            return print(error)
        got, error = _one_per_map(name, yours, len(cases), bool)
        if error:
            return print(error)
        wrong = next((j for j in range(len(cases)) if got[j] != by_hand[j]), None)
        if wrong is not None:
            return print(f"✗ {name}: {cases[wrong][2]}, tolerance {tolerance} px: yours says "
                         f"{'hit' if got[wrong] else 'miss'}, it is a {'hit' if by_hand[wrong] else 'miss'}")
    unseen, scene_masks = _unseen_maps_and_masks()
    yours, error = _student_call(name, fn, (), unseen, scene_masks, 4)
    if error:
        return print(error)
    ok, message = verdict(f"{name}, 16x16 maps on new scenes", yours,
                          evaluation.pointing_game(unseen, scene_masks, tolerance=4).float())
    print(f"✓ {name}: right on five maps worked out by hand and on eight new scenes" if ok else message)


def check_randomized_spearman(yours, model, x, targets) -> None:
    """Your mean Spearman correlations [vanilla gradient, guided backprop] of the maps of ``x`` before and
    after ``fc`` and ``features.conv5`` are re-initialised (seed 0), against the library's."""
    from . import evaluation
    from .methods import explain

    name = "Spearman after randomizing fc and conv5"
    if yours is None:
        return print(f"… {name}: not answered yet (replace the None)")
    methods = ["vanilla gradient", "guided backprop"]
    trained = {m: explain(model, x, m, targets) for m in methods}

    def mean_correlation(twin, correlation):
        maps = {m: explain(twin, x, m, targets) for m in methods}
        return [sum(correlation(a, b) for a, b in zip(trained[m], maps[m])) / len(x) for m in methods]

    def pearson(a, b):
        return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]).double())[0, 1].item()

    steps = evaluation.cascading_randomization(model, ["fc", "features.conv5"], seed=0)
    fc_only = mean_correlation(next(steps)[1], evaluation.spearman)
    twin = next(steps)[1]
    ok, message = verdict(name, yours, mean_correlation(twin, evaluation.spearman), atol=1e-3)
    if not ok:
        off = _first_match(yours, {"these are the correlations with fc alone random: re-initialise conv5 too": fc_only,
                                   "this is Pearson's correlation of the values: correlate their ranks":
                                       mean_correlation(twin, pearson)}, atol=1e-3)
        message += f" ({off})" if off else ""
    print(message)


def check_energy_share(fn) -> None:
    """``fn(maps, masks)``, each map's share of positive mass inside its mask, on maps worked out by hand
    and on unseen scenes."""
    from . import evaluation

    name = "energy share"
    left = torch.zeros(64, 64, dtype=torch.bool)
    left[:, :32] = True
    three_one, three_minus_one = torch.ones(64, 64), -torch.ones(64, 64)
    three_one[:, :32] = three_minus_one[:, :32] = 3.0
    cases = [(torch.ones(64, 64), left, 0.5, "a map of 1s, the mask the left half"),
             (three_one, left, 0.75, "3 on the left half, 1 on the right, the mask the left half"),
             (three_minus_one, ~left, 0.0, "3 on the left half, -1 on the right, the mask the right half: "
                                           "only the positive part counts"),
             (torch.zeros(64, 64), left, 0.0, "an all-zero map scores 0 (not NaN)")]
    yours, error = _student_call(name, fn, {"energy_inside"}, torch.stack([c[0] for c in cases]),
                                 torch.stack([c[1] for c in cases]))
    if error:
        return print(error)
    got, error = _one_per_map(name, yours, len(cases), float)
    if error:
        return print(error)
    for value, (_, _, by_hand, what) in zip(got, cases):
        if not abs(value - by_hand) <= 1e-6:  # NaN fails too
            return print(f"✗ {name}: {what}: yours {value:.3g}, by hand {by_hand:g}")
    unseen, scene_masks = _unseen_maps_and_masks()
    yours, error = _student_call(name, fn, (), unseen, scene_masks)
    if error:
        return print(error)
    ok, message = verdict(f"{name}, 16x16 maps on new scenes", yours, evaluation.energy_inside(unseen, scene_masks))
    print(f"✓ {name}: right on four maps worked out by hand and on eight new scenes" if ok else message)


# --- lesson 00 ---
# Lessons 00-03 check the student's FUNCTION on inputs the notebook never showed, through
# _student_call (lessons 07-09's helper: it refuses code that calls the library's answer).

_NOT_YET = "… {}: not answered yet (replace the None)"


def _call(name: str, fn, args, forbidden=()):
    """``(True, result)``, or ``(False, the line to print)``: :func:`_student_call` as a pair."""
    out, error = _student_call(name, fn, set(forbidden), *args)
    return (False, error) if error else (True, out)


def _numbers(value) -> np.ndarray | None:
    """The answer as float64 numbers, or None when it cannot be read as numbers."""
    try:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().double().numpy()
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _close(a, b, atol: float = 1e-5) -> bool:
    """``a`` (from :func:`_numbers`) has ``b``'s shape, is finite and is within ``atol`` of it."""
    return a is not None and _near(a, b, atol)


def check_preprocess_function(fn) -> None:
    """``fn(image)``: an (H, W, 3) uint8 image -> the course model's (1, 3, H, W) input (lesson 00, exercise 1)."""
    name = "preprocessing"
    image = np.random.default_rng(5).integers(0, 256, (5, 7, 3), dtype=np.uint8)  # not square: H and W differ
    ok, out = _call(name, fn, [image], {"batch"})  # course.batch is the library's answer
    if not ok:
        return print(out)
    a, pixels = _numbers(out), image.astype(np.float64)
    expected = ((pixels / 255 - 0.5) / 0.25).transpose(2, 0, 1)[None]
    if a is None:
        return print(f"✗ {name}: cannot read your answer as numbers")
    if a.shape != expected.shape:
        hint = {(1, 5, 7, 3): ": the colours are last; move them first (permute(2, 0, 1))",
                (5, 7, 3): ": move the colours first and add a batch axis",
                (3, 5, 7): ": add the batch axis (unsqueeze(0))"}
        return print(f"✗ {name}: a 5×7 image gave shape {a.shape}, expected (1, 3, 5, 7)" + hint.get(a.shape, ""))
    if _close(a, expected):
        return print(f"✗ {name}: right on a new 5×7 image, but your function does not return a float tensor"
                     if not (isinstance(out, torch.Tensor) and out.is_floating_point())
                     else f"✓ {name}: right on a new 5×7 image")
    wrong = [(((pixels / 255 - 0.5) / 0.25).reshape(1, 3, 5, 7), "the numbers are right but in the wrong places: "
              "an (H, W, 3) image needs permute(2, 0, 1), not view or reshape"),
             ((pixels / 255).transpose(2, 0, 1)[None], "your values lie in [0, 1]: then subtract the mean 0.5 "
              "and divide by the std 0.25"),
             (((pixels - 0.5) / 0.25).transpose(2, 0, 1)[None], "your values go up to 1020: divide the pixels by "
              "255 first")]
    for guess, words in wrong:
        if _close(a, guess):
            return print(f"✗ {name}: {words}")
    print(f"✗ {name}: on a new 5×7 image the max difference is {np.abs(a - expected).max():.3g}")


def check_softmax_function(fn) -> None:
    """``fn(logits)``: each row's probabilities, without overflow and without torch's softmax (lesson 00, ex. 2)."""
    name = "softmax"
    logits = torch.tensor([[1000.0, 999.0, 990.0], [-1000.0, -1001.0, -1003.0],
                           [0.0, float(np.log(3)), float(np.log(4))]])
    ok, out = _call(name, fn, [logits.clone()], {"softmax", "log_softmax", "Softmax", "LogSoftmax"})
    if not ok:
        return print(out)
    a = _numbers(out)
    z = logits.double().numpy()
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)  # the last row is 1 : 3 : 4 = [1/8, 3/8, 1/2]
    if a is None or a.shape != (3, 3):
        shape = "no numbers" if a is None else f"shape {a.shape}"
        return print(f"✗ {name}: three rows of three logits gave {shape}: give one row of probabilities per row")
    bad = [i for i in range(3) if not np.isfinite(a[i]).all()]
    if 0 in bad:
        return print(f"✗ {name}: the row [1000, 999, 990] gives NaN or inf: e^1000 overflows; subtract each "
                     "row's largest logit first")
    if bad:
        return print(f"✗ {name}: the row [-1000, -1001, -1003] gives NaN: with one maximum for the whole batch "
                     "its e^z all underflow to 0; subtract each row's own maximum")
    if _close(a, expected, 1e-6):
        return print(f"✓ {name}: right on three new rows, huge and tiny logits included")
    if np.allclose(a.sum(axis=0), 1, atol=1e-6):
        return print(f"✗ {name}: your columns sum to 1, not your rows: sum over each row (dim=1, keepdim=True)")
    print(f"✗ {name}: logits [0, ln 3, ln 4] should give [1/8, 3/8, 1/2], yours gave "
          f"[{', '.join(f'{v:.3g}' for v in a[2])}]")


# --- lesson 01 ---


def _hooks_left(model, hooks_before: int) -> str:
    """The hooks the student's function left on ``model``, in words ('' for none)."""
    from .hooks import hook_counts
    left = sum(hook_counts(model).values()) - hooks_before
    return f"{left} hook{'s' * (left != 1)} on the model" if left else ""


def check_hook_function(fn, model) -> None:
    """``fn(model, x)``: features.conv3's output caught with a hook the function removes (lesson 01, ex. 1).
    Run on ``model`` with new scenes, on an untrained CourseNet, and with a forward pass that fails."""
    name = "conv3 through your hook"
    from . import hooks
    from .coursenet import CourseNet
    from .scenes import make_scenes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        fresh = CourseNet(n_classes=6).eval()
    device = next(model.parameters()).device
    x = (torch.from_numpy(make_scenes(2, seed=21).images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    cases = [(model, x.to(device)), (fresh, torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(4)))]
    places = {"capture", "keep_outputs", "feature_maps", "create_feature_extractor"}
    for net, inputs in cases:
        with hooks.model_guard(net):  # whatever the student's function leaves, the check takes off
            before = sum(hooks.hook_counts(net).values())
            ok, out = _call(name, fn, [net, inputs], places)
            left = _hooks_left(net, before)
        if not ok:
            return print(out + (f" (and it left {left}: remove it in a finally)" if left else ""))
        with torch.no_grad(), hooks.capture(net, ["features.conv3", "features.bn3", "features.relu3"]) as acts:
            net(inputs)
        a = _numbers(out)
        if not _close(a, acts["features.conv3"].cpu().double().numpy(), 1e-5):
            other = [k for k in ("features.bn3", "features.relu3") if _close(a, acts[k].cpu().double().numpy())]
            shape = tuple(acts["features.conv3"].shape)
            what = (f"returns the output of {other[0]}, not of features.conv3" if other else
                    "does not return features.conv3's output" + (
                        f" (shape {a.shape}, expected {shape})" if a is not None and a.shape != shape else ""))
            return print(f"✗ {name}: on {'new scenes' if net is model else 'an untrained model'} your function {what}")
        if left:
            return print(f"✗ {name}: the output is right, but your function leaves {left} (the check took it off)")
    with hooks.model_guard(model):
        before = sum(hooks.hook_counts(model).values())
        _call(name, fn, [model, torch.zeros(1, 3, 2, 2, device=device)], places)  # fails at the second pooling
        left = _hooks_left(model, before)
    if left:
        return print(f"✗ {name}: the output is right, but when the forward pass fails your function leaves "
                     f"{left}: remove the hook in a finally (the check took it off)")
    print(f"✓ {name}: right on new scenes and on an untrained model; no hook left, also after a failed pass")


def check_selective_channel_function(fn, model) -> None:
    """``fn(model, x, is_target, layer)``: the channel whose mean activation is highest on the target images
    compared with the rest (lesson 01, exercise 2), asked about hexagons at ``features.relu4`` on new scenes."""
    name = "most selective channel"
    from . import features
    from .scenes import CLASSES, make_scenes
    pool = make_scenes(36, seed=13)
    x = (torch.from_numpy(pool.images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    x = x.to(next(model.parameters()).device)
    is_target = torch.from_numpy(pool.labels[:, 0] == CLASSES.index("hexagon"))
    means = features.mean_activation(model, x, "features.relu4").double()
    on, off = means[is_target].mean(0), means[~is_target].mean(0)
    gap = on - off
    places = {"most_selective_channel"}
    ok, out = _call(name, fn, [model, x, is_target.clone(), "features.relu4"], places)
    if not ok:
        return print(out)
    a = _numbers(out)
    if a is None or a.size != 1 or a.reshape(-1)[0] != round(float(a.reshape(-1)[0])):
        return print(f"✗ {name}: give one channel number (an int), not {type(out).__name__} {out!r:.40}")
    c = int(a.reshape(-1)[0])
    if not 0 <= c < len(gap):
        return print(f"✗ {name}: channel {c} does not exist: features.relu4 has channels 0..{len(gap) - 1}")
    if gap[c] >= gap.max() - 1e-6 * max(1.0, float(gap.abs().max())):  # a near tie is no student's fault
        return print(f"✓ {name}: right for hexagons at features.relu4, on 36 new scenes")
    if c == int(on.argmax()):
        return print(f"✗ {name}: on new scenes your channel is the most active on the target images, but it is "
                     "nearly as active on the others: subtract its mean over the other images")
    if c == int(gap.argmin()):
        return print(f"✗ {name}: on new scenes you found the channel most active on the OTHER images: "
                     "targets minus others, not the reverse")
    print(f"✗ {name}: on new scenes your channel {c} is {float(gap.max() - gap[c]):.3g} less selective "
          f"than channel {int(gap.argmax())}")


def check_minmax_function(fn) -> None:
    """``fn(maps)``: per-channel min-max of a (C, H, W) tensor, a constant channel to 0 (lesson 01, ex. 3)."""
    name = "per-channel min-max"
    from . import features
    maps = torch.tensor([[[0.0, 2.0], [4.0, 8.0]],  # -> 0, 1/4, 1/2, 1
                         [[-1.0, 1.0], [0.0, 3.0]],  # -> 0, 1/2, 1/4, 1
                         [[3.0, 3.0], [3.0, 3.0]],  # constant -> 0
                         [[0.0, 0.0], [0.0, 0.0]]])  # all zero -> 0
    expected = np.array([[[0, 0.25], [0.5, 1]], [[0, 0.5], [0.25, 1]], np.zeros((2, 2)), np.zeros((2, 2))])
    places = {"normalize", "minmax_per_channel", "minmax_shared"}
    ok, out = _call(name, fn, [maps.clone()], places)
    if not ok:
        return print(out)
    a = _numbers(out)
    if a is None or a.shape != (4, 2, 2):
        return print(f"✗ {name}: four 2×2 channels gave {'no numbers' if a is None else f'shape {a.shape}'}, "
                     "expected the same shape, (4, 2, 2)")
    if not np.isfinite(a).all():
        return print(f"✗ {name}: a constant channel gives NaN (0 / 0): make it 0 instead")
    if _close(a, (maps.double().numpy() + 1) / 9):  # one min (-1) and max (8) for the whole stack
        return print(f"✗ {name}: you stretched all channels together: take each channel's own min and max")
    if _close(a[0], expected[0]) and not _close(a[1], expected[1]):
        return print(f"✗ {name}: a channel with negative values is off: subtract its minimum before dividing")
    if not _close(a[2:], expected[2:]):
        return print(f"✗ {name}: a constant channel should be 0 (black); yours gave {a[2].max():.3g}")
    if not _close(a, expected):
        return print(f"✗ {name}: the channel [[0, 2], [4, 8]] should give [[0, 0.25], [0.5, 1]]; "
                     f"yours gave {np.round(a[0], 3).tolist()}")
    rand = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(6)) * 4 - 1
    ok, out = _call(name, fn, [rand.clone()], places)
    if not ok or not _close(_numbers(out), features.minmax_per_channel(rand)):
        return print(out if not ok else f"✗ {name}: right on 2×2 channels but not on three random 5×7 ones")
    print(f"✓ {name}: right on new channels, constant ones included")


# --- lesson 02 ---


def check_filter_norms_function(fn) -> None:
    """``fn(weight)``: the L2 norm of each output filter of an (out, in, kh, kw) weight (lesson 02, ex. 1)."""
    name = "filter norms"
    w = torch.tensor([[[[1.0, 1.0]], [[1.0, 1.0]]],  # 2
                      [[[3.0, 4.0]], [[0.0, 0.0]]],  # 5
                      [[[0.0, 0.0]], [[0.0, 0.0]]],  # 0
                      [[[-3.0, 0.0]], [[0.0, -4.0]]]])  # 5
    ok, out = _call(name, fn, [w.clone()], {"filter_norms"})
    if not ok:
        return print(out)
    a = _numbers(out)
    if a is None or a.shape != (4,):
        shape = "no numbers" if a is None else f"shape {a.shape}"
        return print(f"✗ {name}: four filters of 2 × 1 × 2 weights gave {shape}, expected four norms, one per "
                     "filter" + (": take each filter's norm over all its slices" if shape == "shape (4, 2)" else ""))
    for guess, words in [([4, 25, 0, 25], "these are squared norms: take the square root"),
                         ([4, 7, 0, 7], "that is the sum of absolute values (the L1 norm): square, sum, root")]:
        if _close(a, np.array(guess, float)):
            return print(f"✗ {name}: {words}")
    if not _close(a, [2.0, 5.0, 0.0, 5.0]):
        return print(f"✗ {name}: filters with weights (1, 1, 1, 1), (3, 4, 0, 0), zeros and (-3, 0, 0, -4) should "
                     f"give 2, 5, 0, 5; yours gave {np.round(a, 3).tolist()}")
    w = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(7))
    ok, out = _call(name, fn, [w.clone()], {"filter_norms"})
    if not ok or not _close(_numbers(out), w.double().flatten(1).norm(dim=1).numpy()):
        return print(out if not ok else f"✗ {name}: right on the small case but not on a random 5×4×3×3 weight")
    print(f"✓ {name}: right on new weights")


def check_conv_params_function(fn) -> None:
    """``fn(shape)``: the parameters (weights and biases) of a convolution with weight ``shape`` (lesson 02, ex. 2)."""
    name = "parameters of a convolution"
    for shape in [(8, 3, 5, 5), (1, 1, 1, 1), (16, 3, 3, 3)]:
        out_c, in_c, kh, kw = shape
        ok, out = _call(name, fn, [torch.Size(shape)], {"numel", "parameters"})
        if not ok:
            return print(out)
        a, right = _numbers(out), out_c * in_c * kh * kw + out_c
        if a is None or a.size != 1:
            return print(f"✗ {name}: give one number (an int), not {type(out).__name__}")
        got = float(a.reshape(-1)[0])
        if got != right:
            words = {right - out_c: "you counted the weights but not the biases: one per output filter",
                     right - out_c + in_c: "one bias per output filter (the first number), not per input channel",
                     right - out_c + out_c * in_c: "one bias per filter, not one per slice"}
            return print(f"✗ {name}: for a weight of shape {shape}: "
                         + words.get(got, f"yours {got:g}, expected {right}"))
    print(f"✓ {name}: right for three new shapes")


def check_opponency_function(fn) -> None:
    """``fn(weight)``: each first-layer filter's colour-opponency score (lesson 02, exercise 3)."""
    name = "opponency scores"
    from . import filters
    w = torch.tensor([[[[1.0, 1.0]], [[-0.5, -0.5]], [[2.0, -2.0]]],  # sums (2, -1, 0) -> 1
                      [[[0.5, 0.5]], [[1.0, 1.0]], [[1.5, 1.5]]],  # (1, 2, 3) -> 0
                      [[[-1.0, -2.0]], [[-0.5, -0.5]], [[-1.0, -1.0]]],  # (-3, -1, -2) -> 0
                      [[[1.0, 2.0]], [[-2.0, -3.0]], [[0.25, 0.25]]]])  # (3, -5, 0.5) -> 3
    places = {"colour_opponency"}
    ok, out = _call(name, fn, [w.clone()], places)
    if not ok:
        return print(out)
    a = _numbers(out)
    if a is None or a.shape != (4,):
        return print(f"✗ {name}: four filters gave {'no numbers' if a is None else f'shape {a.shape}'}, expected "
                     "four scores: sum each colour slice over its kh × kw weights (dim=(2, 3)) first")
    for guess, words in [([1, -1, -1, 3], "filters whose colour sums all have one sign score below 0: floor "
                                          "the score at 0"),
                         ([3, 2, 2, 8], "max − min measures the spread of the sums, not an opposition: take the "
                                        "weaker push, min(max s, −min s)")]:
        if _close(a, np.array(guess, float)):
            return print(f"✗ {name}: {words}")
    if not _close(a, [1.0, 0.0, 0.0, 3.0]):
        return print(f"✗ {name}: colour sums (2, -1, 0), (1, 2, 3), (-3, -1, -2), (3, -5, 0.5) should score "
                     f"1, 0, 0, 3; yours gave {np.round(a, 3).tolist()}")
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(8))
    ok, out = _call(name, fn, [w.clone()], places)
    if not ok or not _close(_numbers(out), filters.colour_opponency(w).double().numpy()):
        return print(out if not ok else f"✗ {name}: right on the small case but not on a random 6×3×3×3 weight")
    print(f"✓ {name}: right on new filters")


def check_most_opponent_filter(yours, model) -> None:
    """The index of ``features.conv1``'s most colour-opponent filter (lesson 02, exercise 3)."""
    name = "most colour-opponent filter"
    from . import filters
    if yours is None:
        return print(_NOT_YET.format(name))
    scores = filters.colour_opponency(filters.conv_weight(model, "features.conv1"))
    a = _numbers(yours)
    if a is None or a.size != 1 or a.reshape(-1)[0] != round(float(a.reshape(-1)[0])):
        return print(f"✗ {name}: give one filter number (an int)")
    c = int(a.reshape(-1)[0])
    if not 0 <= c < len(scores):
        return print(f"✗ {name}: conv1 has filters 0..{len(scores) - 1}, not {c}")
    print(f"✓ {name}: right" if c == int(scores.argmax()) else
          f"✗ {name}: filter {c} scores {scores[c]:.2f}; another filter scores higher")


# --- lesson 03 ---


def _ascent_call(name, fn, args, model):
    """Run the student's ascent loop (refused if it calls ``visualize``); the model is handed back clean."""
    from . import hooks
    grads = [(p, p.grad) for p in model.parameters()]
    with hooks.model_guard(model):
        before = sum(hooks.hook_counts(model).values())
        ok, out = _call(name, fn, args, {"visualize"})
        left = _hooks_left(model, before)
    touched = any(p.grad is not g for p, g in grads)
    for p, g in grads:
        p.grad = g
    if ok and left:
        return False, f"✗ {name}: your loop leaves {left}: use capture, or remove your hook in a finally"
    if ok and touched:
        return False, (f"✗ {name}: your loop wrote .grad on the model's parameters: take the gradient to the "
                       "image only, with torch.autograd.grad")
    return ok, out


def check_neuron_ascent_function(fn, loaded) -> None:
    """``fn(model, layer, channel, steps, lr)``: the plain ascent of lesson 03's section 2 for the centre neuron
    of one channel, the score of every step (exercise 1); tried on a neuron of ``features.bn2``."""
    name = "neuron ascent"
    from . import optvis
    steps, layer, c, lr = 10, "features.bn2", 3, 0.1
    ok, out = _ascent_call(name, fn, [loaded.model, layer, c, steps, lr], loaded.model)
    if not ok:
        return print(out)
    expected = optvis.visualize(loaded, optvis.neuron(layer, c), steps=steps, lr=lr, progress=False).history[:, 0]
    a, e = _numbers(out), expected.double().numpy()
    if a is None or a.shape != (steps,):
        return print(f"✗ {name}: {steps} steps should give {steps} scores, one per step; yours gave "
                     f"{'no numbers' if a is None else f'shape {a.shape}'}")
    off = np.abs(a - e) > 1e-4 * np.maximum(1.0, np.abs(e))
    where = f"{layer}, channel {c}, {steps} steps, lr {lr}"
    if not off.any():
        return print(f"✓ {name}: your loop gives visualize's scores on a new neuron ({where})")
    if np.allclose(a[:-1], e[1:], rtol=1e-4):
        return print(f"✗ {name}: your scores are one step ahead: record each score before its step")
    if off[0]:
        return print(f"✗ {name}: on {where}, your first score is {a[0]:.3g}, not {e[0]:.3g}: read channel {c} "
                     "at the centre (H // 2, W // 2) of the layer's maps, on the seeded start, normalised")
    if a[-1] < a[0]:
        return print(f"✗ {name}: on {where} your score falls: Adam minimizes, so hand it minus the gradient")
    print(f"✗ {name}: on {where} your scores leave visualize's at step {int(off.argmax())}: "
          "check the step (Adam on minus the gradient, then clip to [0, 1])")


def _hf_variants(image: torch.Tensor) -> dict:
    """The high-frequency energy of one image, and what three plausible slips give instead."""
    x = image.double()
    dx, dy = x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]
    return {"right": float(dx.pow(2).mean() + dy.pow(2).mean()),
            "that is a sum: take the mean of each direction's squared differences":
                float(dx.pow(2).sum() + dy.pow(2).sum()),
            "add the squared differences down the rows too": float(dx.pow(2).mean()),
            "square the differences (you took their size)": float(dx.abs().mean() + dy.abs().mean())}


def check_hf_energy_function(fn) -> None:
    """``fn(image)``: the high-frequency energy of one (1, 3, H, W) image (lesson 03, exercise 2)."""
    name = "high-frequency energy"
    ramp = torch.tensor([0.0, 0.5, 1.0]).expand(1, 3, 2, 3)  # across: steps of 0.5 -> 0.25; down: 0
    cases = [(ramp.clone(), "a ramp across, [0, 0.5, 1] in each row"),
             (ramp.transpose(2, 3).clone(), "the same ramp down the rows"),
             (torch.tensor([[0.0, 1.0], [1.0, 0.0]]).expand(1, 3, 2, 2).clone(), "the checkerboard [[0, 1], [1, 0]]"),
             (torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(9)), "a random 5×6 image")]
    places = {"high_frequency_energy"}
    for image, what in cases:
        ok, out = _call(name, fn, [image.clone()], places)
        if not ok:
            return print(out)
        a = _numbers(out)
        if a is None or a.size != 1:
            what = "that" if a is None else f"shape {a.shape}"
            return print(f"✗ {name}: give one number for one image, not {what}")
        got, variants = float(a.reshape(-1)[0]), _hf_variants(image)
        if abs(got - variants["right"]) > 1e-6:
            hint = [words for words, v in variants.items() if words != "right" and abs(got - v) <= 1e-6]
            return print(f"✗ {name}: {what} should give {variants['right']:.3g}, yours gave {got:.3g}"
                         + (f": {hint[0]}" if hint else ""))
    print(f"✓ {name}: right on four new images")


def check_hf_change(yours, loaded) -> None:
    """The change in high-frequency energy from jitter(2) for lesson 03's plain ascent (exercise 2); the
    expected value comes from two runs of ``visualize`` made here."""
    name = "change in high-frequency energy"
    if yours is None:
        return print(_NOT_YET.format(name))
    from . import optvis
    energy = [optvis.high_frequency_energy(optvis.visualize(loaded, optvis.channel("features.relu5", 30), steps=128,
                                                            transforms=t, progress=False).images).item()
              for t in (None, optvis.jitter(2))]
    ok, message = verdict(name, yours, energy[1] - energy[0], atol=1e-5)
    if not ok and _close(_numbers(yours), np.float64(energy[0] - energy[1])):
        message = f"✗ {name}: the sign is flipped: yours (jittered) minus plain's"
    print(message)


def check_regularized_ascent_function(fn, loaded) -> None:
    """``fn(model, layer, channel, steps, lam, blur_every, sigma)``: the ascent with L2 decay and blurring of
    lesson 03's exercise 3, the final image; tried on channel 12 of ``features.relu4``."""
    name = "L2 + blur ascent"
    from . import optvis
    args = dict(steps=24, l2=0.1, blur_every=6, blur_sigma=0.8)
    where = "channel 12 of features.relu4, 24 steps, λ = 0.1, blur every 6 steps with σ = 0.8"

    def run(**change):
        unit = optvis.channel("features.relu4", 12)
        return optvis.visualize(loaded, unit, progress=False, **{**args, **change}).images

    ok, out = _ascent_call(name, fn, [loaded.model, "features.relu4", 12, 24, 0.1, 6, 0.8], loaded.model)
    if not ok:
        return print(out)
    expected = run()
    a = _numbers(out)
    if a is None or a.shape != tuple(expected.shape):
        return print(f"✗ {name}: give the final image, shape {tuple(expected.shape)}, not "
                     f"{'that' if a is None else f'shape {a.shape}'}")
    if _close(a, expected.double().numpy(), 1e-4):
        return print(f"✓ {name}: your loop gives visualize's image on a new case ({where})")
    for change, words in [(dict(l2=0.0), "the L2 term has no effect: add λ Σ (x − 0.5)² to the loss you "
                                         "differentiate"),
                          (dict(blur_every=0), "the blur never happened: after every blur_every-th step, "
                                               "img = optvis.gaussian_blur(img, sigma), before the clipping")]:
        if _close(a, run(**change).double().numpy(), 1e-4):
            return print(f"✗ {name}: on {where}, {words}")
    print(f"✗ {name}: on {where}, your image differs from visualize's by up to "
          f"{np.abs(a - expected.numpy()).max():.3g}")


# --- lesson 10 ---
# Each exercise's answer is two numbers (shortcut model, course model, or two shares); the expected
# values are computed here, from the lesson's own inputs, and never printed.


def _two_numbers(name: str, yours, expected, labels: tuple[str, str], wrong: dict, atol: float) -> str:
    """The line for a two-number answer: ✓, or what is off: a plausible mistake from ``wrong``
    (what to say -> the numbers it gives), or which of the two numbers is off."""
    if yours is None:
        return _NOT_YET.format(name)
    try:
        a = _numbers([float(v) for v in yours] if isinstance(yours, (list, tuple)) else yours)
    except (TypeError, ValueError):  # e.g. words, or a tensor of more than one number in the list
        a = None
    if a is None or a.shape != (2,):
        return f"✗ {name}: give two numbers, [{labels[0]}, {labels[1]}]"
    expected = np.asarray([float(v) for v in expected])
    ok, message = verdict(name, a, expected, atol)
    if ok:
        return message
    hint = _first_match(a, wrong, atol)
    if hint:
        return f"✗ {name}: {hint}"
    off = [label for label, v, e in zip(labels, a, expected) if not abs(v - e) <= atol]
    if len(off) == 1:
        return f"✗ {name}: {labels[1 - labels.index(off[0])]} is right, {off[0]} is off"
    return f"✗ {name}: both numbers are off"


def _tops(model, x: torch.Tensor) -> torch.Tensor:
    from .hooks import model_guard

    model = getattr(model, "model", model)
    with model_guard(model), torch.no_grad():
        model.eval()
        return model(x.to(next(model.parameters()).device)).argmax(dim=1).cpu()


def check_swapped_rates(yours, shortcut) -> None:
    """[accuracy, share naming the background's class] of the shortcut model on the 120 swapped scenes
    (each shape on each other class's signature background, scenes 0-3 of seed 41)."""
    from .coursenet import CourseTransform
    from .scenes import make_scene

    name = "swapped scenes: accuracy, follows the background"
    if yours is None:  # nothing to compute yet
        return print(_NOT_YET.format(name))
    cases = [(s, b, i) for s in range(6) for b in range(6) for i in range(4)]
    transform = CourseTransform()
    x = torch.stack([transform(torch.from_numpy(make_scene(41, i, classes=[s], background=b).image).permute(2, 0, 1))
                     for s, b, i in cases])
    top, shape, colours = _tops(shortcut, x), *torch.tensor([c[:2] for c in cases]).T
    swapped = shape != colours
    rates = [(top == shape)[swapped].float().mean(), (top == colours)[swapped].float().mean()]
    wrong = {"these are counts: give shares of the 120 scenes (divide by 120)": [120 * float(r) for r in rates],
             "the two numbers are the other way round: accuracy first": rates[::-1],
             "these include each shape on its own class's colours: keep only the 5 other backgrounds":
                 [(top == shape).float().mean(), (top == colours).float().mean()]}
    print(_two_numbers(name, yours, rates, ("the accuracy", "the share naming the background's class"), wrong, 1e-6))


def _energy_nearest(raw: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The mean energy inside, with the maps upsampled by nearest neighbours (F.interpolate's default)."""
    from torch.nn import functional as F

    from . import evaluation

    return evaluation.energy_inside(F.interpolate(raw[:, None].float(), size=tuple(masks.shape[-2:]))[:, 0],
                                    masks).mean()


def check_true_class_energy(yours, shortcut, course, x, masks, true_classes) -> None:
    """[shortcut, course]: the mean energy inside the mask of Grad-CAM (last block) for each scene's true class."""
    from . import evaluation
    from .methods import explain

    name = "Grad-CAM energy inside, true class"
    if yours is None:  # nothing to compute yet
        return print(_NOT_YET.format(name))
    masks = torch.as_tensor(np.asarray(masks)).bool()
    models = [getattr(m, "model", m) for m in (shortcut, course)]
    raw = [explain(m, x, "Grad-CAM", list(true_classes)) for m in models]
    expected = [evaluation.energy_inside(r, masks).mean() for r in raw]
    wrong = {}
    if not verdict(name, yours, expected, 1e-4)[0]:  # only then the mistakes worth naming
        wrong = {"these are the maps of each model's top class (section 5): ask Grad-CAM for the true class":
                     [evaluation.energy_inside(explain(m, x, "Grad-CAM"), masks).mean() for m in models],
                 "upsample bilinearly (`upsample`), not by repeating each cell (nearest neighbours)":
                     [_energy_nearest(r, masks) for r in raw],
                 "the two numbers are the other way round: the shortcut model first": expected[::-1]}
    print(_two_numbers(name, yours, expected, ("the shortcut model's", "the course model's"), wrong, 1e-4))


def check_unchanged_without_shape(yours, shortcut, course, scenes, n: int = 120) -> None:
    """[shortcut, course]: the share of the first ``n`` scenes whose top class stays the same when every
    object pixel is painted with the mean colour of the scene's other pixels."""
    name = "top class unchanged without the shape"
    if yours is None:  # nothing to compute yet
        return print(_NOT_YET.format(name))
    img = torch.from_numpy(np.asarray(scenes.images[:n])).float() / 255
    inside = torch.from_numpy(np.asarray(scenes.masks[:n, 0]))[..., None]
    labels = torch.from_numpy(np.asarray(scenes.labels[:n, 0]))

    def normalised(images):
        return ((images - 0.5) / 0.25).permute(0, 3, 1, 2)

    def painted(fill):
        return normalised(torch.where(inside, fill, img))

    outside = (img * ~inside).sum(dim=(1, 2), keepdim=True) / (~inside).sum(dim=(1, 2), keepdim=True)
    before = [_tops(m, normalised(img)) for m in (shortcut, course)]
    after = [_tops(m, painted(outside)) for m in (shortcut, course)]
    share = [(a == b).float().mean() for a, b in zip(after, before)]
    wrong = {"this compares with the true class: compare with the answer each model gave with the shape":
                 [(a == labels).float().mean() for a in after],
             "the fill colour averages the whole image: take the mean of the pixels outside the object only":
                 [(_tops(m, painted(img.mean(dim=(1, 2), keepdim=True))) == b).float().mean()
                  for m, b in zip((shortcut, course), before)]}
    print(_two_numbers(name, yours, share, ("the shortcut model's", "the course model's"), wrong, 1e-6))


# --- lesson 11 ---
# Exercise 1 asks for Grad-CAM++'s map from a layer's maps A and their gradient G; exercise 2 for
# Integrated Gradients; both are tried on tiny cases whose answers are worked out by hand below.


def _pp_hand_cases():
    """Two images of one channel at two positions, A and G (2, 1, 1, 2), and the maps by hand.

    Image 0: A = (1, 3), G = (1, -1), so sum A = 4 and alpha = G^2 / (2 G^2 + 4 G^3) = (1/6, -1/2);
    the weight is sum alpha ReLU(G) = 1/6 and the map (1/6, 1/2). Grad-CAM's weight, the mean of G, is 0.
    Image 1: A = (-1, 3), G = (1, 1), so sum A = 2, alpha = 1/4 at both positions, the weight 1/2 and
    the map ReLU(-1/2, 3/2) = (0, 3/2): the final ReLU matters."""
    a = torch.tensor([[[[1.0, 3.0]]], [[[-1.0, 3.0]]]])
    g = torch.tensor([[[[1.0, -1.0]]], [[[1.0, 1.0]]]])
    right = torch.tensor([[[1 / 6, 1 / 2]], [[0.0, 3 / 2]]])
    wrong = {  # the mistake in words -> the maps it gives, each worked out the same way
        "that is Grad-CAM: its weight is the mean gradient; Grad-CAM++ weighs each position's ReLU(G) by alpha":
            [[[0.0, 0.0]], [[0.0, 3.0]]],
        "the negative gradients count too: the weight sums alpha · ReLU(G), not alpha · G":
            [[[2 / 3, 2.0]], [[0.0, 3 / 2]]],
        "alpha's denominator takes A at each position: it takes the channel's sum over all positions, sum_ab A_ab":
            [[[1 / 3, 1.0]], [[0.0, 18 / 5]]],
        "alpha is missing: the weight is sum alpha · ReLU(G), not sum ReLU(G)": [[[1.0, 3.0]], [[0.0, 6.0]]],
        "the weight is a sum over the positions, not a mean": [[[1 / 12, 1 / 4]], [[0.0, 3 / 4]]],
        "each position is weighted by its own alpha · ReLU(G) (that is closer to LayerCAM): sum them over the "
        "positions first, one weight per channel": [[[1 / 6, 0.0]], [[0.0, 3 / 4]]],
        "the final ReLU is missing (image 1 has a negative activation)": [[[1 / 6, 1 / 2]], [[-1 / 2, 3 / 2]]],
    }
    return a, g, right, wrong


def check_grad_cam_pp(fn) -> None:
    """Lesson 11, exercise 1: ``fn(a, g)``, Grad-CAM++'s map after its ReLU (N, h, w) from a layer's maps ``a`` and
    the gradient ``g`` (N, K, h, w): on two images worked out by hand, on a channel whose gradient is zero
    (alpha is 0 there, not 0/0) and on random maps and gradients."""
    from .cam import GRADIENT_CAMS

    name = "Grad-CAM++ by hand"
    forbidden = {"GRADIENT_CAMS", "_grad_cam_pp_map", "grad_cam", "GradCAM", "explain", "Explainer"}
    a, g, right, wrong = _pp_hand_cases()
    yours, error = _student_call(name, fn, forbidden, a.clone(), g.clone())
    if error:
        return print(error)
    if tuple(getattr(yours, "shape", ())) != (2, 1, 2):
        return print(f"✗ {name}: maps A of shape (2, 1, 1, 2) should give (2, 1, 2), one map per image (the "
                     f"channels summed); yours is {type(yours).__name__} {tuple(getattr(yours, 'shape', ()))}")
    if not _near(yours, right):
        hint = _first_match(yours, wrong)
        return print(f"✗ {name}: " + (hint or "on A = (1, 3), G = (1, -1) the map is (1/6, 1/2) by hand, on "
                                      f"A = (-1, 3), G = (1, 1) it is (0, 3/2); yours {_rounded(yours)}"))
    # a channel with no gradient at all (G = 0: alpha = 0 / 0) beside one with A = (2, 0), G = (1, 1): map (1, 0)
    zero = (torch.tensor([[[[1.0, 1.0]], [[2.0, 0.0]]]]), torch.tensor([[[[0.0, 0.0]], [[1.0, 1.0]]]]))
    yours, error = _student_call(name, fn, (), *(t.clone() for t in zero))
    if error:
        return print(error)
    if not _near(yours, [[[1.0, 0.0]]]):
        return print(f"✗ {name}: right on the two hand cases, but where a channel's gradient is 0 its alpha is "
                     f"0 / 0: count it as 0 (torch.where on the denominator); yours gave {_rounded(yours)}, "
                     "by hand (1, 0)")
    gen = torch.Generator().manual_seed(1111)
    a, g = torch.randn(3, 5, 4, 6, generator=gen).clamp(min=0), torch.randn(3, 5, 4, 6, generator=gen) / 10
    yours, error = _student_call(name, fn, (), a.clone(), g.clone())
    if error:
        return print(error)
    expected = GRADIENT_CAMS["Grad-CAM++"](a, g).clamp(min=0)
    ok, message = verdict(f"{name}, 3 images of 5 random 4×6 maps", yours, expected)
    print(f"✓ {name}: right on three cases worked out by hand and on random maps" if ok else message)


def _rounded(t) -> list:
    """A small answer as nested lists of numbers rounded to 3 decimals (for a message)."""
    return np.round(np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t, dtype=float), 3).tolist()


class _Squares(torch.nn.Module):
    """logit_c = sum_p W[c, p] x_p^2 + b_c over the flattened input: d logit_c / d x_p = 2 W[c, p] x_p, so along
    the path alpha x the gradient grows linearly in alpha and Integrated Gradients is exactly W[c, p] x_p^2."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, square: bool = True):
        super().__init__()
        self.weight, self.bias, self.square = torch.nn.Parameter(weight), torch.nn.Parameter(bias), square

    def forward(self, x):
        v = x.flatten(1)
        return (v * v if self.square else v) @ self.weight.T + self.bias


def _ig_call(name: str, fn, model, x, target: int, steps: int):
    """The student's ``fn(model, x, target, steps)`` with the model guarded: ``(result, None)`` or ``(None, line)``
    when it is missing, raises, leaves a hook or writes the parameters' ``.grad`` (the check undoes both)."""
    from .hooks import hook_counts, model_guard

    grads = [(p, p.grad) for p in model.parameters()]
    with model_guard(model):
        before = sum(hook_counts(model).values())
        yours, error = _student_call(name, fn, {"integrated_gradients", "explain", "Explainer"}, model, x.clone(),
                                     target, steps)
        left = _hooks_left(model, before)
    written = any(p.grad is not g for p, g in grads)
    for p, g in grads:
        p.grad = g
    if error:
        return None, error
    if left:
        return None, f"✗ {name}: your function leaves {left}: remove it in a finally (the check took it off)"
    if written:
        return None, (f"✗ {name}: your function wrote .grad on the model's parameters: take the gradient to the "
                      "input only, with torch.autograd.grad")
    if tuple(getattr(yours, "shape", ())) != tuple(x.shape):
        return None, (f"✗ {name}: the attributions have the input's shape {tuple(x.shape)}; yours is "
                      f"{type(yours).__name__} {tuple(getattr(yours, 'shape', ()))}")
    return yours, None


def check_integrated_gradients(fn, loaded) -> None:
    """Lesson 11, exercise 2: ``fn(model, x, target, steps)``, Integrated Gradients from a black baseline (0) with
    the midpoint rule, on a linear and a quadratic model worked out by hand (where it is exact and adds up to
    the score's change), then against ``saliency.integrated_gradients`` on a new scene of the course model."""
    from . import saliency

    name = "Integrated Gradients by hand"
    weight = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.0, 2.0, 4.0, -0.5], [0.25, 1.0, -3.0, 2.0]])
    bias = torch.tensor([0.5, -1.0, 2.0])
    x = torch.tensor([[[[1.0, 2.0], [-1.0, 0.5]]], [[[3.0, -2.0], [1.0, -1.0]]]])  # (2, 1, 2, 2)
    target, steps, m = 1, 4, 4
    w = weight[target].view(1, 1, 2, 2)
    linear_by_hand = w * x  # the gradient is W[c] everywhere on the path: IG = (x - 0) · W[c]
    squares_by_hand = w * x * x  # the gradient at alpha x is 2 W[c] alpha x; its mean over the midpoints is W[c] x
    for square, by_hand in [(False, linear_by_hand), (True, squares_by_hand)]:
        model = _Squares(weight.clone(), bias.clone(), square)
        kind = "a quadratic model, logit = Σ W x² + b" if square else "a linear model, logit = W x + b"
        yours, error = _ig_call(name, fn, model, x, target, steps)
        if error:
            return print(error)
        if _near(yours, by_hand, 1e-5):
            continue
        wrong = {"you used the points k/steps, k = 1..steps (the right-hand sum of the paper's eq. 3): the lesson "
                 "uses the midpoints (k + ½)/steps, exact here": by_hand * (m + 1) / m,
                 "you used the points k/steps, k = 0..steps-1 (the left-hand sum): use the midpoints (k + ½)/steps":
                     by_hand * (m - 1) / m,
                 "the gradients are added up over the steps: take their mean": by_hand * m,
                 "that is Input × Gradient (the gradient at the image only): average the gradient along the path "
                 "from the baseline": 2 * by_hand if square else None,
                 "the mean gradient is not multiplied by (x - baseline)": w * x if square else w.expand_as(x)}
        hint = _first_match(yours, {k: v for k, v in wrong.items() if v is not None})
        if hint is None and not square:
            hint = "IG is exactly x · W[c] here: differentiate the target's logit (not a probability)"
        with torch.no_grad():
            change = float((model(x)[:, target] - model(torch.zeros_like(x))[:, target]).sum())
        return print(f"✗ {name}: on {kind}, " + (hint or f"your attributions add up to {_numbers(yours).sum():.3g} "
                                                 f"over the two images; completeness says score(x) − score(0) "
                                                 f"= {change:.3g}"))
    scene_x, (t, _) = _scene_input(loaded, seed=7, index=6)
    scene_x = scene_x.repeat(2, 1, 1, 1) * torch.tensor([1.0, 0.5]).view(2, 1, 1, 1)  # the scene and a dimmer copy
    yours, error = _ig_call(name, fn, loaded.model, scene_x, t, 6)
    if error:
        return print(error)
    expected = saliency.integrated_gradients(loaded.model, scene_x, t, steps=6, progress=False)
    ok, message = verdict(f"{name}, on a new scene of the course model (6 steps)", yours, expected, atol=1e-4)
    print(f"✓ {name}: exact on a linear and a quadratic model (the attributions add up to the score's change) and "
          "the course's on a new scene" if ok else message + ": the tiny models pass, so look at the points "
          "(k + ½)/steps for k = 0..steps−1, and at the class")


def check_metric_agreement(yours, board) -> None:
    """Lesson 11, exercise 3: [Spearman's correlation, over the methods of ``board``, of their pointing game with
    their insertion AUC, and with their deletion AUC], each measure turned so that larger is better (deletion:
    minus its AUC), the scores rounded to 2 decimals as the table prints them (so that methods whose maps are
    equal up to float rounding tie on every CPU), tied scores sharing their mean rank (``evaluation.spearman``)."""
    from .evaluation import spearman

    name = "do the measures agree"
    if yours is None:  # nothing to compute yet
        return print(_NOT_YET.format(name))
    raw = [np.array([board.scores[m][metric] for m in board.methods])
           for metric in ("pointing game", "insertion AUC", "deletion AUC")]
    pointing, insertion, deletion = (np.round(column, 2) for column in raw)
    expected = [spearman(pointing, insertion), spearman(pointing, -deletion)]

    def pearson(a, b):
        return float(np.corrcoef(a, b)[0, 1])

    def no_ties(a, b):  # ranks by sorting twice: tied scores get different ranks
        return pearson(np.argsort(np.argsort(a, kind="stable")), np.argsort(np.argsort(b, kind="stable")))

    wrong = {"the second is the wrong way round: a lower deletion AUC is better, so correlate with minus the AUC":
                 [expected[0], -expected[1]],
             "this is Pearson's correlation of the scores: correlate their ranks (evaluation.spearman)":
                 [pearson(pointing, insertion), pearson(pointing, -deletion)],
             "tied scores must share their mean rank (many methods tie on the pointing game): use evaluation.spearman":
                 [no_ties(pointing, insertion), no_ties(pointing, -deletion)],
             "round each score to 2 decimals first, as the table prints them: maps equal up to float rounding must tie":
                 [spearman(raw[0], raw[1]), spearman(raw[0], -raw[2])]}
    print(_two_numbers(name, yours, expected, ("the agreement with insertion", "the agreement with deletion"),
                       wrong, 1e-6))
