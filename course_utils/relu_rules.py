"""ReLU backward rules (lesson 04): :func:`relu_rule` swaps the backward rule of every
ReLU for guided backprop's or the deconvnet's, with no hooks and no module replaced.
:mod:`course_utils.hooks` re-exports :data:`RELU_RULES` and :func:`relu_rule`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["RELU_RULES", "relu_rule"]


#: How a ReLU passes a gradient g back, given its forward input x (lesson 04):
#: plain backprop gates by the forward input, the deconvnet by the sign of g,
#: guided backprop by both (Springenberg et al. 2015, "Striving for Simplicity", fig. 1).
RELU_RULES = {
    "plain": "g * (x > 0)",
    "deconvnet": "g * (g > 0)",
    "guided": "g * (x > 0) * (g > 0)",
}


class _RuleReLU(torch.autograd.Function):
    """ReLU forward; the chosen rule backward. In place when the caller asked for it."""

    @staticmethod
    def forward(ctx, x, rule: str, inplace: bool):
        if inplace:
            ctx.mark_dirty(x)
            out = x.clamp_(min=0)
        else:
            out = x.clamp(min=0)
        ctx.rule = rule
        ctx.save_for_backward(out)  # out > 0 exactly where x > 0
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        if ctx.rule == "deconvnet":
            return g.clamp(min=0), None, None
        if ctx.rule == "guided":
            g = g.clamp(min=0)
        return g * (out > 0), None, None


# Every way PyTorch spells a ReLU: nn.ReLU calls F.relu; F.relu_ is torch.relu_.
_RELU_FUNCS = {F.relu: False, torch.relu: False, torch.Tensor.relu: False,
               torch.relu_: True, torch.Tensor.relu_: True}


class _ReLURuleMode(TorchFunctionMode):
    def __init__(self, rule: str):
        super().__init__()
        self.rule = rule
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _RELU_FUNCS:
            return func(*args, **kwargs)
        x = args[0] if args else kwargs["input"]
        inplace = _RELU_FUNCS[func] or bool(args[1] if len(args) > 1 else kwargs.get("inplace", False))
        self.calls += 1
        return _RuleReLU.apply(x, self.rule, inplace)


@contextlib.contextmanager
def relu_rule(rule: str) -> Iterator[_ReLURuleMode]:
    """Inside the block, every ReLU passes gradients back by ``rule``:
    ``"plain"`` (ordinary backprop), ``"guided"`` or ``"deconvnet"`` (see :data:`RELU_RULES`).

    >>> x = torch.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    >>> with relu_rule("guided") as mode:
    ...     y = torch.relu(x)  # the forward pass is unchanged: [0, 2, 3]
    >>> torch.autograd.grad(y, x, torch.tensor([5.0, 5.0, -5.0]))  # may run after the block
    (tensor([0., 5., 0.]),)

    The rule is attached to each ReLU as it runs in the forward pass, so the
    gradient taken later follows it. It catches every ReLU spelling — ``nn.ReLU``
    (in place or not, one module reused several times as in torchvision's
    ResNet blocks), ``F.relu``, ``torch.relu``, ``x.relu()`` and their in-place
    twins — by intercepting PyTorch functions while the block runs (a
    ``TorchFunctionMode``): no hook is added and no module replaced. Not caught:
    ReLUs written another way (``x.clamp(min=0)``, ``torch.maximum``), other
    activations (ReLU6, GELU, ...) and TorchScript models. ``mode.calls`` counts
    the ReLUs that ran, so a caller can tell when there were none.
    """
    if rule not in RELU_RULES:
        raise ValueError(f"unknown ReLU rule {rule!r}; choose one of {list(RELU_RULES)}")
    with _ReLURuleMode(rule) as mode:
        yield mode
