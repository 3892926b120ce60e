"""Explanations without a gradient (lesson 11): ask the model about changed inputs instead.

* :func:`score_cam` — Score-CAM (Wang et al. 2020, "Score-CAM: Score-Weighted Visual
  Explanations for Convolutional Neural Networks", sec. 3): each channel of the layer,
  upsampled and scaled to [0, 1], masks the image; the class score of each masked image,
  softmax-normalised over the channels, weights that channel.
* :func:`ablation_cam` — Ablation-CAM (Desai & Ramaswamy 2020, "Ablation-CAM: Visual
  Explanations for Deep Convolutional Network via Gradient-free Localization", eq. 2-3):
  each channel weighted by how much the score falls when that channel is set to zero.
* :func:`eigen_cam` — Eigen-CAM (Muhammad & Yeasin 2020, "Eigen-CAM: Class Activation Map
  using Principal Components"): the layer's maps projected on their first principal
  component. It reads no class at all.
* :func:`occlusion` — Zeiler & Fergus (2014, sec. 4.2): slide a grey square over the image
  and record how much the class score falls with each position covered.

Each returns raw maps (N, h, w), larger = more important, before any upsampling or
normalization: at the layer's resolution for the CAMs, at the input's for occlusion.
Scores are logits, as for every method of the course. The masked passes go through the
model ``batch_size`` images at a time with a progress bar; everything runs under
``torch.no_grad()`` in eval mode, and the model comes back unchanged (no hook stays).
"""

from __future__ import annotations

import torch
from torch import nn

from .cam import _check_spatial, _defaults, _ratio, _weighted_maps, normalize_maps, upsample
from .hooks import capture, model_guard
from .saliency import progress_bar
from .targets import check_input, target_classes

__all__ = ["ablation_cam", "eigen_cam", "layer_maps", "occlusion", "score_cam"]


