"""Load the course model and ImageNet models by name, with their preprocessing and labels.

    >>> m = load_model("course")          # always there: shipped in course_utils/checkpoints/
    >>> x = m.batch([scene.image])        # (1, 3, 64, 64), normalised
    >>> m.top_classes(m.model(x))         # [[('star', 0.99), ...]]

ImageNet models (``"resnet18"``, ``"resnet50"``, ``"vgg16"``) come from torchvision's
weights API: preprocessing from ``weights.transforms()``, labels from
``weights.meta["categories"]``. Their weight files are read from torch's cache
(``torch.hub.get_dir()/checkpoints``). Nothing is downloaded unless you ask
(``download=True``, ``make weights`` or ``python -m course_utils.download``);
:func:`available_models` says what is there without touching the network.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from . import coursenet
from .hooks import model_guard

__all__ = [
    "MODEL_NAMES",
    "LoadedModel",
    "WeightsNotAvailableError",
    "available_models",
    "course_checkpoint_path",
    "download_weights",
    "load_model",
    "weights_path",
]

#: The shipped checkpoints are package data: they install with the course, editable or not.
CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
COURSE_CHECKPOINT = CHECKPOINTS / "coursenet.pt"


@dataclass(frozen=True)
class _ImageNetSpec:
    builder: Callable[..., nn.Module]
    weights: torchvision.models.WeightsEnum
    last_conv_layer: str  # where CAM-style methods usually look


def _imagenet_specs() -> dict[str, _ImageNetSpec]:
    tv = torchvision.models
    return {
        "resnet18": _ImageNetSpec(tv.resnet18, tv.ResNet18_Weights.IMAGENET1K_V1, "layer4"),
        "resnet50": _ImageNetSpec(tv.resnet50, tv.ResNet50_Weights.IMAGENET1K_V1, "layer4"),
        "vgg16": _ImageNetSpec(tv.vgg16, tv.VGG16_Weights.IMAGENET1K_V1, "features.29"),
    }


#: Every model name :func:`load_model` knows and the explorers offer.
MODEL_NAMES = ("course", "resnet18", "resnet50", "vgg16")
#: Lesson 10's model: the course architecture trained on biased scenes, so that it
#: learned the background instead of the shape. Loaded by name, never offered by default.
SHORTCUT = "shortcut"


class WeightsNotAvailableError(RuntimeError):
    """The weights are neither on this machine nor downloadable right now, or the
    file on this machine is damaged (the message names the file and what is wrong)."""


def course_checkpoint_path() -> Path:
    return Path(os.environ.get("COURSE_CHECKPOINT", COURSE_CHECKPOINT))


def _check_name(name: str) -> str:
    if name in MODEL_NAMES or name == SHORTCUT:
        return name
    close = difflib.get_close_matches(str(name), MODEL_NAMES, n=2, cutoff=0.4)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown model {name!r}.{hint} The models are: {', '.join(MODEL_NAMES)}.")


def weights_path(name: str) -> Path:
    """Where the weights of ``name`` are read from (whether or not the file exists)."""
    if _check_name(name) == "course":
        return course_checkpoint_path()
    if name == SHORTCUT:
        return COURSE_CHECKPOINT.with_name("shortcutnet.pt")
    url = _imagenet_specs()[name].weights.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def available_models() -> dict[str, bool]:
    """``{name: weights are on this machine}`` for every model. Never uses the network.

    It only checks that each weights file exists, so that it stays instant (it never
    reads the 100-500 MB ImageNet files): a damaged file is listed as available here,
    and :func:`load_model` reports what is wrong with it.
    """
    return {name: weights_path(name).is_file() for name in MODEL_NAMES}


# --- preprocessing ----------------------------------------------------------------


def _to_uint8_tensor(image) -> torch.Tensor:
    """An RGB image (H, W, 3) uint8 array or PIL image -> (3, H, W) uint8 tensor."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"expected an RGB image as an (H, W, 3) uint8 array, got shape {image.shape} "
            f"and dtype {image.dtype}; course_utils.images.load_image converts any image"
        )
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


