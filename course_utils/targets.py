"""What is explained: the input batch, and the target of each image, read one way everywhere.

A target is a class index (the same for every image), a sequence with one index
per image, ``None`` (each image's top class) or a function of the (N, C) logits
that gives one score per image. :func:`resolve_targets` turns it into the scores
whose gradient every method takes, :func:`target_classes` into the class behind
each score, :func:`class_list` checks a class-index target, and :func:`check_input`
that the input is a float batch of images.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["check_input", "class_list", "resolve_targets", "target_classes"]


def class_list(target, n: int, n_classes: int | None) -> list[int]:
    """A class-index target as one Python int per image, checked: an int (NumPy's too)
    for every image, or a sequence / array / tensor with one per image.

    Each index must be in 0..n_classes-1; with ``n_classes=None`` (not known yet: the
    model has not run) only the form is checked, and the caller checks the range
    once the logits exist (:func:`resolve_targets` does)."""
    if isinstance(target, (torch.Tensor, np.ndarray)):
        target = target.tolist()
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        idx_list = [int(target)] * n
    elif isinstance(target, Sequence) and not isinstance(target, str):
        idx_list = list(target)
    else:
        raise TypeError("a target is a class index (int), a list of them (one per image), None "
                        f"(the top class) or a function of the model's output; got {target!r}")
    if len(idx_list) != n:
        raise ValueError(f"{len(idx_list)} targets given for a batch of {n} images")
    for t in idx_list:
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise TypeError(f"a class index is an int, got {t!r}")
        if n_classes is not None and not 0 <= t < n_classes:
            hint = " (a negative index does not count from the end)" if t < 0 else ""
            raise ValueError(f"class index {t} is out of range: this model has classes 0..{n_classes - 1}{hint}")
    return [int(t) for t in idx_list]


def resolve_targets(output: torch.Tensor, target) -> torch.Tensor:
    """The score of each image: a 1-D tensor of length N, taken from the logits.

    ``target`` is a class index (same for every image), a sequence of indices
    (one per image), ``None`` (each image's top class), or a callable mapping the
    (N, C) output to N scores.
    """
    if output.ndim != 2:
        raise ValueError(f"expected (batch, classes) logits, got shape {tuple(output.shape)}")
    n, c = output.shape
    if callable(target):
        score = target(output)
        if not isinstance(score, torch.Tensor) or score.shape != (n,):
            shape = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__
            raise ValueError(f"a target function must return one score per image, shape ({n},); got {shape}")
        return score
    return output.gather(1, target_classes(output, target).to(output.device).view(-1, 1)).squeeze(1)


def target_classes(output: torch.Tensor, target) -> torch.Tensor:
    """The class behind each image's score, (N,) on the CPU: ``target`` checked against the
    (N, C) logits, each image's top class for ``None``, -1 for a function of the logits."""
    if callable(target):
        return torch.full((output.shape[0],), -1, dtype=torch.long)
    if target is None:
        return output.argmax(dim=1).cpu()
    return torch.tensor(class_list(target, *output.shape), dtype=torch.long)


def check_input(x) -> None:
    """A float batch of images (N, C, H, W), or a ValueError saying what came instead."""
    if not isinstance(x, torch.Tensor):
        got = type(x).__name__
    elif x.ndim != 4:
        got = f"{tuple(x.shape)}; for one image use x.unsqueeze(0)"
    elif not x.is_floating_point():
        got = f"{tuple(x.shape)} of {x.dtype}: it must be floating point (preprocessed, e.g. by LoadedModel.batch)"
    else:
        return
    raise ValueError(f"the input is a float batch of images (N, C, H, W), got {got}")
