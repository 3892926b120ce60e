"""Feature maps: what each layer computes for an image, and how to put it on screen.

Compute only (numpy and torch, no plotting). Three groups:

* :func:`feature_maps`, :func:`layer_shapes`, :func:`feature_layers` — one forward
  pass that keeps the outputs of named layers (through :func:`course_utils.hooks.capture`,
  so every hook is gone afterwards, also after an error), the output shape of every
  layer, and the layers worth looking at.
* :func:`normalize` and the three display normalizations behind it. A feature map
  holds any real numbers; a screen shows 0..1. How you squeeze one into the other
  changes what you see:

  ============================  =================================================
  ``"per-channel min-max"``     every channel stretched to 0..1 on its own. Shows
                                the pattern inside each channel; hides magnitude
                                (a nearly dead channel looks as strong as the
                                strongest one).
  ``"standardize x64 +128"``    per channel: subtract the mean, divide by the
                                standard deviation, x64, +128, clip to 0..255.
                                Mean is mid-grey, +-2 std fill the range; a few
                                extreme pixels clip instead of darkening the rest.
                                Like min-max, it blows up a weak channel's noise.
  ``"shared scale"``            one min-max over all channels together. Shows which
                                channels are strong; weak channels turn black.
  ============================  =================================================

  A constant channel (no range, standard deviation 0) never gives NaN: min-max and
  the shared scale show it as 0 (black), the standardize recipe as 128 (mid-grey).
* :func:`channel_pages` — pages of channels for a grid (``plotting.mosaic`` lays them out).
* :func:`mean_activation`, :func:`most_selective_channel` — which channel responds
  to a class (lesson 01's exercise).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .hooks import capture, get_layer, model_guard

__all__ = [
    "NORMALIZATIONS",
    "channel_pages",
    "feature_layers",
    "feature_maps",
    "layer_shapes",
    "mean_activation",
    "minmax_per_channel",
    "minmax_shared",
    "most_selective_channel",
    "normalize",
    "standardize_recipe",
]


# --- capturing ------------------------------------------------------------------


def feature_maps(model: nn.Module, x: torch.Tensor, layers: str | Sequence[str]) -> dict[str, torch.Tensor]:
    """One forward pass of ``x``; the outputs of the named layers, detached, by name.

    Runs in eval mode under ``torch.no_grad()`` and hands the model back as it was
    (no hook stays; a model in training mode stays so, its batch-norm statistics
    untouched).
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    with model_guard(model), torch.no_grad(), capture(model, names) as acts:
        model.eval()
        model(x)
    missing = [n for n in names if n not in acts]
    if missing:
        raise RuntimeError(f"layer(s) {missing} did not run during the forward pass")
    return {n: acts[n] for n in names}