class _CourseTransform:
    """Centre-crop to a square, resize to 64x64 if needed, scale to [0, 1], normalise."""

    def __init__(self, size: int = coursenet.INPUT_SIZE):
        self.size = size
        self.mean = torch.tensor(coursenet.MEAN).view(3, 1, 1)
        self.std = torch.tensor(coursenet.STD).view(3, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _, h, w = img.shape  # (channels, height, width)
        if (h, w) != (self.size, self.size):
            s = min(h, w)
            top, left = (h - s) // 2, (w - s) // 2  # rows cut above, columns cut on the left
            img = img[:, top : top + s, left : left + s]
            img = torchvision.transforms.functional.resize(img, [self.size, self.size], antialias=True)
        return (img.float() / 255.0 - self.mean) / self.std


# --- the loaded model -------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model in eval mode with everything needed to feed it and read its output."""

    name: str
    model: nn.Module
    categories: list[str]
    transform: Callable[[torch.Tensor], torch.Tensor]  # (3, H, W) uint8 -> normalised float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    last_conv_layer: str
    input_size: int  # the side of the square images the model is fed
    info: dict = field(default_factory=dict)

    def batch(self, images: Sequence) -> torch.Tensor:
        """RGB images (uint8 arrays or PIL images) -> one normalised (N, 3, H, W) batch."""
        if isinstance(images, np.ndarray) and images.ndim == 3 or isinstance(images, Image.Image):
            images = [images]
        tensors = [self.transform(_to_uint8_tensor(im)) for im in images]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            raise ValueError(f"images came out in different sizes {sorted(shapes)}; resize them first")
        device = next(self.model.parameters()).device
        return torch.stack(tensors).to(device)

    def to_display(self, x: torch.Tensor) -> np.ndarray:
        """Undo the normalisation: (N, 3, H, W) or (3, H, W) -> (…, H, W, 3) floats in [0, 1]."""
        mean = torch.tensor(self.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(3, 1, 1)
        img = (x.detach() * std + mean).clamp(0, 1)
        return img.movedim(-3, -1).cpu().numpy()

    def top_classes(self, logits: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
        """For each image, its ``k`` most likely classes as ``(name, probability)``."""
        if logits.ndim == 1:
            logits = logits.unsqueeze(0)
        k = min(k, logits.shape[1])
        probs = logits.detach().float().softmax(dim=1)
        p, idx = probs.topk(k, dim=1)
        return [
            [(self.categories[i], float(v)) for v, i in zip(pr.tolist(), ix.tolist())]
            for pr, ix in zip(p, idx)
        ]

    def predict(self, images: Sequence, k: int = 5) -> list[list[tuple[str, float]]]:
        """The top ``k`` classes of each image, always in eval mode: a model in train mode
        would predict with batch statistics and update its batch-norm running statistics.
        The model is handed back as it was (train mode included)."""
        x = self.batch(images)
        with model_guard(self.model), torch.no_grad():
            self.model.eval()
            logits = self.model(x)
        return self.top_classes(logits, k)


# --- loading ----------------------------------------------------------------------


def _repair_advice(name: str) -> str:
    """How to get a good weights file for ``name`` back."""
    if name in ("course", SHORTCUT):
        shipped = "shortcutnet.pt" if name == SHORTCUT else "coursenet.pt"
        retrain = "python -m course_utils.train" + (" --shortcut" if name == SHORTCUT else "")
        advice = (f"The checkpoint is shipped with the course: restore it with "
                  f"`git checkout course_utils/checkpoints/{shipped}` (or reinstall the course), "
                  f"or retrain it with `{retrain}`.")
        if name == "course" and course_checkpoint_path() != COURSE_CHECKPOINT:
            advice += " (The COURSE_CHECKPOINT environment variable points at this file; unset it to use the shipped one.)"
        return advice
    return f"Delete it and fetch it again: `python -m course_utils.download {name}`."


def _damaged(name: str, path: Path, what: str) -> WeightsNotAvailableError:
    return WeightsNotAvailableError(f"the weights file for {name!r} at {path} is unusable: {what}. {_repair_advice(name)}")


def _load_state(path: Path, name: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a half-written or foreign file
        raise _damaged(name, path, f"it cannot be read: it is damaged or not a PyTorch weights file "
                                   f"({type(exc).__name__})") from exc


def _few(keys: list[str], n: int = 3) -> str:
    """The first ``n`` keys, quoted, and how many more there are."""
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _load_weights(model: nn.Module, state, arch: str) -> str | None:
    """Load ``state`` into ``model``; if it does not fit, say why (else None): not a
    dict of tensors, other names or shapes than the ``arch`` architecture, NaN or inf.
    Keys torch fills in itself (``num_batches_tracked`` of old files) are not missing."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a state dict of weights"
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        return f"entries that are not a tensor: {_few(not_tensors)}"
    for k, v in model.state_dict().items():
        if k in state and state[k].shape != v.shape:
            return (f"{k} has shape {tuple(state[k].shape)} in the file, "
                    f"but the {arch} architecture needs {tuple(v.shape)}")
    keys = model.load_state_dict(state, strict=False)
    if keys.missing_keys or keys.unexpected_keys:
        return (f"these are not the {arch} architecture's weights (missing: {_few(keys.missing_keys) or 'none'}; "
                f"unexpected: {_few(keys.unexpected_keys) or 'none'})")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        return f"weights with NaN or infinite values: {_few(bad)}"
    return None


def _load_course(device, name: str = "course") -> LoadedModel:
    path = weights_path(name)
    if not path.is_file():
        which = "shortcut model's" if name == SHORTCUT else "course model's"
        raise WeightsNotAvailableError(f"the {which} checkpoint is missing: {path}. {_repair_advice(name)}")
    ckpt = _load_state(path, name)
    if not isinstance(ckpt, dict):
        raise _damaged(name, path, f"it holds a {type(ckpt).__name__}, not a course checkpoint "
                                   "(a dict with 'state_dict', 'classes', 'mean' and 'std')")
    absent = [k for k in ("state_dict", "classes", "mean", "std") if k not in ckpt]
    if absent:
        tensors_only = ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values())
        bare = " (it looks like a bare state dict)" if tensors_only else ""
        raise _damaged(name, path, f"it is not a course checkpoint{bare}: it has no {_few(absent, 4)} "
                                   f"entr{'y' if len(absent) == 1 else 'ies'}; the course saves the weights "
                                   "under 'state_dict' next to 'classes', 'mean' and 'std'")
    classes, mean, std = ckpt["classes"], ckpt["mean"], ckpt["std"]
    if not (isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes)):
        raise _damaged(name, path, f"its 'classes' are not a list of class names (got {type(classes).__name__})")
    if not all(isinstance(v, (list, tuple)) and len(v) == 3 for v in (mean, std)):
        raise _damaged(name, path, "its 'mean' and 'std' are not three numbers each")
    model = coursenet.CourseNet(n_classes=len(classes))
    problem = _load_weights(model, ckpt["state_dict"], "course")
    if problem:
        raise _damaged(name, path, problem)
    info = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return LoadedModel(
        name=name,
        model=model.to(device).eval(),
        categories=list(classes),
        transform=_CourseTransform(),
        mean=tuple(mean),
        std=tuple(std),
        last_conv_layer="features.relu5",
        input_size=coursenet.INPUT_SIZE,
        info=info,
    )


def _not_cached_message(name: str, path: Path) -> str:
    return (
        f"the ImageNet weights for {name!r} are not on this machine (looked for {path}). "
        f"To get them, run once while online: `make weights` "
        f"(or `python -m course_utils.download {name}`), or call load_model({name!r}, download=True). "
        "On Binder they are already in the image. Every lesson also works with the course model."
    )


def load_model(name: str = "course", *, download: bool = False, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model by name, in eval mode, with its preprocessing and class names.

    ``download=True`` fetches missing ImageNet weights into torch's cache first;
    by default nothing touches the network and missing weights raise
    :class:`WeightsNotAvailableError` with instructions. A damaged weights file
    (unreadable, another architecture's weights, a bare state dict where the course
    checkpoint is expected, NaN or infinite values) raises the same error, naming the
    file, what is wrong with it and how to get a good one back.
    """
    name = _check_name(name)
    if name in ("course", SHORTCUT):
        return _load_course(device, name)
    spec = _imagenet_specs()[name]
    path = weights_path(name)
    if not path.is_file():
        if not download:
            raise WeightsNotAvailableError(_not_cached_message(name, path))
        download_weights([name])
    model = spec.builder(weights=None)
    problem = _load_weights(model, _load_state(path, name), name)
    if problem:
        raise _damaged(name, path, problem)
    tf = spec.weights.transforms()
    return LoadedModel(
        name=name,
        model=model.to(device).eval(),
        categories=list(spec.weights.meta["categories"]),
        transform=tf,
        mean=tuple(tf.mean),
        std=tuple(tf.std),
        last_conv_layer=spec.last_conv_layer,
        input_size=int(tf.crop_size[0]),
        info={"weights": str(spec.weights), "file": str(path)},
    )


# --- downloading ------------------------------------------------------------------


def _fetch(url: str, dest: Path, timeout: float) -> None:
    """Download ``url`` to ``dest`` atomically, checking the hash in torchvision's file name."""
    from tqdm.auto import tqdm

    hash_prefix = dest.stem.rsplit("-", 1)[-1]
    tmp = dest.with_suffix(dest.suffix + ".part")
    sha = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                sha.update(chunk)
                bar.update(len(chunk))
    if not sha.hexdigest().startswith(hash_prefix):
        tmp.unlink(missing_ok=True)
        raise WeightsNotAvailableError(f"{url} downloaded with a wrong checksum; try again")
    tmp.replace(dest)


def download_weights(names: Sequence[str] | None = None, *, timeout: float = 30.0) -> dict[str, Path]:
    """Fetch ImageNet weights into torch's cache (those already there are skipped).

    ``names`` defaults to every ImageNet model. Raises
    :class:`WeightsNotAvailableError` if a download fails (offline, say).
    """
    names = [n for n in MODEL_NAMES if n != "course"] if names is None else [_check_name(n) for n in names]
    done = {}
    for name in names:
        path = weights_path(name)
        if name != "course" and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            url = _imagenet_specs()[name].weights.url
            try:
                _fetch(url, path, timeout)
            except (urllib.error.URLError, OSError) as exc:
                path.with_suffix(path.suffix + ".part").unlink(missing_ok=True)
                raise WeightsNotAvailableError(
                    f"could not download the weights for {name!r} from {url}: {exc}. "
                    "Are you online? Without a network every lesson still works with the course model."
                ) from exc
        done[name] = path
    return done
