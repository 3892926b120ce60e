"""Every explanation method of the course in one registry, :data:`METHODS`.

    >>> ex = Explainer(model, x)                     # nothing runs yet
    >>> ex("Grad-CAM", 3, "features.relu4")          # (N, h, w): the forward pass runs once, here, and is kept
    >>> ex("CAM", 3)                                 # from the kept pass: no pass of its own
    >>> ex("guided backprop", 3)                     # (N, C, H, W): kept too, and reused by Guided Grad-CAM
    >>> explain(model, x, "SmoothGrad", samples=8)   # one importance map per image (lesson 09)

Each :class:`Method` says what it needs (a layer or not, the kept forward pass or
passes of its own, many passes or a few) and what it gives: ``"gradient"``, shaped like the input
(N, C, H, W), or ``"map"``, one map per image (N, h, w): at its layer, or at the input's size
for a method without one (Occlusion). Evaluation,
the explorers, the compare dashboard and the benchmark iterate over the registry;
the names shown on screen belong to them. Adding a method is one entry here and
its function.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .cam import GRADIENT_CAMS, GradCAM, cam, guided_product
from .gradient_free import ablation_cam, eigen_cam, occlusion, score_cam
from .hooks import layer_names
from .targets import class_list
from .models import record_for
from .saliency import input_gradients, integrated_gradients, smoothgrad

__all__ = ["METHODS", "Explainer", "Method", "explain", "method_layer"]


@dataclass(frozen=True)
class Method:
    """One explanation method: ``compute(explainer, target, layer, **options)`` gives its raw output."""

    compute: Callable[..., torch.Tensor]
    output: str  # "gradient": (N, C, H, W) at the input; "map": (N, h, w) at the layer
    layer: str | None = None  # the record's attribute naming its default layer; None: it explains the input
    kept: bool = False  # it makes (or reads) the Explainer's kept forward pass, never a pass of its own
    paper: str = ""
    rule: str | None = None  # the ReLU rule of the input gradient it reads (Explainer.gradient), if any
    many_passes: bool = False  # it runs the model dozens of times or more (options batch_size and progress)
    lesson: int | None = None  # the lesson that teaches it: explorers of earlier lessons leave later methods out
    attribution: bool = False  # a "gradient" output that is an attribution (the input times a gradient), not a gradient


class Explainer:
    """One model and one batch ``x``: the raw output of any method in :data:`METHODS`.

    What methods share is computed once and kept: one forward pass holding
    ``layers`` (default: every block of the model's record), from which CAM and
    Grad-CAM are read at any of those layers, and each input gradient per ReLU
    rule and target; the gradients of several rules asked together
    (:meth:`gradients`, :meth:`prefetch`) share one forward pass. With
    ``to_input=True`` the kept pass reaches back to the input and every input
    gradient comes from it too, one backward pass each and no forward pass: for a
    caller that shows input gradients beside CAM or Grad-CAM (the kept pass then
    records the whole network: 1.5 forward passes on EfficientNet-Lite0 against 1.07
    without, which a caller of Grad-CAM alone need not pay). Give a new
    ``Explainer`` for a new image batch. The model is handed back unchanged after
    every call.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, layers=None, *, to_input: bool = False):
        self.model, self.x, self.to_input = model, x, to_input
        self.layers = list(record_for(model).blocks) if layers is None else layer_names(model, layers)
        self.logits: torch.Tensor | None = None  # (N, C) on the CPU, from the first pass that ran
        self._kept: GradCAM | None = None
        self._gradients: dict = {}

    @property
    def kept(self) -> GradCAM:
        """The kept forward pass over ``layers`` (run on first use)."""
        if self._kept is None:
            self._kept = GradCAM(self.model, self.x, self.layers, to_input=self.to_input)
            self.logits = self._kept.logits if self.logits is None else self.logits
        return self._kept

    def gradient(self, rule: str, target=None) -> torch.Tensor:
        """d score / d input with the ReLUs' ``rule``, kept per rule and per image's class
        (``None`` is each image's top class; a function of the logits is not kept)."""
        return self.gradients((rule,), target)[rule]

    def gradients(self, rules, target=None) -> dict[str, torch.Tensor]:
        """:meth:`gradient` for several ``rules``: those not kept yet cost one backward pass each,
        from the kept forward pass when it reaches the input (``to_input``) and has run, else
        from one new forward pass (:func:`~course_utils.saliency.input_gradients`)."""
        rules = tuple(dict.fromkeys(rules))
        missing = [r for r in rules if self._key(r, target) not in self._gradients]
        if not missing:
            return {r: self._gradients[self._key(r, target)] for r in rules}
        if self._kept is not None and self.to_input:
            grads = {r: self._kept.input_gradient(target, r) for r in missing}
        else:
            logits, grads = input_gradients(self.model, self.x, target, missing)
            self.logits = logits.cpu() if self.logits is None else self.logits
        if self._key(rules[0], target) is None:  # a target the cache cannot name: nothing kept
            return grads
        self._gradients.update({self._key(r, target): g for r, g in grads.items()})
        return {r: self._gradients[self._key(r, target)] for r in rules}

    def prefetch(self, methods, target=None) -> None:
        """Compute now, with at most one forward pass, the input gradients the ``methods`` (names) will read."""
        rules = [_method(m).rule for m in methods if _method(m).rule is not None]
        if rules:
            self.gradients(rules, target)

    def forget(self) -> None:
        """Drop the kept input gradients (the kept forward pass stays): the next ask computes them again."""
        self._gradients.clear()

    def _key(self, rule: str, target) -> tuple | None:
        if callable(target) or (target is None and self.logits is None):
            return None
        classes = self.logits.argmax(dim=1).tolist() if target is None else class_list(target, len(self.x), None)
        return rule, tuple(classes)

    def __call__(self, method: str, target=None, layer=None, **options) -> torch.Tensor:
        """The raw output of ``method`` for ``target`` (class index, list, None = top class)
        at ``layer`` (by default the record's for this method)."""
        compute = _method(method).compute
        names, any_name = _option_names(compute)
        unknown = sorted(set(options) - names)
        if unknown and not any_name:
            raise TypeError(f"{method} takes no option {', '.join(unknown)}")
        return compute(self, target, method_layer(self.model, method, layer), **options)


