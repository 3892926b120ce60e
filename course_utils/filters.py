"""Filter weights (lesson 02): read a convolution's kernels, scale them for display,
summarise them, and make a randomly initialised twin of a model to compare with.

Pure computation: nothing here draws. The display convention throughout is
*zero-centred*: a weight of 0 maps to the middle of the scale (mid-grey in RGB,
white in a diverging colour map), and the scale is the largest absolute weight —
either one number for the whole layer (``per_filter=False``, the default, so
filters can be compared) or one per output filter (``per_filter=True``, so weak
filters become readable)::

    w = conv_weight(model, "features.conv1")      # (out, in, kh, kw)
    tiles = rgb_tiles(w)                           # (out, kh, kw, 3) in [0, 1]
    print(stats_table(layer_stats(model)))
    twin = random_twin(model, seed=0)              # same architecture, fresh init
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .hooks import get_layer, list_layers

__all__ = [
    "NEAR_ZERO",
    "channel_sums",
    "colour_opponency",
    "conv_weight",
    "filter_norms",
    "filter_scale",
    "filter_similarity",
    "layer_stats",
    "random_twin",
    "rgb_tiles",
    "scaled",
    "stats_table",
    "weight_stats",
]

#: A weight counts as "near zero" when its size is below this fraction of the
#: largest absolute weight in its layer.
NEAR_ZERO = 0.05


def conv_weight(model: nn.Module, layer: str) -> torch.Tensor:
    """A detached float copy, on the CPU, of a 2-D convolution's weight: (out, in, kh, kw).

    For a grouped convolution ``in`` is the number of input channels each filter sees.
    """
    module = get_layer(model, layer)
    if not isinstance(module, nn.Conv2d):  # a ValueError, like every bad layer name in the course
        convs = list_layers(model, "conv")
        raise ValueError(  # noqa: TRY004
            f"layer {layer!r} is a {type(module).__name__}, not a Conv2d, so it has no filters to show; "
            f"the convolutions are: {', '.join(convs[:8])}{' …' if len(convs) > 8 else ''}"
        )
    return module.weight.detach().to("cpu", torch.float32).clone()


def _as_weight(weight) -> torch.Tensor:
    w = torch.as_tensor(weight).detach().to("cpu", torch.float32)
    if w.ndim != 4:
        raise ValueError(f"expected a conv weight of shape (out, in, kh, kw), got shape {tuple(w.shape)}")
    return w


def filter_scale(weight, per_filter: bool = False) -> torch.Tensor:
    """The display scale: the largest absolute weight, of the whole layer (a 0-d tensor)
    or of each output filter (shape (out, 1, 1, 1)).

    A scale of 0 (an all-zero filter or layer) becomes 1, so dividing by it is safe and
    the zeros stay zeros.
    """
    w = _as_weight(weight)
    s = w.abs().amax(dim=(1, 2, 3), keepdim=True) if per_filter else w.abs().amax()
    return torch.where(s > 0, s, torch.ones_like(s))


def scaled(weight, per_filter: bool = False) -> torch.Tensor:
    """The weight divided by :func:`filter_scale`: values in [-1, 1], sign kept, 0 stays 0."""
    w = _as_weight(weight)
    return w / filter_scale(w, per_filter)


def rgb_tiles(weight, per_filter: bool = False, scale: float | None = None) -> np.ndarray:
    """First-layer filters as RGB images: (out, 3, kh, kw) -> (out, kh, kw, 3) floats in [0, 1].

    Zero-centred: ``0.5 + 0.5 * w / scale``. A weight of 0 is mid-grey (0.5), the largest
    positive weight is full intensity in its colour channel and the most negative is 0.
    An all-zero filter is uniformly grey (never NaN); a constant non-zero filter is
    uniformly white (positive) or black (negative) with ``per_filter=True``.
    ``scale`` fixes the scale instead (to show several weights on one scale); weights
    beyond it are clipped.
    """
    w = _as_weight(weight)
    if w.shape[1] != 3:
        raise ValueError(
            f"RGB tiles need filters with 3 input channels (red, green, blue); these have {w.shape[1]}. "
            "Deeper layers are shown one input channel at a time (plotting.draw_kernels)."
        )
    if scale is not None and not scale > 0:
        raise ValueError(f"a display scale is a positive number, got {scale}")
    unit = scaled(w, per_filter) if scale is None else (w / float(scale)).clamp(-1, 1)
    return (0.5 + 0.5 * unit).permute(0, 2, 3, 1).numpy()


def filter_norms(weight) -> torch.Tensor:
    """The L2 norm of each output filter: sqrt of the sum of its squared weights, shape (out,)."""
    return _as_weight(weight).flatten(1).norm(dim=1)


def channel_sums(weight) -> torch.Tensor:
    """The sum of each filter's weights in each input channel, shape (out, in).

    It is the filter's response to a flat patch (without the bias): on a uniform colour
    (r, g, b) a first-layer filter gives ``sums @ [r, g, b]``. A filter whose sums are all
    0 ignores flat colour and answers only to change: edges, lines, texture.
    """
    return _as_weight(weight).sum(dim=(2, 3))


def colour_opponency(weight) -> torch.Tensor:
    """How colour-opponent each first-layer filter is, shape (out,).

    With ``s = channel_sums(weight)`` (one number per colour), the score is
    ``min(max_c s_c, -min_c s_c)``, floored at 0: the weaker of the filter's strongest
    excitation and strongest inhibition. It is 0 unless one colour pushes the output up
    while another pushes it down, and large only when both pushes are large.
    """
    s = channel_sums(weight)
    return torch.minimum(s.amax(dim=1), -s.amin(dim=1)).clamp(min=0)


def filter_similarity(a, b) -> torch.Tensor:
    """Cosine similarity of each output filter of two weights of the same shape, (out,).

    1 means the same pattern (any positive scale), 0 unrelated, -1 the opposite. An
    all-zero filter has similarity 0 with anything.
    """
    a, b = _as_weight(a).flatten(1), _as_weight(b).flatten(1)
    if a.shape != b.shape:
        raise ValueError(f"weights of different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12)


def weight_stats(weight, near_zero: float = NEAR_ZERO) -> dict[str, float]:
    """Summary numbers of one conv weight.

    ``mean``, ``std`` (population, over all weights), ``near_zero`` (the fraction of
    weights with ``|w| < near_zero * max|w|``; an all-zero weight is all near zero, 1.0),
    ``norm_mean``/``norm_min``/``norm_max`` (of :func:`filter_norms`), ``n_weights`` and
    ``max_abs``.
    """
    w = _as_weight(weight)
    a = w.abs()
    top = a.max()
    norms = filter_norms(w)
    return {
        "n_weights": w.numel(),
        "mean": w.mean().item(),
        "std": w.std(unbiased=False).item(),
        "max_abs": top.item(),
        "near_zero": ((a < near_zero * top) | (a == 0)).float().mean().item(),
        "norm_mean": norms.mean().item(),
        "norm_min": norms.min().item(),
        "norm_max": norms.max().item(),
    }


def layer_stats(model: nn.Module, layers: list[str] | None = None, near_zero: float = NEAR_ZERO) -> dict[str, dict]:
    """:func:`weight_stats` of each named conv layer (default: every Conv2d), in order,
    plus its ``shape``."""
    if layers is None:
        layers = [n for n in list_layers(model, "conv") if isinstance(get_layer(model, n), nn.Conv2d)]
    weights = {name: conv_weight(model, name) for name in layers}
    return {name: {"shape": tuple(w.shape), **weight_stats(w, near_zero)} for name, w in weights.items()}


def stats_table(stats: dict[str, dict], digits: int = 3) -> str:
    """A plain-text table of :func:`layer_stats`, numbers rounded to ``digits`` decimals."""
    head = ["layer", "shape", "weights", "mean", "std", "near 0", "norm mean", "norm min", "norm max"]
    rows = [head]
    for name, s in stats.items():
        nums = [s[k] for k in ("mean", "std", "near_zero", "norm_mean", "norm_min", "norm_max")]
        # `+ 0.0` turns a rounded -0.0 into 0.0, so the table does not flicker between signs
        rows.append([name, "×".join(map(str, s["shape"])), f"{s['n_weights']:,}",
                     *[f"{round(v, digits) + 0.0:.{digits}f}" for v in nums]])
    widths = [max(len(r[k]) for r in rows) for k in range(len(head))]
    return "\n".join("  ".join(c.ljust(wd) if k < 2 else c.rjust(wd) for k, (c, wd) in enumerate(zip(r, widths)))
                     for r in rows)


def random_twin(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer freshly initialised, as if before training.

    Same architecture, parameter names and shapes; weights drawn by each layer's own
    ``reset_parameters`` (PyTorch's default initialisation; batch norms go back to
    scale 1, shift 0 and running statistics 0 and 1). The same ``seed`` gives the same
    weights. The original model and the global random state are left untouched; the
    twin keeps the original's ``training`` flags and ``requires_grad``.
    """
    twin = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, module in twin.named_modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                elif any(True for _ in module.parameters(recurse=False)):
                    raise ValueError(
                        f"cannot re-initialise {name or 'the model'} ({type(module).__name__}): "
                        "it holds parameters but has no reset_parameters()"
                    )
    return twin
