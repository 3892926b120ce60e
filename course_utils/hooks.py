"""The safe core: find layers by name, capture what flows through them, and
always hand the caller's model back exactly as it came in.

Three pieces, each small enough to read in one go:

* :func:`get_layer` / :func:`list_layers` / :func:`layer_name` — dotted names
  (``"features.conv4"``, ``"layer4.2.conv3"``) with helpful errors; wherever a layer
  is asked for, the module itself (``model.features.relu5``) will do too.
* :func:`model_guard` — a context manager that snapshots a model's state
  (training flags, ``requires_grad``, ``inplace`` flags, hooks, child modules)
  and restores it on the way out, also when an exception is raised half way.
* :func:`capture` — forward hooks that keep the outputs of named layers (with their
  graph, for gradients taken straight down to them: :class:`course_utils.cam.GradCAM`).
  :func:`check_gradients_allowed` is the one check every gradient method makes
  first: no gradient can be had inside ``torch.inference_mode()``.

Lesson 04's ReLU backward rules (:data:`RELU_RULES`, :func:`relu_rule`) live in
:mod:`course_utils.relu_rules` and are re-exported here; what a target means (a class
index, a list, ``None``, a function of the logits) is :mod:`course_utils.targets`.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .relu_rules import RELU_RULES, relu_rule

__all__ = ["LayerNotFoundError", "get_layer", "layer_name", "layer_names", "list_layers", "model_guard", "eval_mode",
           "capture", "check_gradients_allowed", "hook_counts", "RELU_RULES", "relu_rule"]


# --- layer lookup ---------------------------------------------------------------


class LayerNotFoundError(KeyError):
    """A layer name that is not in the model. The message lists close matches."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


_KINDS: dict[str, tuple[type, ...]] = {
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "relu": (nn.ReLU, nn.ReLU6),  # a ReLU6 is a ReLU clipped at 6
    "linear": (nn.Linear,),
    "pool": (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d),
    "norm": (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm),
}


def list_layers(model: nn.Module, kind: str | None = None) -> list[str]:
    """Dotted names of the model's sub-modules, in definition order.

    ``kind`` filters by type: ``"conv"``, ``"relu"`` (ReLU and ReLU6), ``"linear"``, ``"pool"`` or
    ``"norm"``; ``None`` lists every sub-module (containers included).
    """
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"unknown layer kind {kind!r}; choose one of {sorted(_KINDS)} or None")
    types = _KINDS.get(kind, (nn.Module,))
    return [name for name, m in model.named_modules() if name and isinstance(m, types)]


def _describe(value) -> str:
    """``None``, or the type and a short repr: for error messages about a wrong argument."""
    if value is None:
        return "None"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def layer_name(model: nn.Module, layer: str | nn.Module) -> str:
    """The dotted name of ``layer``, given by its name (checked) or as a module of ``model``.

    >>> from course_utils.coursenet import CourseNet
    >>> model = CourseNet()
    >>> layer_name(model, model.features.relu5)
    'features.relu5'

    A container (``model.features``) is itself, not its first child. A module that is
    not part of the model, or the model itself, raises :class:`LayerNotFoundError`;
    anything but a string or a module raises ``TypeError``.
    """
    if not isinstance(layer, nn.Module):
        get_layer(model, layer)  # the checks of a name: type, then existence
        return layer
    for name, module in model.named_modules():
        if module is layer:
            if not name:
                raise LayerNotFoundError(
                    "the model itself is not one of its layers: give one of its sub-modules "
                    "or a dotted name such as 'features.conv4' (list_layers(model) shows every name)")
            return name
    raise LayerNotFoundError(
        f"the {type(layer).__name__} given as a layer is not part of this model ({type(model).__name__}): "
        "give one of its own modules (model.features.relu5, say) or a dotted name "
        "(list_layers(model) shows every name)")


def layer_names(model: nn.Module, layers) -> list[str]:
    """One layer or several (a list or tuple), each a dotted name or a module of ``model``,
    as a list of dotted names — checked, so that an error comes before any work."""
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    elif not isinstance(layers, (list, tuple)):
        raise TypeError("layers are a dotted name such as 'features.relu5', a module of the model, "
                        f"or a list of these, got {_describe(layers)}")
    return [layer_name(model, layer) for layer in layers]