@functools.cache
def _option_names(compute) -> tuple[frozenset, bool]:
    """The keyword names ``compute`` takes, and whether it takes any (``**options``): read once per method."""
    params = inspect.signature(compute).parameters
    return frozenset(params), any(p.kind is p.VAR_KEYWORD for p in params.values())


def method_layer(model: nn.Module, method: str, layer=None) -> str | None:
    """The layer ``method`` looks at: ``layer`` (a name or module), or the model record's
    default for it; None for a method that explains the input."""
    m = _method(method)
    if m.layer is None:
        if layer is not None:
            raise ValueError(f"{method} explains the input, at no layer; leave layer out")
        return None
    if layer is not None:
        return layer_names(model, layer)[0]
    record = record_for(model)
    if getattr(record, m.layer) is None:
        raise ValueError(f"{method} does not apply to {record.name}: {record.about}")
    return getattr(record, m.layer)


def _cam(e: Explainer, target, layer):
    if e._kept is None:  # no kept pass yet: CAM needs no graph, so a plain forward pass is cheaper
        return cam(e.model, e.x, target, layer).maps
    return e.kept.cam(target, layer).maps


def _grad_cam(e: Explainer, target, layer, *, rule: str = "plain", counterfactual: bool = False, relu: bool = True):
    kept = e.kept if rule == "plain" else GradCAM(e.model, e.x, layer, rule=rule)  # other rules: a pass of their own
    return kept.map(target, layer, counterfactual=counterfactual, relu=relu).maps


def _gradient_cam(variant: str, paper: str) -> Method:  # a cousin of Grad-CAM: the same kept pass, other weights
    def compute(e: Explainer, target, layer, *, relu: bool = True):
        return e.kept.map(target, layer, relu=relu, variant=variant).maps
    return Method(compute, "map", "gradcam_layer", kept=True, paper=paper, lesson=11)


def _kept_maps(e: Explainer, layer: str):
    """(logits, the layer's maps) from the kept forward pass when it holds the layer, else (None, None)."""
    if e._kept is not None and layer in e._kept.acts:
        return e._kept.logits, e._kept.acts[layer].detach()
    return None, None


def _score_cam(e: Explainer, target, layer, **options):
    logits, acts = _kept_maps(e, layer)
    return score_cam(e.model, e.x, target, layer, acts=acts, logits=logits, **options)


