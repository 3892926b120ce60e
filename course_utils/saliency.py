"""Saliency maps (lesson 04): how much each input pixel moves a class score.

* :func:`input_gradient` — the gradient of a class **logit** with respect to the
  input pixels, with the ReLUs passing gradients back by one of three rules
  (:data:`course_utils.hooks.RELU_RULES`):

  - ``"plain"``: the vanilla gradient (Simonyan et al. 2014, "Deep Inside
    Convolutional Networks", the image-specific class saliency);
  - ``"guided"``: guided backprop (Springenberg et al. 2015, "Striving for
    Simplicity: The All Convolutional Net", fig. 1);
  - ``"deconvnet"``: the deconvnet (Zeiler & Fergus 2014, "Visualizing and
    Understanding Convolutional Networks"), in Springenberg et al.'s
    reading as one more backward rule.

* :func:`project_unit` — one activation of a middle layer projected back to the pixels by a
  ReLU rule, the use Zeiler & Fergus (2014, sec. 2.1) made of their deconvnet.
* :func:`smoothgrad` — the average of the gradient over noisy copies of the
  image (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise").
* :func:`input_x_gradient` — the input times its gradient (Shrikumar et al. 2016, "Not Just
  a Black Box"): each pixel's first-order share of the score.
* :func:`integrated_gradients` — the gradient averaged along the straight path from a
  baseline to the image, times (image - baseline) (Sundararajan et al. 2017, "Axiomatic
  Attribution for Deep Networks", eq. 1 and 3); :func:`completeness` checks their axiom:
  the attributions add up to score(image) - score(baseline).
* :func:`saliency_map` — from a gradient (N, 3, H, W) to what is shown: one
  value per pixel (``abs``, ``positive``, ``signed``) or a colour picture
  (``rgb``), scaled to [0, 1] (or [-1, 1]) without ever producing NaN.

Every function runs the model in eval mode inside :func:`~course_utils.hooks.model_guard`
(or :func:`~course_utils.hooks.eval_mode`, where the mode is all that changes) and takes
the gradient with ``torch.autograd.grad`` to the input only, so the model comes back
unchanged and no parameter's ``.grad`` is written. They work under ``torch.no_grad()``
(they switch gradients on for themselves and leave the mode as it was); inside
``torch.inference_mode()``, where no gradient can be had, they raise one clear error.
"""

from __future__ import annotations

import torch
from torch import nn

from .hooks import RELU_RULES, capture, check_gradients_allowed, eval_mode, layer_name, model_guard, relu_rule
from .targets import check_input, class_list, resolve_targets

__all__ = [
    "DISPLAYS",
    "input_gradient",
    "input_gradients",
    "vanilla_gradient",
    "guided_backprop",
    "deconvnet",
    "project_unit",
    "smoothgrad",
    "input_x_gradient",
    "integrated_gradients",
    "completeness",
    "saliency_map",
]

#: How a gradient (3 colour channels per pixel) becomes a picture.
DISPLAYS = {
    "abs": "max over colour channels of |g|, in [0, 1] (Simonyan et al. 2014)",
    "positive": "max over colour channels of max(g, 0), in [0, 1]: pixels that raise the score",
    "signed": "sum over colour channels of g, in [-1, 1]: raises (> 0) or lowers (< 0) the score",
    "rgb": "g itself as a colour image, 0.5 = no effect (how guided backprop is usually shown)",
}


def input_gradient(model: nn.Module, x: torch.Tensor, target=None, rule: str = "plain"):
    """One forward and one backward pass: ``(logits, gradient)``, both detached.

    ``gradient[i]`` is d score_i / d x[i], where score_i is image i's target logit
    (``target``: a class index, a list with one per image, ``None`` for each
    image's top class, or a function of the logits — see
    :func:`~course_utils.targets.resolve_targets`). The ReLUs pass gradients back by
    ``rule`` (``"plain"``, ``"guided"`` or ``"deconvnet"``).
    """
    check_gradients_allowed("input_gradient")
    logits, grads = input_gradients(model, x, target, (rule,))
    return logits, grads[rule]