def feature_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose outputs are spatial maps worth looking at:
    convolutions, ReLUs (ReLU6 too) and (non-adaptive) pooling layers, in definition order."""
    spatial = (nn.Conv2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d)
    return [name for name, m in model.named_modules() if name and isinstance(m, spatial)]


def layer_shapes(model: nn.Module, x: torch.Tensor, depth: int | None = None) -> list[tuple[str, str, tuple]]:
    """``(name, type, output shape)`` of every layer, in the order they are defined.

    ``depth=None`` lists the leaf modules (those with no children); ``depth=k``
    lists the modules whose dotted name has ``k`` parts or fewer, containers
    included (``depth=1`` for ResNet: ``conv1 … layer1 … layer4, avgpool, fc``).
    A layer that runs several times in one pass reports its last output.
    """
    if depth is not None and depth < 1:
        raise ValueError(f"depth counts the parts of a dotted name, so it is at least 1; got {depth}")
    chosen = [(n, m) for n, m in model.named_modules()
              if n and (not any(True for _ in m.children()) if depth is None else n.count(".") < depth)]
    acts = feature_maps(model, x, [n for n, _ in chosen])
    return [(n, type(m).__name__, tuple(acts[n].shape)) for n, m in chosen]


# --- display normalizations -------------------------------------------------------


def _as_float64(maps) -> np.ndarray:
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    a = np.asarray(maps, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"feature maps are at least 2-D (H, W), usually (C, H, W); got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("the feature maps contain NaN or infinite values")
    return a


def minmax_per_channel(maps) -> np.ndarray:
    """Each channel (the last two axes) stretched to 0..1 on its own; float32.

    A constant channel has no range to stretch: it becomes 0 (black), not NaN.
    """
    a = _as_float64(maps)
    lo = a.min(axis=(-2, -1), keepdims=True)
    span = a.max(axis=(-2, -1), keepdims=True) - lo
    out = np.divide(a - lo, span, out=np.zeros_like(a), where=span > 0)
    return out.astype(np.float32)


def minmax_shared(maps) -> np.ndarray:
    """One min-max over every value together: channels keep their relative
    strength; float32 in 0..1. All-constant input becomes 0."""
    a = _as_float64(maps)
    return minmax_per_channel(a.reshape(-1, 1)).reshape(a.shape)


def standardize_recipe(maps, scale: float = 64.0) -> np.ndarray:
    """The classic recipe, per channel: ``(a - mean) / std * 64 + 128``, clipped to
    0..255 and rounded to ``uint8``. A constant channel (std 0) becomes 128."""
    a = _as_float64(maps)
    mean = a.mean(axis=(-2, -1), keepdims=True)
    std = a.std(axis=(-2, -1), keepdims=True)  # population std (ddof=0)
    z = np.divide(a - mean, std, out=np.zeros_like(a), where=std > 0)
    return np.clip(np.rint(z * scale + 128.0), 0, 255).astype(np.uint8)


#: The display normalizations :func:`normalize` knows, by name.
NORMALIZATIONS = {
    "per-channel min-max": minmax_per_channel,
    "standardize x64 +128": standardize_recipe,
    "shared scale": minmax_shared,
}


def normalize(maps, method: str = "per-channel min-max") -> np.ndarray:
    """Feature maps ((C, H, W), (H, W), or with more leading axes) -> float32 in
    0..1, same shape, ready to show. ``method`` is a key of :data:`NORMALIZATIONS`."""
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {method!r}; choose one of {list(NORMALIZATIONS)}")
    out = NORMALIZATIONS[method](maps)
    if out.dtype == np.uint8:
        out = out.astype(np.float32) / 255.0
    return out


# --- arranging channels -------------------------------------------------------------


def channel_pages(n_channels: int, per_page: int = 16) -> list[tuple[str, int]]:
    """``[("0–15", 0), ("16–31", 16), ...]``: a label and the first channel of each page."""
    if n_channels < 1 or per_page < 1:
        raise ValueError(f"need at least one channel and one per page, got {n_channels}, {per_page}")
    return [(f"{s}–{min(s + per_page, n_channels) - 1}", s) for s in range(0, n_channels, per_page)]


# --- which channel responds to what -------------------------------------------------


def mean_activation(model: nn.Module, x: torch.Tensor, layer: str, batch_size: int = 64) -> torch.Tensor:
    """(N, C): the spatial mean of each channel of ``layer`` for each image of ``x``."""
    get_layer(model, layer)  # a clear error for a wrong name, before any work
    means = []
    for start in range(0, len(x), batch_size):
        acts = feature_maps(model, x[start : start + batch_size], layer)[layer]
        if acts.ndim != 4:
            raise ValueError(f"layer {layer!r} gives shape {tuple(acts.shape)}, not (N, C, H, W) maps")
        means.append(acts.mean(dim=(2, 3)))
    return torch.cat(means)


def most_selective_channel(means: torch.Tensor, is_target) -> int:
    """The channel whose mean activation is highest on the target images compared with
    the others: ``argmax_c (mean over targets - mean over the rest)`` of ``means`` (N, C)."""
    means = torch.as_tensor(means, dtype=torch.float64)
    mask = torch.as_tensor(np.asarray(is_target, dtype=bool))
    if mask.shape != (means.shape[0],):
        raise ValueError(f"is_target needs one True/False per image ({means.shape[0]}), got shape {tuple(mask.shape)}")
    if mask.all() or not mask.any():
        raise ValueError("is_target must mark some images, but not all of them")
    return int((means[mask].mean(0) - means[~mask].mean(0)).argmax())
