"""ReLU backward rules (lesson 04): :func:`relu_rule` swaps the backward rule of every
ReLU (and ReLU6) for guided backprop's or the deconvnet's, with no hooks and no module replaced.
:mod:`course_utils.hooks` re-exports :data:`RELU_RULES` and :func:`relu_rule`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["RELU6_GATE", "RELU_RULES", "relu_rule"]


#: How a ReLU passes a gradient g back, given its forward input x (lesson 04):
#: plain backprop gates by the forward input, the deconvnet by the sign of g,
#: guided backprop by both (Springenberg et al. 2015, "Striving for Simplicity", fig. 1).
RELU_RULES = {
    "plain": "g * (x > 0)",
    "deconvnet": "g * (g > 0)",
    "guided": "g * (x > 0) * (g > 0)",
}
#: A ReLU6, min(max(x, 0), 6), passes a gradient only where it is not clipped: for it, "x > 0"
#: above reads "0 < x < 6" (the slope of ReLU6 is 1 there and 0 elsewhere).
RELU6_GATE = "0 < x < 6"


class _RuleReLU(torch.autograd.Function):
    """ReLU forward (clipped at ``top`` for a ReLU6); backward by the rule ``mode.rule`` holds when the
    gradient is taken. In place when the caller asked."""

    @staticmethod
    def forward(ctx, x, mode: _ReLURuleMode, inplace: bool, top: float | None):
        if inplace:
            ctx.mark_dirty(x)
            out = x.clamp_(min=0, max=top)
        else:
            out = x.clamp(min=0, max=top)
        ctx.mode, ctx.top = mode, top
        ctx.save_for_backward(out)  # 0 < out < top exactly where 0 < x < top
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        rule = ctx.mode.rule
        if rule == "deconvnet":
            return g.clamp(min=0), None, None, None
        # PyTorch's own fused backward kernels: g where 0 < out (< top), else 0
        if ctx.top is None:
            grad = torch.ops.aten.threshold_backward(g, out, 0.0)
        else:
            grad = torch.ops.aten.hardtanh_backward(g, out, 0.0, ctx.top)
        if rule == "guided":
            grad.clamp_(min=0)  # in place on our own new tensor: no second allocation
        return grad, None, None, None


# Every way PyTorch spells a ReLU: nn.ReLU calls F.relu; F.relu_ is torch.relu_.
_RELU_FUNCS = {F.relu: False, torch.relu: False, torch.Tensor.relu: False,
               torch.relu_: True, torch.Tensor.relu_: True}


def _argument(args, kwargs, index: int, name: str, default):
    return args[index] if len(args) > index else kwargs.get(name, default)


class _ReLURuleMode(TorchFunctionMode):
    def __init__(self, rule: str):
        super().__init__()
        self.rule = rule
        self.calls = 0

    @property
    def rule(self) -> str:
        return self._rule

    @rule.setter
    def rule(self, rule: str) -> None:
        if rule not in RELU_RULES:
            raise ValueError(f"unknown ReLU rule {rule!r}; choose one of {list(RELU_RULES)}")
        self._rule = rule

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU_FUNCS:
            top, inplace = None, _RELU_FUNCS[func] or bool(_argument(args, kwargs, 1, "inplace", False))
        elif func is F.relu6:
            top, inplace = 6.0, bool(_argument(args, kwargs, 1, "inplace", False))
        elif func is F.hardtanh and _argument(args, kwargs, 1, "min_val", -1.0) == 0 \
                and _argument(args, kwargs, 2, "max_val", 1.0) > 0:  # hardtanh(x, 0, t): a ReLU clipped at t
            top, inplace = float(_argument(args, kwargs, 2, "max_val", 1.0)), bool(
                _argument(args, kwargs, 3, "inplace", False))
        else:
            return func(*args, **kwargs)
        x = args[0] if args else kwargs["input"]
        self.calls += 1
        return _RuleReLU.apply(x, self, inplace, top)


@contextlib.contextmanager
def relu_rule(rule: str) -> Iterator[_ReLURuleMode]:
    """Inside the block, every ReLU and ReLU6 passes gradients back by ``rule``:
    ``"plain"`` (ordinary backprop), ``"guided"`` or ``"deconvnet"`` (see :data:`RELU_RULES`).

    >>> x = torch.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    >>> with relu_rule("guided") as mode:
    ...     y = torch.relu(x)  # the forward pass is unchanged: [0, 2, 3]
    >>> torch.autograd.grad(y, x, torch.tensor([5.0, 5.0, -5.0]))  # may run after the block
    (tensor([0., 5., 0.]),)

    Each ReLU that runs in the block is tied to ``mode``, and a gradient taken later
    (even after the block) follows the rule ``mode.rule`` holds at that time: one
    forward pass can give the gradient of every rule, one backward pass each
    (``retain_graph=True``), by setting ``mode.rule`` between them. It catches every ReLU spelling — ``nn.ReLU``
    (in place or not, one module reused several times as in torchvision's
    ResNet blocks), ``F.relu``, ``torch.relu``, ``x.relu()`` and their in-place
    twins — and every ReLU6 (``nn.ReLU6``, which calls ``F.hardtanh(x, 0, 6)``,
    ``F.relu6``, in place or not; any ``F.hardtanh(x, 0, t)`` counts as a ReLU clipped
    at t), whose gate is ``0 < x < t`` (:data:`RELU6_GATE`), by intercepting PyTorch
    functions while the block runs (a ``TorchFunctionMode``): no hook is added and no
    module replaced. Not caught: ReLUs written another way (``x.clamp(min=0)``,
    ``torch.maximum``), other activations (GELU, SiLU, ...) and TorchScript models. ``mode.calls`` counts
    the ReLUs that ran, so a caller can tell when there were none.
    """
    with _ReLURuleMode(rule) as mode:
        yield mode
