"""Measuring explanations (lessons 09 and 10), with the scenes' ground-truth masks.

Pure functions on maps (N, h, w) — any resolution; they are resized to the
masks' size (bilinear) when needed — and masks (N, H, W) bool:

* :func:`pointing_game` — is the map's maximum on the object? (Zhang et al. 2016,
  "Top-down Neural Attention by Excitation Backprop"; here without a tolerance).
* :func:`energy_inside` — the share of the map's positive mass inside the mask.
* :func:`deletion_curve` / :func:`insertion_curve` and :func:`auc` — remove (or
  reveal) pixels in the order the map ranks them and follow the class
  probability (Petsiuk et al. 2018, "RISE").
* :func:`spearman`, :func:`ssim` — how alike two maps are, and
  :func:`cascading_randomization` — the model-randomization test of Adebayo et al.
  2018, "Sanity Checks for Saliency Maps": weights re-initialised layer by layer
  from the top.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .hooks import get_layer, model_guard
from .targets import class_list

__all__ = [
    "auc",
    "cascading_randomization",
    "deletion_curve",
    "energy_inside",
    "insertion_curve",
    "pointing_game",
    "spearman",
    "ssim",
    "to_mask_size",
]


def _stack(a, masks: bool = False) -> torch.Tensor:
    """Maps (float) or masks (bool) as an (N, h, w) tensor on the CPU; one (h, w) map becomes N = 1."""
    t = torch.as_tensor(a if isinstance(a, torch.Tensor) else np.asarray(a)).detach()
    t = (t.bool() if masks else t.float()).cpu()
    t = t[None] if t.ndim == 2 else t
    if t.ndim != 3:
        hw = "H, W" if masks else "h, w"
        raise ValueError(f"{'masks' if masks else 'maps'} have shape (N, {hw}) or ({hw}), got {tuple(t.shape)}")
    return t


def _resized(m: torch.Tensor, size) -> torch.Tensor:
    """(N, h, w) maps resized (bilinear) to ``size``; as they are if they have that size already."""
    if m.shape[1:] == tuple(size):
        return m
    return F.interpolate(m[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def to_mask_size(maps, masks) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps resized (bilinear) to the masks' height and width; both as tensors."""
    m, k = _stack(maps), _stack(masks, masks=True)
    if m.shape[0] != k.shape[0]:
        raise ValueError(f"{m.shape[0]} maps but {k.shape[0]} masks")
    return _resized(m, k.shape[1:]), k


def pointing_game(maps, masks, tolerance: int = 0) -> torch.Tensor:
    """For each map, True when its largest value lies on the object (inside its mask),
    or within ``tolerance`` pixels of it (Zhang et al. use 15 pixels on 224² images,
    about 4 on the course's 64²). A flat map points nowhere: False."""
    m, k = to_mask_size(maps, masks)
    if tolerance:
        r = int(tolerance)
        yy, xx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
        disk = ((yy**2 + xx**2) <= r * r).float()[None, None]
        k = F.conv2d(k[:, None].float(), disk, padding=r)[:, 0] > 0
    flat = m.flatten(1)
    peak = flat.argmax(dim=1)
    hit = k.flatten(1).gather(1, peak[:, None])[:, 0]
    return hit & (flat.amax(1) > flat.amin(1))


def energy_inside(maps, masks) -> torch.Tensor:
    """For each map, the share of its positive values' sum that lies inside the mask
    (a uniform map scores the mask's share of the image; an all-zero map scores 0)."""
    m, k = to_mask_size(maps, masks)
    pos = m.clamp(min=0).flatten(1)
    total = pos.sum(1)
    inside = (pos * k.flatten(1)).sum(1)
    return torch.where(total > 0, inside / total, 0.0)  # 0 / 0 gives NaN, never returned


# --- faithfulness -----------------------------------------------------------------------------


