"""Activation maximization (lesson 03): find an image that a unit of the network responds to.

Gradient ascent on the input (Erhan et al. 2009, "Visualizing Higher-Layer Features of a Deep
Network"; Simonyan et al. 2014, sec. 2), in three small, swappable parts:

* **parameterizations** — how the image is made from the numbers being optimized: :func:`pixels`
  (the pixels themselves) or :func:`fourier` (a scaled frequency spectrum with decorrelated colour;
  Olah et al. 2017, "Feature Visualization", Distill; Mordvintsev et al. 2018, "Differentiable Image
  Parameterizations"). Each returns an :class:`ImageParam`.
* **transforms** — random jitter, scale and rotation applied before each step (transformation
  robustness), composable with :func:`compose`; each takes the image and a ``torch.Generator``.
* **objectives** — :func:`channel`, :func:`neuron`, :func:`class_logit`, :func:`diversity`; they
  add, subtract and scale (``channel(...) + 0.1 * diversity(...)``).

:func:`visualize` runs the loop. The forward pass stops at the deepest layer the objective needs
(:func:`~course_utils.hooks.capture` with ``stop_early``: the rest of the network is not computed);
the model's parameters are frozen inside the guard, so only the image gets gradients. Hooks never
outlive a call and the model comes back unchanged. Same seed, same image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch.nn import functional as F

from .hooks import capture, layer_names, model_guard
from .targets import resolve_targets

__all__ = ["COLOUR_SQRT", "ImageParam", "Objective", "Result", "channel", "class_logit", "compose", "diversity",
           "fourier", "gaussian_blur", "high_frequency_energy", "jitter", "neuron", "pad", "pixels", "random_rotate",
           "random_scale", "standard_transforms", "visualize"]

# --- parameterizations ----------------------------------------------------------------

#: A square root of the colour covariance of natural photos: U·sqrt(S) from the SVD of the RGB
#: covariance of the course's five sample photos (1.17 M pixels), scaled so that its largest column
#: has norm 1. Multiplying three *uncorrelated* channels by it gives colours that vary together the
#: way photo colours do (tests recompute it).
COLOUR_SQRT = torch.tensor([[-0.6146, 0.2968, 0.0255],
                            [-0.5884, -0.0664, -0.0656],
                            [-0.5253, -0.2729, 0.0437]])


@dataclass
class ImageParam:
    """What is optimized (``params``) and how an image (N, 3, H, W) in [0, 1] is made from it."""

    params: list[torch.Tensor]
    make: Callable[[], torch.Tensor]
    kind: str
    pixels: torch.Tensor | None = None  # for the pixel parameterization: the pixels themselves

    def __call__(self) -> torch.Tensor:
        return self.make()


def pixels(n: int = 1, size: int = 64, seed: int = 0, sd: float = 0.05, device="cpu") -> ImageParam:
    """The plain parameterization: the pixels are the parameters, starting from grey plus Gaussian
    noise of standard deviation ``sd``. They are clipped to [0, 1] after each step by :func:`visualize`."""
    p = (0.5 + sd * torch.randn((n, 3, size, size), generator=torch.Generator().manual_seed(seed))).clamp(0, 1)
    p = p.to(device).requires_grad_(True)  # drawn on the CPU: the same start on any device
    return ImageParam([p], lambda: p, "pixels", pixels=p)


def fourier(n: int = 1, size: int = 64, seed: int = 0, decay: float = 1.0, sd: float = 0.1,
            decorrelate: bool = True, device="cpu") -> ImageParam:
    """The image as a frequency spectrum, each frequency scaled by 1/f^decay, so that a gradient step
    changes smooth patterns about as much as fine ones; then colours decorrelated (:data:`COLOUR_SQRT`)
    and squashed into [0, 1] with a sigmoid. ``sd`` is roughly the spread of the start before the sigmoid."""
    # Spectrum values of size 1/gain make pixels of size about 1 (before the sigmoid); the
    # gain sets how far one optimizer step moves the image (about as far as for pixels).
    gain = 4.0
    freq = torch.sqrt(torch.fft.rfftfreq(size)[None, :] ** 2 + torch.fft.fftfreq(size)[:, None] ** 2)
    scale = 1.0 / freq.clamp(min=1.0 / size) ** decay  # 1/f: low frequencies get large steps
    scale = (gain * scale / scale.pow(2).mean().sqrt()).to(device)
    spec = sd / gain * torch.randn((n, 3, size, size // 2 + 1, 2), generator=torch.Generator().manual_seed(seed))
    spec = spec.to(device).requires_grad_(True)
    colours = COLOUR_SQRT.to(device)

    def make() -> torch.Tensor:
        img = torch.fft.irfft2(torch.view_as_complex(spec) * scale, s=(size, size), norm="ortho")
        if decorrelate:
            img = torch.einsum("ij,njhw->nihw", colours, img)
        return torch.sigmoid(img)
    return ImageParam([spec], make, "fourier")


# --- transforms --------------------------------------------------------------------------

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _randint(gen: torch.Generator, lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def jitter(d: int) -> Transform:
    """Shift the image by up to ``d`` pixels in each direction (wrapping around)."""
    return lambda img, gen: torch.roll(img, shifts=(_randint(gen, -d, d), _randint(gen, -d, d)), dims=(2, 3))


def pad(w: int, value: float = 0.5) -> Transform:
    """A border of ``w`` grey pixels, so that jitter and rotation do not wrap the edges in."""
    return lambda img, gen: F.pad(img, (w, w, w, w), value=value)


def random_scale(scales: Sequence[float]) -> Transform:
    """Resize by a factor drawn from ``scales`` (bilinear)."""
    def t(img, gen):
        s = scales[_randint(gen, 0, len(scales) - 1)]
        if s == 1:
            return img
        size = [max(1, round(img.shape[-2] * s)), max(1, round(img.shape[-1] * s))]
        return F.interpolate(img, size=size, mode="bilinear", align_corners=False)
    return t


def random_rotate(degrees: float) -> Transform:
    """Rotate by an angle drawn uniformly from [-degrees, degrees]."""
    def t(img, gen):
        a = math.radians(degrees * (2 * float(torch.rand((), generator=gen)) - 1))
        rot = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=img.dtype,
                           device=img.device)
        grid = F.affine_grid(rot.expand(img.shape[0], 2, 3), list(img.shape), align_corners=False)
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return t


def compose(*transforms: Transform) -> Transform:
    """Apply ``transforms`` in order."""
    def t(img, gen):
        for tr in transforms:
            img = tr(img, gen)
        return img
    return t


def standard_transforms(size: int = 64) -> Transform:
    """Pad, jitter, scale, rotate, jitter: the robustness recipe of Olah et al. 2017,
    with distances scaled to the image size (their values are for 224² images)."""
    k = max(1, round(size / 32))
    return compose(pad(3 * k), jitter(2 * k), random_scale([1, 0.975, 1.025, 0.95, 1.05]), random_rotate(5), jitter(k))


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur (a regularizer of Yosinski et al. 2015)."""
    r = max(1, math.ceil(2 * sigma))
    x = torch.arange(-r, r + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    c = img.shape[1]
    img = F.conv2d(F.pad(img, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(img, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def high_frequency_energy(img: torch.Tensor) -> torch.Tensor:
    """Per image, the mean squared difference between neighbouring pixels: large for
    noisy, high-frequency images, small for smooth ones."""
    dx = img[..., :, 1:] - img[..., :, :-1]
    dy = img[..., 1:, :] - img[..., :-1, :]
    return dx.pow(2).flatten(1).mean(1) + dy.pow(2).flatten(1).mean(1)


# --- objectives ------------------------------------------------------------------------------

@dataclass
class Objective:
    """A score per image (N,) computed from the captured activations and the logits.
    ``layers`` are the layers it reads; ``needs_logits`` says it needs the whole network."""

    fn: Callable[[dict, torch.Tensor | None], torch.Tensor]
    layers: tuple[str, ...] = ()
    needs_logits: bool = False
    name: str = "objective"

    def __call__(self, acts: dict, logits: torch.Tensor | None = None) -> torch.Tensor:
        return self.fn(acts, logits)

    def __add__(self, other):
        if isinstance(other, (int, float)):
            return replace(self, fn=lambda a, lg: self(a, lg) + other, name=f"{self.name} + {other}")
        return Objective(lambda a, lg: self(a, lg) + other(a, lg), tuple(dict.fromkeys(self.layers + other.layers)),
                         self.needs_logits or other.needs_logits, f"{self.name} + {other.name}")
    __radd__ = __add__

    def __neg__(self):
        return replace(self, fn=lambda a, lg: -self(a, lg), name=f"-{self.name}")

    def __sub__(self, other):
        return self + (-other)

    def __mul__(self, k: float):
        if not isinstance(k, (int, float)):
            raise TypeError("objectives are scaled by numbers; to combine two, add them")
        return replace(self, fn=lambda a, lg: k * self(a, lg), name=f"{k} × {self.name}")
    __rmul__ = __mul__


def _per_image(c, n: int) -> torch.Tensor:
    idx = [c] * n if isinstance(c, int) else list(c)
    if len(idx) != n:
        raise ValueError(f"{len(idx)} channels given for a batch of {n} images")
    return torch.tensor(idx, dtype=torch.long)


def _spatial(acts: dict, layer: str) -> torch.Tensor:
    a = acts[layer]
    if a.ndim != 4:
        raise ValueError(f"layer {layer!r} gives shape {tuple(a.shape)}; channel and neuron objectives need "
                         "(N, C, H, W) maps (for a class score use class_logit)")
    return a


def channel(layer: str, c: int | Sequence[int]) -> Objective:
    """The mean activation of channel ``c`` of ``layer`` (one channel per image if a list)."""
    def fn(acts, logits):
        a = _spatial(acts, layer)
        idx = _per_image(c, a.shape[0])
        if int(idx.max()) >= a.shape[1] or int(idx.min()) < 0:
            raise ValueError(f"channel {int(idx.max())} is out of range: {layer!r} has channels 0..{a.shape[1] - 1}")
        return a[torch.arange(a.shape[0]), idx].mean(dim=(1, 2))
    return Objective(fn, (layer,), name=f"{layer}:{c}")


def neuron(layer: str, c: int | Sequence[int], y: int | None = None, x: int | None = None) -> Objective:
    """The activation of channel ``c`` at one position (default: the centre of the map)."""
    def fn(acts, logits):
        a = _spatial(acts, layer)
        idx = _per_image(c, a.shape[0])
        yy = a.shape[2] // 2 if y is None else y
        xx = a.shape[3] // 2 if x is None else x
        if not (0 <= yy < a.shape[2] and 0 <= xx < a.shape[3]):
            raise ValueError(f"position ({yy}, {xx}) is outside {layer!r}'s {a.shape[2]}×{a.shape[3]} maps")
        return a[torch.arange(a.shape[0]), idx, yy, xx]
    return Objective(fn, (layer,), name=f"{layer}:{c}@centre" if y is None else f"{layer}:{c}@({y},{x})")


def class_logit(c: int | Sequence[int]) -> Objective:
    """The logit of class ``c``, one class per image if a list (not its softmax probability: that can
    rise by pushing the other classes down instead of raising this one)."""
    return Objective(lambda acts, logits: resolve_targets(logits, c), (), needs_logits=True, name=f"logit {c}")


def diversity(layer: str) -> Objective:
    """Minus the mean cosine similarity of each image's Gram matrix at ``layer`` with the
    other images' (Olah et al. 2017, "diversity"): adding it pushes a batch apart."""
    def fn(acts, logits):
        a = _spatial(acts, layer)
        n, c = a.shape[:2]
        if n < 2:
            return a.new_zeros(n)
        flat = a.flatten(2)
        gram = F.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1)  # (N, C*C)
        sim = gram @ gram.T
        return -(sim.sum(1) - sim.diagonal()) / (n - 1)
    return Objective(fn, (layer,), name=f"diversity({layer})")


# --- the loop ------------------------------------------------------------------------------------

@dataclass
class Result:
    """``images``: (N, 3, H, W) in [0, 1]; ``history``: the objective per step, (steps, N);
    ``steps``: how many steps ran (fewer than asked when stopped)."""

    images: torch.Tensor
    history: torch.Tensor
    steps: int
    objective: str = ""
    info: dict = field(default_factory=dict)

    def as_numpy(self):
        """The images as (N, H, W, 3) floats for plotting."""
        return self.images.permute(0, 2, 3, 1).numpy()


def visualize(model, objective: Objective, *, param: ImageParam | None = None, size: int = 64, n: int = 1,
              transforms: Transform | None = None, steps: int = 128, lr: float = 0.05, l2: float = 0.0,
              blur_every: int = 0, blur_sigma: float = 0.5, mean=None, std=None, seed: int = 0, progress: bool = True,
              stop: Callable[[], bool] | None = None, callback: Callable[[int, torch.Tensor], None] | None = None,
              callback_every: int = 16) -> Result:
    """Gradient ascent on the image: ``steps`` Adam steps of size ``lr`` on ``param`` (default
    :func:`pixels` of ``n`` images of ``size``²) to raise ``objective``.

    ``model`` is an ``nn.Module`` (give the ``mean`` and ``std`` its inputs are normalized with) or a
    :class:`~course_utils.models.LoadedModel` (they are taken from it). The image is made on the model's
    device (give ``pixels`` / ``fourier`` a ``device`` when you pass your own). ``transforms`` (with their
    own generator, seeded by ``seed + 1``) are applied to the image before each step. For the pixel
    parameterization, ``l2`` pulls pixels towards grey and ``blur_every`` > 0 blurs them every that many
    steps (Yosinski et al. 2015, "Understanding Neural Networks Through Deep Visualization"). ``stop()``
    is asked before each step (a Stop button); ``callback(step, image)`` runs every ``callback_every``
    steps (live pictures). ``progress`` shows a bar.
    """
    if hasattr(model, "model") and hasattr(model, "mean"):  # a LoadedModel
        mean, std, model = model.mean if mean is None else mean, model.std if std is None else std, model.model
    if mean is None or std is None:
        raise ValueError("give the mean and std the model's inputs are normalized with (or pass a LoadedModel)")
    if not isinstance(objective, Objective):
        raise TypeError(f"the objective is built with channel(), neuron(), class_logit() ..., got {objective!r}")
    if steps < 0 or lr <= 0:
        raise ValueError(f"steps must be >= 0 and lr > 0, got steps={steps}, lr={lr}")
    if param is None:  # made on the model's device
        param = pixels(n, size, seed, device=next(model.parameters(), torch.empty(0)).device)
    names = layer_names(model, objective.layers)  # a wrong name fails before any work
    mean_t, std_t = (torch.as_tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (mean, std))
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(param.params, lr=lr)
    history = []
    from tqdm.auto import tqdm
    bar = tqdm(total=steps, desc=f"maximizing {objective.name}", unit="step", disable=not progress)
    with model_guard(model), torch.enable_grad(), bar:
        model.eval()
        model.requires_grad_(False)  # only the image learns; no parameter .grad is written
        for step in range(steps):
            if stop is not None and stop():
                break
            img = param()
            x = transforms(img, gen) if transforms is not None else img
            logits = None  # stays None when the pass stops at the objective's layers
            with capture(model, names, detach=False, stop_early=not objective.needs_logits) as acts:
                logits = model((x - mean_t.to(x)) / std_t.to(x))
            missing = [name for name in names if name not in acts]
            if missing:
                raise RuntimeError(f"layer(s) {missing} did not run during the forward pass")
            score = objective(acts, logits)
            loss = -score.sum()
            if l2 and param.pixels is not None:
                loss = loss + l2 * (param.pixels - 0.5).pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward(inputs=param.params)
            opt.step()
            with torch.no_grad():
                if param.pixels is not None:
                    if blur_every and (step + 1) % blur_every == 0:
                        param.pixels.copy_(gaussian_blur(param.pixels, blur_sigma))
                    param.pixels.clamp_(0, 1)
            history.append(score.detach())
            bar.update(1)
            if callback is not None and (step + 1) % callback_every == 0:
                with torch.no_grad():
                    callback(step + 1, param().detach())
    with torch.no_grad():
        images = param().detach().clamp(0, 1)
    hist = torch.stack(history) if history else torch.zeros(0, images.shape[0])
    return Result(images, hist, len(history), objective.name)