def input_gradients(model: nn.Module, x: torch.Tensor, target=None, rules=("plain", "guided", "deconvnet")):
    """:func:`input_gradient` for several ``rules`` at once: ``(logits, {rule: gradient})`` from one
    forward pass and one backward pass per rule (each rule is read as its gradient is taken, see
    :func:`~course_utils.relu_rules.relu_rule`): three rules cost one forward pass, not three."""
    check_gradients_allowed("input_gradients")
    check_input(x)
    rules = tuple(dict.fromkeys(rules))
    unknown = [r for r in rules if r not in RELU_RULES]
    if unknown or not rules:
        raise ValueError(f"unknown ReLU rule(s) {unknown}; choose among {list(RELU_RULES)}" if unknown
                         else f"no ReLU rule given; choose among {list(RELU_RULES)}")
    grads = {}
    # Nothing but the mode changes (relu_rule swaps functions, not modules): eval_mode guards enough.
    with eval_mode(model), torch.enable_grad():  # explain the model as it predicts
        xg = x.detach().clone().requires_grad_(True)
        if rules == ("plain",):  # ordinary autograd: no need to intercept anything
            logits = model(xg)
        else:
            with relu_rule(rules[0]) as mode:
                logits = model(xg)
            if mode.calls == 0:
                rule = next(r for r in rules if r != "plain")
                raise ValueError(f"the {rule} rule changes how ReLUs pass gradients back, but no ReLU ran "
                                 "in this model's forward pass (see relu_rule for what is recognised)")
        score = resolve_targets(logits, target).sum()
        for i, rule in enumerate(rules):
            if rules != ("plain",):
                mode.rule = rule
            (grad,) = torch.autograd.grad(score, xg, allow_unused=True, retain_graph=i < len(rules) - 1)
            if grad is None:
                raise RuntimeError("the score does not depend on the input")
            grads[rule] = grad.detach()
    return logits.detach(), grads


