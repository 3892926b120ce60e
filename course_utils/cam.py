"""Class activation maps (lessons 05–07): *where* in the image the evidence for a class is.

* :func:`cam` — CAM (Zhou et al. 2016, "Learning Deep Features for Discriminative
  Localization", sec. 2): for a network that ends in global average pooling and
  one linear layer, M_c(x, y) = Σ_k w_k^c A_k(x, y).
* :func:`grad_cam` — Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual
  Explanations from Deep Networks via Gradient-based Localization", eq. 1–2):
  α_k^c = mean over (x, y) of ∂y^c/∂A_k(x, y), then ReLU(Σ_k α_k^c A_k), at any
  convolutional layer of any network; ``counterfactual=True`` negates the gradient
  (the paper's "counterfactual explanations"), ``rule`` changes how the ReLUs after the layer pass gradients back.
* :data:`GRADIENT_CAMS` — Grad-CAM and its gradient cousins, each a different way of
  turning the layer's maps A and their gradient G into one map: Grad-CAM++
  (Chattopadhay et al. 2018), XGrad-CAM (Fu et al. 2020), LayerCAM (Jiang et al.
  2021) and HiResCAM (Draelos & Carin 2020); ``grad_cam(..., variant=...)``.
* :class:`GradCAM` — one forward pass kept, any number of classes explained from
  it, by any of those or (where it applies) CAM: what an explorer needs when only the class changes.
* :func:`guided_grad_cam` — guided backprop × the upsampled Grad-CAM (the paper's "Guided Grad-CAM").
* :func:`upsample` and :func:`normalize_maps` — to the image's size, and to [0, 1]
  per map or on one scale shared by all maps; a flat map becomes zeros, never NaN.

Gradients are taken with ``torch.autograd.grad`` to the layer only; the forward
pass runs without recording until the layer gives its output (``capture(...,
start_graph=True)``), so no graph is recorded below the layer and Grad-CAM costs
about one forward pass (1.07× on EfficientNet-Lite0). The model comes back exactly
as it went in.

A layer is given by its dotted name (``"features.relu5"``) or as the module itself
(``model.features.relu5``); results report the name. Left out, it is the one the model's
record names (:data:`course_utils.models.MODELS`: the last block for Grad-CAM, the CAM
layer and head for CAM). The gradient methods work under ``torch.no_grad()`` (they switch
gradients on for themselves and leave the mode as it was) but not inside
``torch.inference_mode()``, where they raise one clear error; CAM takes no gradient and
works there too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .hooks import (RELU_RULES, capture, check_gradients_allowed, eval_mode, get_layer, layer_name, layer_names,
                    relu_rule)
from .targets import check_input, resolve_targets, target_classes
from .models import record_for
from .saliency import guided_backprop

__all__ = ["CAMResult", "GRADIENT_CAMS", "GradCAM", "cam", "cam_all_classes", "grad_cam", "guided_grad_cam",
           "guided_product", "normalize_maps", "upsample"]


@dataclass
class CAMResult:
    """What a CAM method returns. ``maps`` are the raw maps at the layer's resolution
    (N, h, w), before any upsampling or normalization; ``classes`` the class each
    map explains (N,), ``logits`` the model's output (N, C)."""

    maps: torch.Tensor
    classes: torch.Tensor
    logits: torch.Tensor
    layer: str

    def upsampled(self, size) -> torch.Tensor:
        """The maps, bilinearly resized to ``size`` (an int or (H, W))."""
        return upsample(self.maps, size)


def _check_spatial(name: str, act: torch.Tensor) -> None:
    if act.ndim != 4:
        raise ValueError(
            f"layer {name!r} gives shape {tuple(act.shape)}, not (N, C, H, W) feature maps: a class "
            "activation map needs a spatial (convolutional) layer, with a height and a width to point into"
        )


# --- the gradient CAMs: the layer's maps A (N, K, h, w) and the gradient G = d score / d A -> one map each,
# before the final ReLU ---------------------------------------------------------------------------------


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, and 0 where den is 0 (never inf or NaN)."""
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num))


def _weighted_maps(weights: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Each image's maps summed with its own channel weights, sum_k w_k A_k: weights (N, K),
    maps a (N, K, h, w) -> (N, h, w). (One batched matrix product: half the time of the einsum.)"""
    n, k, h, w = a.shape
    return torch.bmm(weights.unsqueeze(1), a.reshape(n, k, h * w)).view(n, h, w)