def _check_batch_size(batch_size) -> None:
    if not (isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _classes(target, logits: torch.Tensor) -> torch.Tensor:
    if callable(target):
        raise TypeError("this method asks the model about one class per image: give a class index, a list or None")
    return target_classes(logits, target)


def layer_maps(model: nn.Module, x: torch.Tensor, layer=None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """One plain forward pass (no graph): ``(logits, the layer's maps (N, K, h, w), the layer's name)``;
    ``layer`` by default the model record's Grad-CAM layer."""
    check_input(x)
    name = _defaults(model, layer)[0]
    with model_guard(model, eval=True), torch.no_grad(), capture(model, name) as acts:
        logits = model(x)
    if name not in acts:
        raise RuntimeError(f"layer {name!r} did not run during the forward pass")
    _check_spatial(name, acts[name])
    return logits, acts[name], name


def _scores(model: nn.Module, batches, classes: list[int], total: int, progress: bool, desc: str) -> torch.Tensor:
    """The logit of ``classes[i]`` for each image of each batch ``(i, images)`` (made as they are
    needed), in order: (total,)."""
    out = torch.empty(total)
    bar, done = progress_bar(total, progress, desc, "pass"), 0
    try:
        with model_guard(model, eval=True), torch.no_grad():
            for i, images in batches:
                k = len(images)
                out[done:done + k] = model(images)[:, classes[i]].float().cpu()
                done += k
                bar.update(k)
    finally:
        bar.close()
    return out


def _chunks(items: list, batch_size: int) -> list[list]:
    return [items[s:s + batch_size] for s in range(0, len(items), batch_size)]


def score_cam(model: nn.Module, x: torch.Tensor, target=None, layer=None, *, batch_size: int = 32,
              progress: bool = True, acts: torch.Tensor | None = None, logits: torch.Tensor | None = None,
              ) -> torch.Tensor:
    """Score-CAM maps (N, h, w): ReLU(Σ_k w_k A_k) with w = softmax over k of the target's logit for
    the image times mask k, mask k being channel k upsampled to the input and scaled to [0, 1].

    One masked pass per channel and image (``batch_size`` at a time); a channel that is flat
    (all one value: a mask of zeros) is asked about once per image, not once per channel.
    ``acts`` and ``logits`` (the layer's maps and the model's output for ``x``) skip the first
    pass when the caller has them already. Wang et al. score with the class probability; the
    softmax over channels here follows their released code and the libraries (torch-cam,
    pytorch-grad-cam), which score with the logit.
    """
    _check_batch_size(batch_size)
    if acts is None or logits is None:
        logits, acts, _ = layer_maps(model, x, layer)
    check_input(x)
    classes = _classes(target, logits).tolist()
    a = acts.detach().float()
    n, k = a.shape[:2]
    flat = (a.flatten(2).amax(2) == a.flatten(2).amin(2)).cpu()  # (N, K): such a channel's mask is all zeros
    asked = [[c for c in range(k) if not flat[i, c]] + flat[i].nonzero()[:1, 0].tolist() for i in range(n)]

    def batches():  # each batch's masks made when it is needed: K masks of the input's size can be large
        for i in range(n):
            for chans in _chunks(asked[i], batch_size):
                masks = normalize_maps(upsample(a[i, chans], x.shape[-2:])).to(x.device, x.dtype)
                yield i, x[i] * masks[:, None]

    total = sum(map(len, asked))
    scores = _scores(model, batches(), classes, total, progress, f"Score-CAM ({total} masked passes)")
    logit, done = torch.empty(n, k), 0
    for i in range(n):
        logit[i, asked[i]] = scores[done:done + len(asked[i])]
        logit[i, flat[i]] = scores[done + len(asked[i]) - 1] if flat[i].any() else 0.0  # the one zero mask's answer
        done += len(asked[i])
    weights = logit.softmax(dim=1).to(a.device)
    return _weighted_maps(weights, a).clamp(min=0).cpu()


def ablation_cam(model: nn.Module, x: torch.Tensor, target=None, layer=None, *, batch_size: int = 32,
                 progress: bool = True) -> torch.Tensor:
    """Ablation-CAM maps (N, h, w): ReLU(Σ_k w_k A_k) with w_k = (y - y_k) / y, where y is the
    target's logit and y_k that logit with channel k of the layer set to zero (eq. 2-3).

    Only the network above the layer runs for each ablation: the layer's output, computed
    once per batch from the one image, is copied ``batch_size`` times with one channel zeroed
    in each copy, and those copies go on through the rest of the model. (Where something
    below the layer joins the network above it in a way that cannot take a batch of one
    beside a batch of many, the image itself is copied instead, and the whole model runs.)
    """
    _check_batch_size(batch_size)
    name = _defaults(model, layer)[0]
    with model_guard(model):  # how many times the layer runs in one pass (a ReLU module may be used twice)
        runs = []
        model.get_submodule(name).register_forward_hook(lambda *_: runs.append(None))
        logits, acts, name = layer_maps(model, x, name)
    classes = _classes(target, logits).tolist()
    n, k = acts.shape[:2]
    y = logits[torch.arange(n), classes].float().cpu()
    now = {}  # the channels the batch running now zeroes, one per copy, and the layer's runs so far

    def ablate(module, inputs, output):
        now["run"] += 1
        if now["run"] != len(runs):  # not the layer's last run: the maps weighed are the last run's
            return None
        chans = now["chans"]
        out = output.expand(len(chans), *output.shape[1:]).clone()
        out[torch.arange(len(chans)), chans] = 0
        return out

    yk, copy_input = torch.empty(n, k), False
    bar = progress_bar(n * k, progress, f"Ablation-CAM ({n * k} ablations)", "pass")
    try:
        with model_guard(model, eval=True), torch.no_grad():
            model.get_submodule(name).register_forward_hook(ablate)  # removed by the guard
            for i in range(n):
                for chans in _chunks(list(range(k)), batch_size):
                    now["chans"], now["run"] = torch.tensor(chans), 0
                    one = x[i:i + 1]
                    try:
                        out = model(one.expand(len(chans), *one.shape[1:]) if copy_input else one)
                    except RuntimeError:
                        if copy_input:
                            raise
                        copy_input, now["run"] = True, 0
                        out = model(one.expand(len(chans), *one.shape[1:]))
                    yk[i, chans] = out[:, classes[i]].float().cpu()
                    bar.update(len(chans))
    finally:
        bar.close()
    weights = _ratio(y[:, None] - yk, y[:, None].expand_as(yk)).to(acts.device)
    return _weighted_maps(weights, acts.float()).clamp(min=0).cpu()


def eigen_cam(model: nn.Module, x: torch.Tensor, target=None, layer=None, *,
              acts: torch.Tensor | None = None) -> torch.Tensor:
    """Eigen-CAM maps (N, h, w): each position's K channel values, centred over the positions,
    projected on their first principal component (the first right singular vector), then ReLU.

    A principal component has no sign of its own: it is chosen so that the projection rises
    where the layer is most active (a positive correlation with the sum over channels). The
    ``target`` is not read: Eigen-CAM shows the same map for every class.
    """
    if acts is None:
        acts = layer_maps(model, x, layer)[1]
    a = acts.detach().float().cpu()
    n, k, h, w = a.shape
    rows = a.flatten(2).transpose(1, 2)  # (N, h*w, K): one row per position
    rows = rows - rows.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(rows.double(), full_matrices=False)
    proj = (rows.double() @ vh[:, 0, :, None])[..., 0]  # (N, h*w)
    total = a.sum(dim=1).flatten(1).double()
    sign = torch.sign(((proj - proj.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))).sum(1))
    proj = proj * torch.where(sign == 0, 1.0, sign)[:, None].double()
    return proj.float().view(n, h, w).clamp(min=0)


def occlusion(model: nn.Module, x: torch.Tensor, target=None, *, window: int | None = None,
              stride: int | None = None, baseline: float = 0.0, batch_size: int = 32,
              progress: bool = True) -> torch.Tensor:
    """Occlusion maps (N, H, W): each pixel's mean, over the square windows that cover it, of how
    much the target's logit falls when that window is set to ``baseline`` (0: the mean colour
    for normalized inputs), in every colour channel.

    ``window`` (default: an eighth of the larger side) and ``stride`` (default: half the window)
    in pixels; the last row and column of windows are moved in to end at the image's edge, so
    every pixel is covered. One occluded pass per window and image, ``batch_size`` at a time.
    """
    check_input(x)
    _check_batch_size(batch_size)
    n, _, height, width = x.shape
    window = max(1, max(height, width) // 8) if window is None else window
    stride = max(1, window // 2) if stride is None else stride
    for what, v in (("window", window), ("stride", stride)):
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"{what} is a positive number of pixels, got {v!r}")
    if window > min(height, width):
        raise ValueError(f"window {window} is larger than the image ({height}×{width})")

    def starts(size):
        s = list(range(0, size - window + 1, stride))
        return s if s[-1] == size - window else [*s, size - window]

    corners = [(r, c) for r in starts(height) for c in starts(width)]
    with model_guard(model, eval=True), torch.no_grad():
        logits = model(x)
    classes = _classes(target, logits).tolist()
    y = logits[torch.arange(n), classes].float().cpu()

    def occluded(i, part):
        frames = x[i].expand(len(part), *x.shape[1:]).clone()
        for j, (r, c) in enumerate(part):
            frames[j, :, r:r + window, c:c + window] = baseline
        return i, frames

    batches = (occluded(i, part) for i in range(n) for part in _chunks(corners, batch_size))
    drop = y[:, None] - _scores(model, batches, classes, n * len(corners), progress,
                                f"Occlusion ({n * len(corners)} windows)").view(n, len(corners))
    total, count = torch.zeros(n, height, width), torch.zeros(height, width)
    for j, (r, c) in enumerate(corners):
        total[:, r:r + window, c:c + window] += drop[:, j, None, None]
        count[r:r + window, c:c + window] += 1
    return total / count