def _curve(model: nn.Module, x: torch.Tensor, maps, target, steps: int, baseline, insert: bool,
           batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError("x is a batch of preprocessed images (N, C, H, W)")
    m = _stack(maps)
    if m.shape[0] != x.shape[0]:
        raise ValueError(f"{m.shape[0]} maps for {x.shape[0]} images")
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    n, c, h, w = x.shape
    base = torch.zeros_like(x) if baseline is None else (baseline(x) if callable(baseline) else
                                                         torch.as_tensor(baseline, dtype=x.dtype).expand_as(x))
    # each pixel's rank, from the most important (0) to the least; ties broken by position
    rank = torch.argsort(torch.argsort(_resized(m, (h, w)).flatten(1), dim=1, descending=True, stable=True), dim=1)
    fractions = torch.linspace(0, 1, steps + 1)
    counts = (fractions * h * w).round().long()
    scores = torch.empty(n, steps + 1)
    if callable(target):
        raise TypeError("the curves follow one class's probability: give a class index, a list or None")
    with model_guard(model), torch.no_grad():
        model.eval()
        logits = model(x)
        classes = logits.argmax(1).tolist() if target is None else class_list(target, *logits.shape)
        for i, cls in enumerate(classes):
            keep = (rank[i] < counts[:, None]).view(-1, 1, h, w).to(x.device)  # each step's k most important pixels
            frames = torch.where(keep, x[i], base[i]) if insert else torch.where(keep, base[i], x[i])
            probs = torch.cat([model(frames[j:j + batch_size]).softmax(1)[:, cls]
                               for j in range(0, len(frames), batch_size)])
            scores[i] = probs.cpu()
    return fractions, scores


def deletion_curve(model: nn.Module, x: torch.Tensor, maps, target=None, *, steps: int = 20, baseline=None,
                   batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the pixels by ``baseline`` (default 0, the mean colour for normalized
    inputs; a tensor, a number or a function of ``x``), most important first, in
    ``steps`` equal steps: ``(fractions removed (steps+1,), class probability (N, steps+1))``.
    A faithful map makes the probability fall fast (a small area under the curve).
    ``target``: a class index, a list, or None (each image's top class)."""
    return _curve(model, x, maps, target, steps, baseline, insert=False, batch_size=batch_size)


def insertion_curve(model: nn.Module, x: torch.Tensor, maps, target=None, *, steps: int = 20, baseline=None,
                    batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Start from ``baseline`` and put the pixels back, most important first: a faithful
    map makes the probability rise fast (a large area under the curve)."""
    return _curve(model, x, maps, target, steps, baseline, insert=True, batch_size=batch_size)


def auc(fractions: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Area under each curve (trapezoid rule), in [0, 1] for probabilities."""
    return torch.trapezoid(scores, fractions, dim=-1)


# --- how alike are two maps ---------------------------------------------------------------------


def _rank(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a 1-D tensor; tied values share their mean rank."""
    sv, order = torch.sort(v, stable=True)
    _, inverse, counts = torch.unique_consecutive(sv, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # the rank of each run of equal values' last member
    ranks = torch.empty(len(v), dtype=torch.float64)
    ranks[order] = (last - (counts.double() - 1) / 2)[inverse]
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation of two maps (any shape, same size); 0 if either is flat."""
    x, y = torch.as_tensor(np.asarray(a)).flatten().double(), torch.as_tensor(np.asarray(b)).flatten().double()
    if x.shape != y.shape:
        raise ValueError(f"maps of different sizes: {x.numel()} and {y.numel()} values")
    rx, ry = _rank(x) - (len(x) + 1) / 2, _rank(y) - (len(y) + 1) / 2
    den = (rx.norm() * ry.norm()).item()
    return float((rx * ry).sum() / den) if den > 0 else 0.0


def ssim(a, b, window: int = 7, sigma: float = 1.5) -> float:
    """Structural similarity of two 2-D maps, each first scaled to [0, 1] (Wang et al.
    2004, "Image Quality Assessment: From Error Visibility to Structural Similarity",
    with a Gaussian window and their constants K1 = 0.01, K2 = 0.03)."""
    x, y = (torch.as_tensor(np.asarray(v)).double() for v in (a, b))
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"ssim compares two 2-D maps of one size, got {tuple(x.shape)} and {tuple(y.shape)}")

    def unit(v):
        span = v.max() - v.min()
        return (v - v.min()) / span if span > 0 else torch.zeros_like(v)

    x, y = unit(x)[None, None], unit(y)[None, None]
    r = window // 2
    g = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float64) ** 2) / (2 * sigma**2))
    k = (g[:, None] * g[None, :]) / g.sum() ** 2

    def blur(v):
        return F.conv2d(F.pad(v, (r, r, r, r), mode="replicate"), k[None, None])

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


# --- the model-randomization test ---------------------------------------------------------------


_RESETTABLE = (nn.Linear, nn.modules.conv._ConvNd)
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)  # their reset draws nothing


def _reset(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every layer in ``module`` as its ``reset_parameters()`` does, but
    drawing from ``generator``: the same numbers as ``torch.manual_seed(seed)`` followed
    by ``reset_parameters()``, without touching the global random state."""
    for m in module.modules():
        if isinstance(m, _RESETTABLE):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, _NORMS):
            m.reset_parameters()  # weight 1, bias 0, and fresh running statistics


def cascading_randomization(model: nn.Module, layers: Sequence[str], seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """A copy of ``model`` with more and more layers re-initialised, from the top:
    yields ``(layer, copy)`` after each of ``layers`` (give them top first) is reset
    with its own default initialisation — the same copy each time, one more layer
    reset, so use it before asking for the next. The model itself is never changed.

    The random numbers come from a private ``torch.Generator`` seeded with ``seed``:
    the global random state is never used nor restored, so what you do between the
    steps (``torch.rand``, a ``torch.manual_seed``, stopping early) changes nothing
    here, and the same seed always gives the same weights — those that
    ``torch.manual_seed(seed)`` and each layer's ``reset_parameters()`` in turn give.
    Linear, convolution and normalisation layers (and blocks made of them) can be reset."""
    names = list(layers)
    for name in names:  # unknown or unsupported layers fail before anything is copied
        for sub_name, m in get_layer(model, name).named_modules(prefix=name):
            if any(True for _ in m.parameters(recurse=False)) and not isinstance(m, (*_RESETTABLE, *_NORMS)):
                raise TypeError(f"cascading_randomization re-initialises linear, convolution and normalisation "
                                f"layers only; {sub_name!r} is an nn.{type(m).__name__}")
    twin = copy.deepcopy(model).eval()
    generator = torch.Generator().manual_seed(seed)
    for name in names:
        with torch.no_grad():
            _reset(get_layer(twin, name), generator)
        yield name, twin