def _grad_cam_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2): each channel weighted by its gradient's spatial mean."""
    return _weighted_maps(g.mean(dim=(2, 3)), a)


def _grad_cam_pp_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 and 10): each position's positive gradient weighted by
    alpha = G^2 / (2 G^2 + sum_ab A_ab G^3). The paper's higher derivatives are powers of G because it
    explains exp(score); that factor is one positive number per image, left out here."""
    g2 = g * g
    alpha = _ratio(g2, 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g)
    return _weighted_maps((alpha * g.clamp(min=0)).sum(dim=(2, 3)), a)


def _xgrad_cam_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020, eq. 12): the gradient averaged with the channel's own maps as weights,
    sum_xy (A_xy / sum A) G_xy."""
    weights = _ratio((a * g).sum(dim=(2, 3)), a.sum(dim=(2, 3)))
    return _weighted_maps(weights, a)


def _layer_cam_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021, eq. 4-5): each position weighted by its own positive gradient."""
    return (g.clamp(min=0) * a).sum(dim=1)


def _hires_cam_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin 2020): the gradient times the maps, position by position, summed over
    channels (no averaging, so the map shows exactly what the score's gradient reads)."""
    return (g * a).sum(dim=1)


#: Grad-CAM and its gradient cousins: ``(maps A, gradient G) -> map`` (before the ReLU), by name.
GRADIENT_CAMS = {
    "Grad-CAM": _grad_cam_map,
    "Grad-CAM++": _grad_cam_pp_map,
    "XGrad-CAM": _xgrad_cam_map,
    "LayerCAM": _layer_cam_map,
    "HiResCAM": _hires_cam_map,
}


def _cam_head(model: nn.Module, a: torch.Tensor, logits: torch.Tensor, layer: str, fc: str) -> nn.Linear:
    """The linear head ``fc``, after checking on this very batch that CAM applies:
    the logits must be ``fc`` applied to the spatial means of ``a`` (the maps of ``layer``)."""
    head = get_layer(model, fc)
    if not isinstance(head, nn.Linear):
        raise ValueError(f"CAM needs the final layer to be nn.Linear; {fc!r} is {type(head).__name__}")
    if a.shape[1] != head.in_features:
        raise ValueError(
            f"CAM needs {layer!r} to feed {fc!r} through global average pooling, but it has "
            f"{a.shape[1]} channels and {fc!r} takes {head.in_features} inputs; use Grad-CAM for this network")
    with torch.no_grad():
        if not torch.allclose(F.linear(a.mean(dim=(2, 3)), head.weight, head.bias), logits, rtol=1e-3, atol=1e-4):
            raise ValueError(
                f"CAM needs the logits to be {fc!r}(spatial mean of {layer!r}); in this network something else "
                "happens in between, so CAM does not apply: use Grad-CAM")
    return head


def _cam_parts(model: nn.Module, x: torch.Tensor, layer: str, fc: str):
    """(logits, the layer's maps, the linear head), from one forward pass.
    ``layer`` and ``fc`` are dotted names, checked by the caller."""
    check_input(x)
    # CAM changes nothing in the model but the mode (capture removes its own hook), so
    # eval_mode guards enough, at a third of model_guard's cost.
    with eval_mode(model), torch.no_grad():
        with capture(model, layer) as acts:
            logits = model(x)
    if layer not in acts:
        raise RuntimeError(f"layer {layer!r} did not run during the forward pass")
    a = acts[layer]
    _check_spatial(layer, a)
    return logits, a, _cam_head(model, a, logits, layer, fc)


def _cam_maps(head: nn.Linear, a: torch.Tensor, logits: torch.Tensor, target, layer: str) -> CAMResult:
    """M_c = Σ_k w_k^c A_k for each image's class (the target checked against the logits)."""
    if callable(target):
        raise TypeError("CAM explains one class per image: give a class index, a list of them or None")
    classes = target_classes(logits, target)
    with torch.no_grad():
        maps = _weighted_maps(head.weight[classes.to(a.device)], a)  # w_k^c for each image's class
    return CAMResult(maps.cpu(), classes, logits.cpu(), layer)


def _defaults(model: nn.Module, layer, fc=None, cam: bool = False) -> tuple[str, str | None]:
    """The layer (and head) as names; those left out come from the model's record."""
    if layer is None or (cam and fc is None):
        record = record_for(model)
        if cam and record.cam_layer is None:
            raise ValueError(f"CAM does not apply to {record.name}: {record.about}; use Grad-CAM")
        layer = (record.cam_layer if cam else record.gradcam_layer) if layer is None else layer
        fc = record.fc if fc is None else fc
    return layer_name(model, layer), (layer_name(model, fc) if cam else None)