def _eigen_cam(e: Explainer, target, layer):
    return eigen_cam(e.model, e.x, target, layer, acts=_kept_maps(e, layer)[1])


def _input_x_gradient(e: Explainer, target, _):
    return e.x.detach() * e.gradient("plain", target)


def _by_rule(rule: str, paper: str) -> Method:  # the input gradient with the ReLUs' rule (lesson 04)
    return Method(lambda e, t, _: e.gradient(rule, t), "gradient", paper=paper, rule=rule, lesson=4)


#: The methods of lessons 04–07 and 11, by name.
METHODS: dict[str, Method] = {
    "vanilla gradient": _by_rule("plain", "Simonyan et al. 2014"),
    "guided backprop": _by_rule("guided", "Springenberg et al. 2015"),
    "deconvnet": _by_rule("deconvnet", "Zeiler & Fergus 2014"),
    "SmoothGrad": Method(lambda e, t, _, **kw: smoothgrad(e.model, e.x, t, **kw), "gradient",
                         paper="Smilkov et al. 2017", many_passes=True, lesson=4),
    "CAM": Method(_cam, "map", "cam_layer", kept=True, paper="Zhou et al. 2016", lesson=5),
    "Grad-CAM": Method(_grad_cam, "map", "gradcam_layer", kept=True, paper="Selvaraju et al. 2017", lesson=6),
    "Guided Grad-CAM": Method(lambda e, t, layer: guided_product(e.gradient("guided", t), _grad_cam(e, t, layer)),
                              "gradient", "gradcam_layer", paper="Selvaraju et al. 2017", rule="guided", lesson=7),
    # lesson 11: the rest of the CAM family and of attribution
    "Grad-CAM++": _gradient_cam("Grad-CAM++", "Chattopadhay et al. 2018"),
    "XGrad-CAM": _gradient_cam("XGrad-CAM", "Fu et al. 2020"),
    "LayerCAM": _gradient_cam("LayerCAM", "Jiang et al. 2021"),
    "HiResCAM": _gradient_cam("HiResCAM", "Draelos & Carin 2020"),
    "Score-CAM": Method(_score_cam, "map", "gradcam_layer", paper="Wang et al. 2020", many_passes=True,
                        lesson=11),
    "Ablation-CAM": Method(lambda e, t, layer, **kw: ablation_cam(e.model, e.x, t, layer, **kw), "map",
                           "gradcam_layer", paper="Desai & Ramaswamy 2020", many_passes=True, lesson=11),
    "Eigen-CAM": Method(_eigen_cam, "map", "gradcam_layer", paper="Muhammad & Yeasin 2020", lesson=11),
    "Input × Gradient": Method(_input_x_gradient, "gradient", paper="Shrikumar et al. 2016", rule="plain", lesson=11,
                               attribution=True),
    "Integrated Gradients": Method(lambda e, t, _, **kw: integrated_gradients(e.model, e.x, t, **kw), "gradient",
                                   paper="Sundararajan et al. 2017", many_passes=True, lesson=11, attribution=True),
    "Occlusion": Method(lambda e, t, _, **kw: occlusion(e.model, e.x, t, **kw), "map",  # at the input's size
                        paper="Zeiler & Fergus 2014", many_passes=True, lesson=11),
}
assert set(GRADIENT_CAMS) <= set(METHODS)


def _method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {list(METHODS)}")
    return METHODS[name]


def explain(model: nn.Module, x: torch.Tensor, method: str, target=None, *, layer=None, **options) -> torch.Tensor:
    """One importance map per image, (N, h, w), larger = more important, raw (not
    normalized): for the gradient methods (and Guided Grad-CAM) the largest |gradient|
    over the colour channels at each pixel; for CAM and Grad-CAM the map at its
    layer's resolution (``layer``: by default the model record's). ``target``: class
    index, list, or None (each image's top class); ``options`` go to the method
    (SmoothGrad's ``samples``, Grad-CAM's ``rule``, ...)."""
    where = method_layer(model, method, layer)
    out = Explainer(model, x, [] if where is None else [where])(method, target, where, **options)
    return out.abs().amax(dim=1).cpu() if METHODS[method].output == "gradient" else out.cpu()