def get_layer(model: nn.Module, name: str | nn.Module) -> nn.Module:
    """The sub-module called ``name`` (dotted, as in ``model.named_modules()``).

    A module passed in is returned as is, after checking it belongs to the model
    (see :func:`layer_name`). An unknown name raises :class:`LayerNotFoundError`
    listing the closest names.
    """
    if isinstance(name, nn.Module):
        layer_name(model, name)  # raises if the module is not one of the model's layers
        return name
    if not isinstance(name, str):
        raise TypeError("a layer is named by a string such as 'features.conv4' or given as a module "
                        f"of the model, got {_describe(name)}")
    if name:
        try:  # the quick way: follow the dotted path (no walk over every module)
            return model.get_submodule(name)
        except AttributeError:
            pass
    modules = dict(model.named_modules())
    close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    convs = list_layers(model, "conv")
    more = ", ..." if len(convs) > 12 else ""
    conv_hint = f" Its conv layers are: {', '.join(convs[:12])}{more}." if convs else ""
    raise LayerNotFoundError(f"{type(model).__name__} has no layer named {name!r}.{hint}{conv_hint}"
                             " (list_layers(model) shows every name.)")


# --- the guard ------------------------------------------------------------------

_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
               "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")


def hook_counts(model: nn.Module) -> dict[str, int]:
    """How many hooks of each kind sit on the model's modules (all zero for a clean model)."""
    return {d.strip("_"): sum(len(getattr(m, d, {})) for m in model.modules()) for d in _HOOK_DICTS}


def _modules(model: nn.Module) -> list[nn.Module]:
    """The model and every sub-module once (a shared one too), in definition order, walked
    straight through the ``_modules`` dicts: nn.Module's own attribute lookup would cost more
    than a small network's forward pass on a model of a few hundred modules."""
    modules, seen = [model], {id(model)}
    for m in modules:
        for kid in m.__dict__["_modules"].values():
            if kid is not None and id(kid) not in seen:
                seen.add(id(kid))
                modules.append(kid)
    return modules


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block, and every module's ``training`` flag handed back on exit
    (normal or by exception). Enough of a guard for code that changes nothing else: a
    forward pass under ``torch.no_grad()`` whose hooks :func:`capture` removes (CAM)."""
    modules = _modules(model)
    training = [m.__dict__["training"] for m in modules]
    if any(training):
        model.eval()
    try:
        yield model
    finally:
        for m, flag in zip(modules, training):
            if m.__dict__["training"] != flag:
                m.training = flag


@contextlib.contextmanager
def model_guard(model: nn.Module, eval: bool = False) -> Iterator[nn.Module]:
    """Hand the model back exactly as it came in, whatever happens inside; ``eval=True`` puts it
    in eval mode for the block (``model.eval()``, skipped when it already is).

    Restored on exit (normal or by exception): every module's ``training``
    flag, every parameter's ``requires_grad``, every ``inplace`` flag, the
    child modules (nothing replaced), and the hooks (any hook added inside
    the block is removed; hooks the caller had stay). Exceptions propagate.
    A hook is known as added inside by its handle's id: torch numbers handles in
    the order they are made, so those made in the block number from the count at entry.
    """
    first_new_hook = RemovableHandle.next_id  # every hook added inside the block gets an id from here on
    modules = _modules(model)
    states = [m.__dict__ for m in modules]
    children = [dict(d["_modules"]) for d in states]
    training = [d["training"] for d in states]
    inplace = [(m, d["inplace"]) for m, d in zip(modules, states) if isinstance(d.get("inplace"), bool)]
    params = {id(p): p for d in states for p in d["_parameters"].values() if p is not None}  # shared once
    requires_grad = [(p, p.requires_grad) for p in params.values()]
    try:
        if eval and any(training):
            model.eval()
        yield model
    finally:
        for d in states:
            for h in _HOOK_DICTS:
                if table := d.get(h):
                    for k in [k for k in table if k >= first_new_hook]:
                        del table[k]
        for d, kids in zip(states, children):
            if d["_modules"] != kids:
                d["_modules"].clear()
                d["_modules"].update(kids)
        for m, d, flag in zip(modules, states, training):
            if d["training"] != flag:  # (setting a module attribute is slow: only what changed)
                m.training = flag
        for m, flag in inplace:
            if m.__dict__.get("inplace") is not flag:
                m.inplace = flag
        for p, flag in requires_grad:
            if p.requires_grad != flag:
                p.requires_grad_(flag)


# --- capturing activations and gradients ----------------------------------------


def check_gradients_allowed(what: str) -> None:
    """Raise one clear error when a gradient cannot be had: inside ``torch.inference_mode()``.

    Every gradient method calls this first, with its own name as ``what``. (Under
    ``torch.no_grad()`` the methods switch gradients back on for themselves, so
    that is fine; inference mode cannot be switched off from inside.)
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError(f"{what} cannot take gradients inside torch.inference_mode(): "
                           "run it outside that block (torch.no_grad() is fine)")