def vanilla_gradient(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """d logit / d input with ordinary backprop, shape like ``x``."""
    check_gradients_allowed("vanilla_gradient")
    return input_gradient(model, x, target, "plain")[1]


def guided_backprop(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """The input gradient with every ReLU passing back only positive gradients where
    its input was positive (Springenberg et al. 2015)."""
    check_gradients_allowed("guided_backprop")
    return input_gradient(model, x, target, "guided")[1]


def deconvnet(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """The input gradient with every ReLU passing back the positive part of the
    gradient, whatever its forward input was (Zeiler & Fergus 2014)."""
    check_gradients_allowed("deconvnet")
    return input_gradient(model, x, target, "deconvnet")[1]


def project_unit(model: nn.Module, x: torch.Tensor, layer, channel: int, rule: str = "deconvnet"):
    """The strongest activation of ``channel`` at ``layer`` in each image, alone, projected back to
    the input: ``(gradient (N, C, H, W), positions (N, 2))``, the positions as (row, column) in the layer.

    Zeiler & Fergus (2014, sec. 2.1) examine one activation by setting every other activation of
    the layer to zero and running the deconvnet down from there; here that is the gradient of that
    one unit with respect to the input, with every ReLU below it passing gradients back by ``rule``
    (``"deconvnet"``, their reconstruction; ``"guided"`` or ``"plain"`` for comparison). Only the
    layers below ``layer`` run. The model comes back unchanged.
    """
    check_gradients_allowed("project_unit")
    check_input(x)
    name = layer_name(model, layer)
    with model_guard(model, eval=True), torch.enable_grad(), relu_rule(rule):
        xg = x.detach().clone().requires_grad_(True)
        with capture(model, name, detach=False, stop_early=True) as acts:
            model(xg)
        a = acts[name]
        if a.ndim != 4:
            raise ValueError(f"layer {name!r} gives shape {tuple(a.shape)}: a unit to project needs (N, K, h, w) maps")
        if not 0 <= channel < a.shape[1]:
            raise ValueError(f"channel {channel} is out of range: layer {name!r} has channels 0..{a.shape[1] - 1}")
        flat = a[:, channel].flatten(1)  # (N, h * w)
        where = flat.argmax(dim=1)
        (grad,) = torch.autograd.grad(flat.gather(1, where[:, None]).sum(), xg)
    positions = torch.stack([where // a.shape[-1], where % a.shape[-1]], dim=1)
    return grad.detach(), positions.cpu()


def smoothgrad(model: nn.Module, x: torch.Tensor, target=None, *, rule: str = "plain", noise: float = 0.15,
               samples: int = 25, batch_size: int = 25, seed: int = 0, progress: bool = True) -> torch.Tensor:
    """The input gradient averaged over ``samples`` noisy copies of each image.

    Image i's copies are ``x[i] + sigma_i * z`` with z standard normal, drawn from a
    generator seeded with ``seed`` (on the CPU, image by image, copy by copy), and
    ``sigma_i = noise * (x[i].max() - x[i].min())``: ``noise`` is a fraction of the
    image's value range, as in Smilkov et al. 2017 (who found 10–20 % works well).
    ``noise=0`` gives the plain gradient back. The target is fixed on the clean
    image (with ``None``: its top class), so every copy is asked about the same
    class. ``batch_size`` copies go through the model at once; ``progress`` shows
    a progress bar over the batches. A class index out of range is reported once
    the first batch's logits show how many classes there are.
    """
    check_gradients_allowed("smoothgrad")
    check_input(x)
    if not noise >= 0:
        raise ValueError(f"noise is a fraction of the image's value range, >= 0; got {noise}")
    if not (isinstance(samples, int) and samples >= 1):
        raise ValueError(f"samples must be a positive int, got {samples!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n = x.shape[0]
    if callable(target):
        per_copy = target  # a function of the output, applied to each batch of noisy copies
    else:
        if target is None:
            with model_guard(model, eval=True), torch.no_grad():  # the clean image fixes the class
                classes = model(x).argmax(dim=1).tolist()
        else:  # the form is checked now, the range against the logits of the first batch
            classes = class_list(target, n, n_classes=None)
        per_copy = [t for t in classes for _ in range(samples)]

    gen = torch.Generator().manual_seed(seed)
    sigma = noise * (x.flatten(1).amax(1) - x.flatten(1).amin(1))  # (N,)
    z = torch.randn((n, samples, *x.shape[1:]), generator=gen).to(x.device, x.dtype)
    noisy = (x.unsqueeze(1) + sigma.view(n, 1, 1, 1, 1) * z).flatten(0, 1)  # (N*S, C, H, W), image-major
    total = torch.zeros_like(noisy)
    starts = range(0, noisy.shape[0], batch_size)
    bar = progress_bar(len(starts), progress, f"SmoothGrad ({samples} samples)")
    try:
        for s in starts:
            sl = slice(s, s + batch_size)
            t = per_copy if callable(per_copy) else per_copy[sl]
            total[sl] = input_gradient(model, noisy[sl], t, rule)[1]
            bar.update(1)
    finally:
        bar.close()
    return total.view(n, samples, *x.shape[1:]).mean(dim=1)


def input_x_gradient(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """x times d score / d x, shape like ``x``: one forward and one backward pass."""
    check_gradients_allowed("input_x_gradient")
    return x.detach() * input_gradient(model, x, target)[1]


def _baseline(x: torch.Tensor, baseline) -> torch.Tensor:
    return torch.zeros_like(x) if baseline is None else torch.as_tensor(baseline, dtype=x.dtype,
                                                                         device=x.device).expand_as(x)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target=None, *, steps: int = 32, baseline=None,
                         batch_size: int = 32, progress: bool = True) -> torch.Tensor:
    """Integrated Gradients, shape like ``x``: (x - x') times the mean of the gradient at
    x' + α (x - x') over ``steps`` values of α, the midpoints (i + 1/2) / steps of a Riemann sum.

    ``baseline`` x' is 0 by default (for normalized inputs, the mean colour everywhere), or a
    number or tensor. The target is fixed on the image itself (``None``: its top class), so
    every point of the path is asked about the same class. ``batch_size`` points go through
    the model at once (with a progress bar); 32 steps are usually within a few per cent of
    completeness (check with :func:`completeness`), 64 within one.
    """
    check_gradients_allowed("integrated_gradients")
    check_input(x)
    for what, v in (("steps", steps), ("batch_size", batch_size)):
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"{what} must be a positive int, got {v!r}")
    if callable(target):
        raise TypeError("Integrated Gradients follows one class along the path: give a class index, a list or None")
    base = _baseline(x, baseline)
    if target is None:
        with model_guard(model, eval=True), torch.no_grad():
            target = model(x).argmax(dim=1).tolist()
    classes = class_list(target, len(x), None)
    alphas = (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
    points = [(i, a) for i in range(len(x)) for a in alphas.tolist()]
    total = torch.zeros_like(x)
    bar = progress_bar(len(points), progress, f"Integrated Gradients ({steps} steps)", "point")
    try:
        for s in range(0, len(points), batch_size):
            part = points[s:s + batch_size]
            idx = torch.tensor([i for i, _ in part])
            a = torch.tensor([a for _, a in part], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
            path = base[idx] + a * (x[idx] - base[idx])
            grad = input_gradient(model, path, [classes[i] for i in idx.tolist()])[1]
            total.index_add_(0, idx.to(x.device), grad)
            bar.update(len(part))
    finally:
        bar.close()
    return (x - base).detach() * total / steps


def completeness(model: nn.Module, x: torch.Tensor, attributions: torch.Tensor, target=None, *,
                 baseline=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sundararajan et al.'s completeness axiom, per image: ``(sum of the attributions,
    score(x) - score(baseline))``, the score being the ``target`` logit (``None``: the top class
    on ``x``). The two agree for exact Integrated Gradients; how far apart they are measures
    the Riemann sum's error."""
    check_input(x)
    base = _baseline(x, baseline)
    with model_guard(model, eval=True), torch.no_grad():
        logits = model(torch.cat([x, base]))
    n = len(x)
    classes = logits[:n].argmax(dim=1).tolist() if target is None else class_list(target, n, logits.shape[1])
    rows = torch.arange(n)
    gap = logits[rows, classes] - logits[n + rows, classes]
    return attributions.detach().flatten(1).sum(1).cpu(), gap.cpu()


def progress_bar(total: int, show: bool, desc: str, unit: str = "batch"):
    """The course's progress bar over ``total`` steps (tqdm, in a notebook its widget); ``show=False``: a
    silent one with the same methods. Shared by the methods of many passes and the leaderboard."""
    from tqdm.auto import tqdm  # imported here: most calls of the course never need it

    return tqdm(total=total, desc=desc, unit=unit, disable=not show)


def saliency_map(grad: torch.Tensor, display: str = "abs", *, percentile: float = 99.0,
                 shared: bool = False) -> torch.Tensor:
    """What is shown of a gradient ``(N, C, H, W)`` (or one ``(C, H, W)``).

    ``abs`` and ``positive`` give ``(N, H, W)`` in [0, 1]; ``signed`` gives
    ``(N, H, W)`` in [-1, 1]; ``rgb`` gives ``(N, H, W, C)`` in [0, 1] with 0.5 for
    zero. Values are divided by the ``percentile``-th percentile of the map's
    magnitudes and clipped, so that a handful of extreme pixels does not leave
    the rest black (``percentile=100`` divides by the maximum). ``shared=True``
    takes that scale over the whole batch, so maps can be compared by brightness;
    otherwise each map gets its own. A map that is zero everywhere stays zero —
    never NaN.
    """
    if display not in DISPLAYS:
        raise ValueError(f"unknown display {display!r}; choose one of {list(DISPLAYS)}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    single = grad.ndim == 3
    g = grad.unsqueeze(0) if single else grad
    if g.ndim != 4:
        raise ValueError(f"a gradient has shape (N, C, H, W) or (C, H, W), got {tuple(grad.shape)}")
    g = g.detach().float().cpu()
    if display == "abs":
        m = g.abs().amax(dim=1)
    elif display == "positive":
        m = g.clamp(min=0).amax(dim=1)
    elif display == "signed":
        m = g.sum(dim=1)
    else:
        m = g.permute(0, 2, 3, 1)
    mag = m.abs().reshape(1 if shared else m.shape[0], -1)
    scale = torch.quantile(mag, percentile / 100, dim=1) if percentile < 100 else mag.amax(dim=1)
    scale = scale.view(-1, *[1] * (m.ndim - 1))
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    m = torch.where(scale > 0, m / safe, torch.zeros_like(m))
    m = m.clamp(0, 1) if display in ("abs", "positive") else m.clamp(-1, 1)
    if display == "rgb":
        m = 0.5 + 0.5 * m
    return m[0] if single else m