def cam(model: nn.Module, x: torch.Tensor, target=None, layer: str | nn.Module | None = None,
        fc: str | nn.Module | None = None) -> CAMResult:
    """CAM: the class's weights in the final linear layer ``fc`` times the maps of
    ``layer``, which must feed ``fc`` through global average pooling only.

    That architecture is checked on the batch itself (the logits must equal ``fc``
    applied to the spatial means of the maps); a network built otherwise (VGG's
    fully connected layers, say) gets a clear error pointing to Grad-CAM. ``target``
    is a class index, a list (one per image) or ``None`` (each image's top class).
    ``layer`` and ``fc`` are dotted names or modules of the model (by default the
    record's CAM layer and head). No gradient is taken, so CAM also works inside
    ``torch.inference_mode()``.
    """
    layer, fc = _defaults(model, layer, fc, cam=True)  # errors before the forward pass
    logits, a, head = _cam_parts(model, x, layer, fc)
    return _cam_maps(head, a, logits, target, layer)


def cam_all_classes(model: nn.Module, x: torch.Tensor, layer: str | nn.Module | None = None,
                    fc: str | nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass, every class's CAM: ``(logits (N, C), maps (N, C, h, w))``.
    Layers as for :func:`cam`; works inside ``torch.inference_mode()`` too."""
    layer, fc = _defaults(model, layer, fc, cam=True)
    logits, a, head = _cam_parts(model, x, layer, fc)
    with torch.no_grad():
        maps = torch.einsum("ck,nkhw->nchw", head.weight, a)
    return logits.cpu(), maps.cpu()


@contextlib.contextmanager
def _relu_calls_at_outputs(model: nn.Module, layers: list[str], mode):
    """A list that gets ``(mode.calls, layer)`` each time one of ``layers`` gives its
    output: how many ReLUs had run by then. ReLUs after the last entry ran after every layer."""
    outputs: list[tuple[int, str]] = []

    def recorder(name):
        return lambda module, inputs, output: outputs.append((mode.calls, name))

    handles = [get_layer(model, name).register_forward_hook(recorder(name)) for name in layers]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()


class GradCAM:
    """One forward pass, kept; Grad-CAM for any class and any of ``layers`` from it.

    >>> g = GradCAM(model, x, ["layer3", "layer4"])  # the forward pass runs here
    >>> g.map(281, "layer4").maps                   # a backward pass from the logits to layer4 only
    >>> g.cam(281, "layer4").maps                   # CAM: the kept maps times fc's weights, no pass at all

    ``layers`` is one layer or a list, each a dotted name or a module of the model
    (``self.layers`` holds the names; :meth:`gradients` works at any of them, :meth:`map`
    and :meth:`cam` need spatial maps). ``rule`` is how the ReLUs *after* the layers
    pass gradients back (``"plain"``, ``"guided"``, ``"deconvnet"``); with a rule
    other than plain, some ReLU must run after the last of the layers, or the rule
    would change nothing and a ``ValueError`` says so.

    The model is guarded during the forward pass and handed back at once (no hook
    stays); what is kept is the autograd graph from the layers to the logits,
    which is all that later classes need. With ``to_input=True`` the graph reaches
    back to the input, and every ReLU's rule can be chosen when a gradient is taken
    (:func:`~course_utils.relu_rules.relu_rule`), so :meth:`input_gradient` gives the
    vanilla gradient, guided backprop and the deconvnet with no pass of their own.
    Use it for one image batch, then drop it. Works under ``torch.no_grad()``, not
    inside ``torch.inference_mode()`` (except :meth:`cam`, which takes no gradient).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, layers: str | nn.Module | Sequence, rule: str = "plain",
                 *, to_input: bool = False):
        check_gradients_allowed("GradCAM")
        check_input(x)
        if rule not in RELU_RULES:
            raise ValueError(f"unknown ReLU rule {rule!r}; choose one of {list(RELU_RULES)}")
        self.layers = layer_names(model, layers)
        if not self.layers:
            raise ValueError("GradCAM needs at least one layer")
        # The graph is recorded from the layers up only (from the input up with to_input). Nothing
        # but the mode changes (capture removes its hooks, relu_rule swaps functions): eval_mode guards enough.
        with eval_mode(model), torch.set_grad_enabled(to_input):
            xg = x.detach().clone().requires_grad_(True) if to_input else x.detach()
            with capture(model, self.layers, detach=False, start_graph=not to_input) as acts:
                if rule == "plain" and not to_input:  # ordinary autograd: nothing to intercept
                    logits = model(xg)
                else:
                    with relu_rule(rule) as mode, _relu_calls_at_outputs(model, self.layers, mode) as outputs:
                        logits = model(xg)
        missing = [n for n in self.layers if n not in acts]
        if missing:
            raise RuntimeError(f"layer(s) {missing} did not run during the forward pass")
        if rule != "plain":
            calls_then, last = outputs[-1]  # the last captured layer to give its output
            if mode.calls == calls_then:
                raise ValueError(
                    f"rule={rule!r} changes how the ReLUs after the layer pass gradients back, but no ReLU "
                    f"runs after layer {last!r} in this model's forward pass, so the rule would change nothing: "
                    "choose an earlier layer (one with ReLUs after it), or rule='plain'")
        self.acts = acts
        self._model = model
        self._logits = logits
        self.logits = logits.detach().cpu()
        self._input = (xg, mode) if to_input else None

    def input_gradient(self, target=None, rule: str = "plain") -> torch.Tensor:
        """d score / d input (the score: each image's ``target`` logit) from the kept pass, which must
        have been made with ``to_input=True``; every ReLU passes gradients back by ``rule``."""
        check_gradients_allowed("GradCAM.input_gradient")
        if self._input is None:
            raise ValueError("this pass was kept without the input: make it with GradCAM(..., to_input=True)")
        xg, mode = self._input
        if rule != "plain" and mode.calls == 0:
            raise ValueError(f"the {rule} rule changes how ReLUs pass gradients back, but no ReLU ran "
                             "in this model's forward pass (see relu_rule for what is recognised)")
        before, mode.rule = mode.rule, rule  # checks the name
        try:
            with torch.enable_grad():
                score = resolve_targets(self._logits, target)
                (grad,) = torch.autograd.grad(score.sum(), xg, retain_graph=True, allow_unused=True)
        finally:
            mode.rule = before
        if grad is None:
            raise RuntimeError("the score does not depend on the input")
        return grad.detach()

    def gradients(self, target=None, layer=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(∂ score / ∂ the layer's maps, the classes): the score is each image's target logit."""
        check_gradients_allowed("GradCAM.gradients")
        layer = self._layer(layer)
        with torch.enable_grad():  # also under no_grad: the score must join the kept graph
            score = resolve_targets(self._logits, target)
            grad = None
            if score.requires_grad:  # False when no captured layer is upstream of the output
                (grad,) = torch.autograd.grad(score.sum(), self.acts[layer], retain_graph=True, allow_unused=True)
        if grad is None:
            raise RuntimeError(f"the score does not depend on layer {layer!r}: it is not on the path "
                               "from the input to the output")
        return grad.detach(), target_classes(self.logits, target)

    def map(self, target=None, layer=None, *, counterfactual: bool = False,
            relu: bool = True, variant: str = "Grad-CAM") -> CAMResult:
        """Grad-CAM of ``target`` at ``layer`` (a name or module; the first of ``layers`` by default),
        or one of its cousins: ``variant`` is a name in :data:`GRADIENT_CAMS`.

        ``counterfactual=True`` uses the negated gradient: the regions whose
        presence lowers the score. ``relu=False`` keeps the negative part of
        the weighted sum (the paper's ReLU drops it).
        """
        check_gradients_allowed("GradCAM.map")
        if variant not in GRADIENT_CAMS:
            raise ValueError(f"unknown gradient CAM {variant!r}; choose one of {list(GRADIENT_CAMS)}")
        layer = self._layer(layer)
        _check_spatial(layer, self.acts[layer])
        grad, classes = self.gradients(target, layer)
        if counterfactual:
            grad = -grad
        maps = GRADIENT_CAMS[variant](self.acts[layer].detach(), grad)
        if relu:
            maps = maps.clamp(min=0)
        return CAMResult(maps.cpu(), classes, self.logits, layer)

    def cam(self, target=None, layer=None, fc: str | nn.Module | None = None) -> CAMResult:
        """CAM of ``target`` at ``layer`` from the kept forward pass: no pass of its own.
        The architecture is checked as :func:`cam` does (``fc`` by default the record's
        head). No gradient is taken, so this works inside ``torch.inference_mode()`` too."""
        layer = self._layer(layer)
        _check_spatial(layer, self.acts[layer])
        fc = _defaults(self._model, layer, fc, cam=True)[1]
        a = self.acts[layer].detach()
        logits = self._logits.detach()
        return _cam_maps(_cam_head(self._model, a, logits, layer, fc), a, logits, target, layer)

    def _layer(self, layer) -> str:
        """The name of a captured layer: ``None`` is the first, a module is looked up by name."""
        if layer is None:
            return self.layers[0]
        layer = layer_name(self._model, layer)
        if layer not in self.acts:
            raise ValueError(f"layer {layer!r} was not captured; this GradCAM holds {self.layers}")
        return layer


def grad_cam(model: nn.Module, x: torch.Tensor, target=None, layer: str | nn.Module | None = None, *,
             counterfactual: bool = False, relu: bool = True, rule: str = "plain",
             variant: str = "Grad-CAM") -> CAMResult:
    """Grad-CAM of ``target`` at ``layer``: one forward pass and a backward pass to the layer only.

    ``target``: a class index, a list (one per image), ``None`` (each image's top
    class) or a function of the logits. ``layer``: a dotted name or a module of the
    model (the result's ``.layer`` is the name; by default the record's last block). ``rule`` is how the ReLUs *after*
    the layer pass gradients back (``"plain"``, ``"guided"``, ``"deconvnet"``; lesson
    07); a rule other than plain where no ReLU runs after the layer is a ``ValueError``.
    ``variant``: Grad-CAM or one of its cousins (:data:`GRADIENT_CAMS`), from the same passes.
    Works under ``torch.no_grad()``, not inside ``torch.inference_mode()``.
    """
    check_gradients_allowed("grad_cam")
    if variant not in GRADIENT_CAMS:  # before the forward pass
        raise ValueError(f"unknown gradient CAM {variant!r}; choose one of {list(GRADIENT_CAMS)}")
    layer = _defaults(model, layer)[0]
    return GradCAM(model, x, layer, rule=rule).map(target, counterfactual=counterfactual, relu=relu, variant=variant)


def guided_grad_cam(model: nn.Module, x: torch.Tensor, target=None,
                    layer: str | nn.Module | None = None) -> torch.Tensor:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop (N, C, H, W)
    times the Grad-CAM map upsampled to the input and scaled to [0, 1] per image.
    ``layer`` as for :func:`grad_cam`."""
    check_gradients_allowed("guided_grad_cam")
    layer = _defaults(model, layer)[0]
    result = GradCAM(model, x, layer).map(target)
    targets = result.classes.tolist() if not callable(target) else target
    return guided_product(guided_backprop(model, x, targets), result.maps)


def guided_product(guided: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Guided Grad-CAM's last step, for gradients and maps already computed: guided
    backprop (N, C, H, W) times the Grad-CAM maps (N, h, w) upsampled to (H, W) and
    scaled to [0, 1] per image."""
    if guided.ndim != 4 or maps.ndim != 3 or len(guided) != len(maps):
        raise ValueError(f"expected guided (N, C, H, W) and maps (N, h, w) for the same N, got "
                         f"{tuple(guided.shape)} and {tuple(maps.shape)}")
    heat = normalize_maps(upsample(maps, guided.shape[-2:])).to(guided.device)
    return guided * heat.unsqueeze(1)


def upsample(maps: torch.Tensor, size) -> torch.Tensor:
    """Maps (N, h, w) or (h, w), bilinearly resized to ``size`` (int or (H, W))."""
    single = maps.ndim == 2
    m = maps[None] if single else maps
    if m.ndim != 3:
        raise ValueError(f"maps have shape (N, h, w) or (h, w), got {tuple(maps.shape)}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    out = F.interpolate(m[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return out[0] if single else out


def normalize_maps(maps: torch.Tensor, shared: bool = False) -> torch.Tensor:
    """Maps to [0, 1]: divided by their maximum after the minimum is subtracted,
    each map on its own or (``shared=True``) all on one scale so that magnitudes
    compare. A flat map (zero range) becomes all zeros, never NaN."""
    single = maps.ndim == 2
    m = (maps[None] if single else maps).float()
    dims = tuple(range(m.ndim)) if shared else tuple(range(1, m.ndim))
    lo = m.amin(dim=dims, keepdim=True)
    span = m.amax(dim=dims, keepdim=True) - lo
    out = torch.where(span > 0, (m - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(m))
    return out[0] if single else out