class _Enough(Exception):
    """Raised by capture's hooks to stop the forward pass once every layer has run."""


@contextlib.contextmanager
def capture(model: nn.Module, layers, *, detach: bool = True, stop_early: bool = False,
            start_graph: bool = False) -> Iterator[dict]:
    """Keep the output of each layer during the forward passes inside the block.

    >>> from course_utils.coursenet import CourseNet
    >>> model, x = CourseNet(), torch.zeros(1, 3, 64, 64)
    >>> with capture(model, ["features.conv1", model.features.conv4]) as acts:
    ...     logits = model(x)
    >>> acts["features.conv4"].shape
    torch.Size([1, 64, 16, 16])

    ``layers`` is one layer or a list, each a dotted name or a module of the model;
    ``acts`` is keyed by the dotted names.
    With ``detach=False`` the outputs stay in the autograd graph, so gradients can
    be taken to them with ``torch.autograd.grad`` — also on a frozen model (an output
    that would not require grad becomes a leaf that does), as long as gradients are
    enabled while the model runs (``torch.enable_grad()``). Either way the kept tensor is
    safe from in-place operations later in the network. If a layer runs several times
    in one forward pass, the last output is kept. The hooks are removed on exit.

    With ``stop_early=True`` the forward pass stops as soon as every layer has given
    its output: the rest of the network never runs, the block ends there and the
    model call does not return (``logits`` above would stay unassigned).

    With ``start_graph=True`` (and ``detach=False``) the first layer to give its output
    switches gradient recording on (``torch.set_grad_enabled(True)``) for the rest of the
    pass: run the model under ``torch.no_grad()`` and autograd records only the graph from
    the layers up, which is all a gradient with respect to them needs — no parameter has
    to be frozen for it. The enclosing ``torch.no_grad()`` sets the mode back when it ends.
    """
    if start_graph and detach:
        raise ValueError("start_graph=True records a graph to the kept outputs: use it with detach=False")
    names = layer_names(model, layers)  # errors before any hook is added
    found = {name: get_layer(model, name) for name in names}
    acts: dict[str, torch.Tensor] = {}
    handles = []
    enough = _Enough()  # this block's own signal, so that a capture nested inside lets it through

    def keeper(name):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
            # Keep our own copy: a later in-place op (ReLU(inplace=True)) must not change it.
            if detach:
                acts[name] = output.detach().clone()
            else:
                if start_graph:
                    torch.set_grad_enabled(True)
                if not output.requires_grad and torch.is_grad_enabled():
                    output = output.detach().requires_grad_(True)  # frozen model, input without grad
                acts[name] = output
            if stop_early and len(acts) == len(found):
                raise enough
            return None if detach else output.clone()

        return hook

    try:
        for name, module in found.items():
            handles.append(module.register_forward_hook(keeper(name)))
        yield acts
    except _Enough as e:
        if e is not enough:
            raise
    finally:
        for h in handles:
            h.remove()
