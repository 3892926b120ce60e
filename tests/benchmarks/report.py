"""The performance report: what each method costs, as a multiple of one forward pass.

    .venv/bin/python tests/benchmarks/report.py [--models course efficientnet_lite0 resnet50 vgg16] [--reps 7]
                                                [--markdown FILE] [--no-peers] [--no-explorers] [--quick]

For each model (the trained course model at 64², EfficientNet-Lite0 with its ImageNet
weights on the cat photo, ResNet-50 and VGG-16 at 224² with random weights; CPU, batch 1, eval mode, torch's default number of threads) every
method of the course is timed, and so is the same work done by the peer libraries
that are installed (``pip install -e ".[bench]"``: captum, grad-cam, torchcam,
torch-lucent). The headline is a ratio: the method's time over the forward-only
time of the same model in the same run, so that a slow or busy machine changes the
milliseconds but hardly the ratios. Each time is the median of ``--reps`` rounds after
one warm-up round; the cases of a model are interleaved round by round, in a new
(seeded) order each round, so that machine noise and neighbours hit them alike. "autograd floor" is a forward pass and
``torch.autograd.grad`` to the input written inline, with no library code: every
gradient to the input costs at least that.

Then the explorers' latencies on the course model (scenes) and on EfficientNet-Lite0
(photos): from setting a control's
``.value`` to the new picture (the redraw is synchronous outside a kernel), with the
explorer's caches emptied first where the change is meant to compute something new.

Peer libraries may change the model they are given (hooks, replaced ReLUs), so each
gets its own copy; one that fails with this torch shows "failed: <reason>" in its
cells instead of stopping the report. ``--quick`` (the unit test) runs the course
model with one round and tiny settings: its numbers mean nothing, its shape is checked.
"""

from __future__ import annotations

import os

# NumPy's BLAS (OpenBLAS) and OpenCV (pytorch-grad-cam resizes its maps with it) keep thread pools
# that go on spinning for a while after a call, taking the cores from the torch call timed next: after
# pytorch-grad-cam's EigenCAM (a NumPy SVD, OpenCV resizes) the next case measured 2-3x its time, and
# still 1.15x with NumPy alone held back, whoever's case it was. Torch owns the cores here: one thread each.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OPENCV_FOR_THREADS_NUM", "1")

import argparse
import contextlib
import copy
import dataclasses
import datetime
import functools
import importlib
import importlib.metadata
import inspect
import io
import platform
import random
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from course_utils import cam, features, optvis, widgets
from course_utils.hooks import get_layer
from course_utils.images import sample_photo
from course_utils.methods import METHODS as REGISTRY
from course_utils.methods import Explainer
from course_utils.models import IMAGENET_MEAN, MODELS, load_model
from course_utils.scenes import make_scenes
from course_utils.widgets.compare import default_panels

# --- what is measured ----------------------------------------------------------------------

FORWARD = "forward only"
FLOOR = "autograd floor (no library code)"
FEATURES = "feature maps of one layer"
VANILLA = "vanilla gradient"
GUIDED = "guided backprop"
DECONV = "deconvnet"
SMOOTH = "SmoothGrad, per noisy sample"
CAM = "CAM"
GRADCAM = "Grad-CAM (last block)"
SWITCH = "Grad-CAM class switch (kept forward)"
GUIDED_GC = "Guided Grad-CAM"
OPTVIS = "activation max., per step"
IG = "Integrated Gradients"
#: The registry's methods (course_utils.methods.METHODS), by the label of their row.
REGISTRY_ROWS = {{"SmoothGrad": SMOOTH, "Grad-CAM": GRADCAM}.get(name, name): name for name in REGISTRY}
#: The rows of every model's table, in order: the forward pass and the autograd floor, the
#: feature maps, every method of the registry, the class switch, activation maximization.
METHODS = [FORWARD, FLOOR, FEATURES, *REGISTRY_ROWS, SWITCH, OPTVIS]
#: The methods of hundreds of passes (one per channel, window or path point): timed in ``heavy_reps``
#: rounds after one warm-up, and on :data:`HEAVY_MODELS` only: VGG-16's 512 channels at 224² would add
#: minutes for nothing new.
HEAVY = [row for row, name in REGISTRY_ROWS.items() if REGISTRY[name].many_passes and row != SMOOTH]
HEAVY_MODELS = ("course", "efficientnet_lite0", "resnet50")
NOT_TIMED = "not timed (many passes)"

OURS = "ours"
#: Peer column -> (module imported, distribution whose version is shown).
PEERS = {
    "captum": ("captum", "captum"),
    "grad-cam": ("pytorch_grad_cam", "grad-cam"),
    "torchcam": ("torchcam", "torchcam"),
    "lucent": ("lucent", "torch-lucent"),
}
COLUMNS = [OURS, *PEERS]

NOT_INSTALLED = "not installed"
NOT_APPLICABLE = "n/a"  # the method cannot work on this model (CAM on VGG-16)
NO_SUCH_METHOD = "—"  # the library does not offer it
RELU_MODULES_ONLY = "n/a: nn.ReLU only"  # the peer's ReLU rule hooks nn.ReLU modules: a ReLU6 network gets none


@dataclass(frozen=True)
class ModelSpec:
    """How a model is built and where each method looks."""

    size: int
    last: str  # Grad-CAM's layer: the last block (the model record's gradcam_layer)
    middle: str  # feature maps and activation maximization
    cam_layer: str | None  # None: CAM does not apply (no global average pooling + one linear layer)
    other: int  # a second class, for the class switch


MODEL_SPECS = {
    name: ModelSpec(MODELS[name].input_size, MODELS[name].gradcam_layer, middle, MODELS[name].cam_layer, other=other)
    for name, middle, other in [("course", "features.relu3", 3), ("efficientnet_lite0", "blocks.10", 285),
                                ("resnet50", "layer3", 285), ("vgg16", "features.15", 285)]
}
CHANNEL = 11  # the unit activation maximization raises
IMAGENET_CLASS = 281  # "tabby cat": the class explained on ImageNet models


@dataclass(frozen=True)
class Settings:
    reps: int = 7
    smoothgrad_samples: int = 4  # noisy copies, in one batch; the time is divided by their number
    optvis_steps: int = 4  # steps per run; the time is divided by their number
    explorer_reps: int = 7
    warmup: bool = True  # one untimed round first
    heavy_reps: int = 1  # timed rounds of the methods of many passes (each call is seconds long), after a warm-up
    masked_batch: int = 32  # images per batch of those methods, ours and the peers'
    ig_steps: int = 32  # Integrated Gradients' steps

    @property
    def rounds(self) -> int:
        return self.reps + self.warmup

    @property
    def explorer_rounds(self) -> int:
        return self.explorer_reps + self.warmup

    @classmethod
    def quick(cls) -> Settings:
        """For the unit test: every case runs once, untimed warm-up skipped."""
        return cls(reps=1, smoothgrad_samples=2, optvis_steps=2, explorer_reps=1, warmup=False, ig_steps=4)

    def for_case(self, method: str) -> Settings:
        """The settings the case of ``method`` is timed with (fewer rounds for the methods of many passes)."""
        # with a warm-up still: the first call at a new batch size pays for oneDNN's new kernels, and
        # without one the case timed first in the round (ours) pays for the others
        return dataclasses.replace(self, reps=self.heavy_reps) if method in HEAVY else self


# --- the result -------------------------------------------------------------------------------


@dataclass
class Cell:
    """One table cell: a measured time (seconds per image, or per step / per sample)
    and its ratio to the forward pass, or a note saying why there is none."""

    seconds: float | None = None
    ratio: float | None = None
    note: str = ""

    def text(self) -> str:
        return f"{self.ratio:.2f}" if self.ratio is not None else self.note


@dataclass
class ModelResult:
    name: str
    size: int
    forward_seconds: float
    rows: dict[str, dict[str, Cell]]  # method -> column -> cell


@dataclass
class ExplorerRow:
    explorer: str
    change: str
    seconds: float | None
    note: str = ""
    model: str = "course"


@dataclass
class Report:
    header: dict[str, str]
    peers: dict[str, str]  # column -> version, NOT_INSTALLED or "failed: ..."
    settings: Settings
    models: list[ModelResult] = field(default_factory=list)
    explorers: list[ExplorerRow] = field(default_factory=list)


# --- the machine and the peers ------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (Linux), else what Python knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_header() -> dict[str, str]:
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown"
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "cpu": f"{cpu_model()} ({os.cpu_count()} logical cores)",
        "load": load,
    }


def short_reason(exc: BaseException) -> str:
    """``failed: <type>: <first line of the message>``, short enough for a table cell."""
    lines = str(exc).strip().splitlines()
    msg = lines[0] if lines else ""
    msg = msg if len(msg) <= 48 else msg[:45] + "..."
    return f"failed: {type(exc).__name__}" + (f": {msg}" if msg else "")


def peer_status() -> dict[str, str]:
    """For each peer: its version if it imports, else ``not installed`` or ``failed: ...``."""
    status = {}
    for column, (module, dist) in PEERS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(module)
        except ImportError:
            status[column] = NOT_INSTALLED
            continue
        except Exception as exc:  # noqa: BLE001 (installed, but does not work with this torch)
            status[column] = short_reason(exc)
            continue
        try:
            status[column] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            status[column] = "installed"
    return status


def peer_ok(status: str) -> bool:
    return status != NOT_INSTALLED and not status.startswith("failed")


# --- a model, ready to be measured ---------------------------------------------------------------


@dataclass
class Bench:
    """A model in eval mode with one input, the class explained, and a copy per peer."""

    name: str
    spec: ModelSpec
    model: nn.Module
    x: torch.Tensor
    target: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    copies: dict[str, nn.Module] = field(default_factory=dict)

    def model_for(self, column: str) -> nn.Module:
        """Ours, or a peer's own deep copy (made once)."""
        if column == OURS:
            return self.model
        if column not in self.copies:
            self.copies[column] = copy.deepcopy(self.model)
        return self.copies[column]


def build_bench(name: str) -> Bench:
    """The course model on a scene, or an ImageNet architecture with random weights
    (seeded; never downloaded) on the cat photo, preprocessed as torchvision does."""
    spec = MODEL_SPECS[name]
    if name == "course":
        loaded = load_model("course")
        scene = make_scenes(1, seed=0)[0]
        return Bench(name, spec, loaded.model, loaded.batch([scene.image]), scene.label, loaded.mean, loaded.std)
    record = MODELS[name]  # the architecture and preprocessing load_model uses
    if record.source == "package":  # real weights that install with the course: the model itself
        loaded = load_model(name)
        return Bench(name, spec, loaded.model, loaded.batch([sample_photo("cat")]), IMAGENET_CLASS, loaded.mean,
                     loaded.std)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = record.build().eval()
    tf = record.tv_weights.transforms()  # the preprocessing only: nothing is downloaded
    photo = torch.from_numpy(np.ascontiguousarray(sample_photo("cat"))).permute(2, 0, 1)
    return Bench(name, spec, model, tf(photo).unsqueeze(0), IMAGENET_CLASS, tuple(tf.mean), tuple(tf.std))


# --- the cases -------------------------------------------------------------------------------------


@dataclass
class Timed:
    """``run(setup())`` is timed; ``setup`` and ``teardown(state)`` are not. The time
    is divided by ``per`` (samples or steps)."""

    run: Callable[[Any], Any]
    setup: Callable[[], Any] = lambda: None
    teardown: Callable[[Any], None] | None = None
    per: int = 1


def _ours(method: str, b: Bench, s: Settings) -> Timed:
    m, x, c, spec = b.model, b.x, b.target, b.spec
    if method == FORWARD:
        def forward(_):
            with torch.no_grad():
                m(x)
        return Timed(forward)
    if method == FLOOR:
        def floor(_):
            xg = x.detach().clone().requires_grad_(True)
            torch.autograd.grad(m(xg)[0, c], xg)
        return Timed(floor)
    if method == FEATURES:
        return Timed(lambda _: features.feature_maps(m, x, spec.middle))
    if method in REGISTRY_ROWS:  # each from scratch: a new Explainer, holding the one layer it needs
        name = REGISTRY_ROWS[method]
        layer = {"cam_layer": spec.cam_layer, "gradcam_layer": spec.last, None: None}[REGISTRY[name].layer]
        n = s.smoothgrad_samples if method == SMOOTH else 1
        options = {"samples": n, "batch_size": n, "progress": False} if method == SMOOTH else {}
        if method in HEAVY:
            options = {"batch_size": s.masked_batch, "progress": False,
                       **({"steps": s.ig_steps} if method == IG else {})}
        return Timed(lambda _: Explainer(m, x, [layer] if layer else [])(name, c, layer, **options), per=n)
    if method == SWITCH:
        return Timed(lambda g: g.map(spec.other), setup=lambda: cam.GradCAM(m, x, spec.last))
    if method == OPTVIS:
        n, size = s.optvis_steps, spec.size

        def ascend(_):
            optvis.visualize(m, optvis.channel(spec.middle, CHANNEL), param=optvis.fourier(1, size, seed=0),
                             size=size, steps=n, transforms=optvis.standard_transforms(size), mean=b.mean, std=b.std,
                             progress=False)
        return Timed(ascend, per=n)
    raise KeyError(method)


def _captum(method: str, b: Bench, s: Settings) -> Timed:
    from captum import attr

    m, x, c, spec = b.model_for("captum"), b.x, b.target, b.spec
    if method in (VANILLA, GUIDED, DECONV):
        kind = {VANILLA: attr.Saliency, GUIDED: attr.GuidedBackprop, DECONV: attr.Deconvolution}[method]
        extra = {"abs": False} if method == VANILLA else {}
        return Timed(lambda _: kind(m).attribute(x, target=c, **extra))
    if method == SMOOTH:
        n = s.smoothgrad_samples
        sigma = 0.15 * float(x.max() - x.min())  # the noise of saliency.smoothgrad's default

        def smooth(_):
            attr.NoiseTunnel(attr.Saliency(m)).attribute(x, nt_type="smoothgrad", nt_samples=n,
                                                          nt_samples_batch_size=n, stdevs=sigma, target=c, abs=False)
        return Timed(smooth, per=n)
    if method == GRADCAM:
        return Timed(lambda _: attr.LayerGradCam(m, get_layer(m, spec.last)).attribute(x, target=c,
                                                                                      relu_attributions=True))
    if method == GUIDED_GC:
        return Timed(lambda _: attr.GuidedGradCam(m, get_layer(m, spec.last)).attribute(x, target=c))
    if method == "Input × Gradient":
        return Timed(lambda _: attr.InputXGradient(m).attribute(x, target=c))
    if method == IG:  # the course's rule: the midpoints of a Riemann sum, all steps in one batch of 32
        return Timed(lambda _: attr.IntegratedGradients(m).attribute(
            x, target=c, n_steps=s.ig_steps, method="riemann_middle", internal_batch_size=s.masked_batch))
    if method == "Occlusion":  # the course's default windows: an eighth of the side, half of that as stride
        side = x.shape[-1] // 8
        return Timed(lambda _: attr.Occlusion(m).attribute(
            x, target=c, sliding_window_shapes=(3, side, side), strides=(3, side // 2, side // 2),
            perturbations_per_eval=s.masked_batch))
    raise KeyError(method)


def _grad_cam(method: str, b: Bench, s: Settings) -> Timed:
    import pytorch_grad_cam as gc
    from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    m, c, spec = b.model_for("grad-cam"), b.target, b.spec
    fresh = b.x.clone  # GuidedBackpropReLUModel sets requires_grad on the input it is given

    def grad_cam(x):
        # GuidedBackpropReLUModel hands the model back with every ReLU replaced by one shared
        # nn.ReLU, which named_modules() lists once only: look the layer up by its path, each call.
        layer = functools.reduce(getattr, spec.last.split("."), m)
        with GradCAM(model=m, target_layers=[layer]) as g:
            return g(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0]

    if method == GRADCAM:
        return Timed(grad_cam, setup=fresh)
    if method == GUIDED:
        return Timed(lambda x: GuidedBackpropReLUModel(m)(x, target_category=c), setup=fresh)
    if method == GUIDED_GC:  # the recipe of its README: the CAM mask times guided backprop
        return Timed(lambda x: grad_cam(x)[..., None] * GuidedBackpropReLUModel(m)(x, target_category=c),
                     setup=fresh)
    kinds = {"Grad-CAM++": gc.GradCAMPlusPlus, "XGrad-CAM": gc.XGradCAM, "LayerCAM": gc.LayerCAM,
             "HiResCAM": gc.HiResCAM, "Score-CAM": gc.ScoreCAM, "Ablation-CAM": gc.AblationCAM,
             "Eigen-CAM": gc.EigenCAM}
    if method in kinds:
        # A copy that GuidedBackpropReLUModel never touched: after it, every ReLU is one shared module,
        # so hooks on the layer would fire at every ReLU of the network (EigenCAM then takes an SVD of
        # VGG-16's first 224×224 maps: 20 GB), and AblationCAM, which swaps the target layer found by
        # identity for its own while it runs, would swap the first ReLU. Ablation-CAM gets its own.
        own = b.model_for("grad-cam, ablation" if method == "Ablation-CAM" else "grad-cam, CAMs")

        def other_cam(x):
            layer = functools.reduce(getattr, spec.last.split("."), own)
            with kinds[method](model=own, target_layers=[layer]) as g, contextlib.redirect_stderr(io.StringIO()):
                g.batch_size = s.masked_batch  # Score-CAM's and Ablation-CAM's masked passes per batch
                return g(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0]
        return Timed(other_cam, setup=fresh)
    raise KeyError(method)


def _torchcam(method: str, b: Bench, s: Settings) -> Timed:
    from torchcam import methods

    m, x, c, spec = b.model_for("torchcam"), b.x, b.target, b.spec
    if method == CAM:
        def cam_(_):
            with methods.CAM(m, target_layer=spec.cam_layer, fc_layer="fc") as ex, torch.no_grad():
                ex(c, m(x))
        return Timed(cam_)
    kinds = {GRADCAM: methods.GradCAM, "Grad-CAM++": methods.GradCAMpp, "XGrad-CAM": methods.XGradCAM,
             "LayerCAM": methods.LayerCAM}
    if method in kinds:
        def grad_cam(_):
            with kinds[method](m, target_layer=spec.last) as ex:
                ex(c, m(x))
        return Timed(grad_cam)
    if method == "Score-CAM":
        def score_cam(_):
            with methods.ScoreCAM(m, target_layer=spec.last, batch_size=s.masked_batch) as ex, torch.no_grad():
                ex(c, m(x))
        return Timed(score_cam)
    if method == SWITCH:
        def kept():
            ex = methods.GradCAM(m, target_layer=spec.last)
            return ex, m(x)
        return Timed(lambda state: state[0](spec.other, state[1], retain_graph=True), setup=kept,
                     teardown=lambda state: state[0].remove_hooks())
    raise KeyError(method)


def _lucent(method: str, b: Bench, s: Settings) -> Timed:
    from lucent.optvis import objectives, param, render, transform

    if method != OPTVIS:
        raise KeyError(method)
    m, spec, n = b.model_for("lucent"), b.spec, s.optvis_steps
    course = b.name == "course"
    own = tuple(b.mean) != IMAGENET_MEAN
    if own:  # lucent normalizes with ImageNet's statistics; the course model and EfficientNet have their own
        mean = torch.tensor(b.mean).view(1, 3, 1, 1)
        std = torch.tensor(b.std).view(1, 3, 1, 1)
        transforms = [*transform.standard_transforms, lambda img: (img - mean) / std]
    else:
        transforms = None

    def unhook():
        # render_vis hooks every module and never removes the hooks: start each call clean.
        for module in m.modules():
            module._forward_hooks.clear()

    def ascend(_):
        render.render_vis(m, objectives.channel(spec.middle.replace(".", "_"), CHANNEL),
                          param_f=lambda: param.image(spec.size), transforms=transforms, thresholds=(n,),
                          preprocess=not own, show_image=False, progress=False,
                          fixed_image_size=spec.size if course else None)  # else it upsamples 64² to 224²
    return Timed(ascend, setup=unhook, per=n)


#: Which methods each peer offers (its column shows "—" for the others).
PEER_METHODS = {
    "captum": {VANILLA, GUIDED, DECONV, SMOOTH, GRADCAM, GUIDED_GC, "Input × Gradient", IG, "Occlusion"},
    "grad-cam": {GUIDED, GRADCAM, GUIDED_GC, "Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM", "Score-CAM",
                 "Ablation-CAM", "Eigen-CAM"},
    "torchcam": {CAM, GRADCAM, SWITCH, "Grad-CAM++", "XGrad-CAM", "LayerCAM", "Score-CAM"},
    "lucent": {OPTVIS},
}
_FACTORIES = {OURS: _ours, "captum": _captum, "grad-cam": _grad_cam, "torchcam": _torchcam, "lucent": _lucent}


def plan(name: str, peers: dict[str, str]) -> tuple[dict[tuple[str, str], str], list[tuple[str, str]]]:
    """The cells of one model's table: ``(notes, cases)``, where ``notes`` holds the
    cells that are not measured and ``cases`` the ``(method, column)`` pairs that are."""
    notes, cases = {}, []
    for method in METHODS:
        for column in COLUMNS:
            if column != OURS and method not in PEER_METHODS[column]:
                notes[method, column] = NO_SUCH_METHOD
            elif method == CAM and MODEL_SPECS[name].cam_layer is None:
                notes[method, column] = NOT_APPLICABLE
            elif method in HEAVY and name not in HEAVY_MODELS:
                notes[method, column] = NOT_TIMED
            elif column == "captum" and method in (GUIDED, DECONV) and name == "efficientnet_lite0":
                notes[method, column] = RELU_MODULES_ONLY
            elif column != OURS and not peer_ok(peers[column]):
                notes[method, column] = peers[column]
            else:
                cases.append((method, column))
    return notes, cases


# --- timing -------------------------------------------------------------------------------------------


def measure(cases: dict[Any, Timed], s: Settings, may_fail: Callable[[Any], bool], tick: Callable[[], None]):
    """Median time of each case over ``s.reps`` interleaved rounds (after a warm-up
    round; the cases in a new seeded order each round), divided by its ``per``: ``{key: seconds or 'failed: ...'}``. Only the cases
    ``may_fail`` allows (the peers) are turned into a note when they raise."""
    out: dict[Any, float | str] = {}
    times: dict[Any, list[float]] = {key: [] for key in cases}
    for round_ in range(s.rounds):
        # a new order each round (seeded): what a case runs after (a peer's large batch freed, say) changes its
        # time, and a fixed order would hand the same neighbour to the same case in every round
        order = list(cases)
        random.Random(round_).shuffle(order)
        for key in order:
            case = cases[key]
            if key in out:  # failed earlier
                tick()
                continue
            state = case.setup()
            try:
                start = time.perf_counter()
                case.run(state)
                elapsed = time.perf_counter() - start
            except Exception as exc:
                if not may_fail(key):
                    raise
                out[key] = short_reason(exc)
            else:
                if round_ >= s.warmup:
                    times[key].append(elapsed)
            finally:
                if case.teardown is not None:
                    case.teardown(state)
            tick()
    for key, case in cases.items():
        if key not in out:
            out[key] = statistics.median(times[key]) / case.per
    return out


@contextlib.contextmanager
def _quiet():
    """Peers warn about deprecations on every call; keep the progress bar readable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run_model(name: str, peers: dict[str, str], s: Settings, tick) -> ModelResult:
    """Build one model, time every case, and turn the times into ratios."""
    notes, planned = plan(name, peers)
    b = build_bench(name)
    cases, failed = {}, {}
    with _quiet():
        for method, column in planned:
            try:
                cases[method, column] = _FACTORIES[column](method, b, s)
            except Exception as exc:
                if column == OURS:
                    raise
                failed[method, column] = short_reason(exc)
        for method, _ in failed:
            for _ in range(s.for_case(method).rounds):
                tick()
        measured = {}
        for settings in {s.for_case(method) for method, _ in cases}:  # the methods of many passes apart
            part = {key: case for key, case in cases.items() if s.for_case(key[0]) == settings}
            measured.update(measure(part, settings, lambda key: key[1] != OURS, tick))
    measured.update(failed)
    forward = measured[FORWARD, OURS]
    rows: dict[str, dict[str, Cell]] = {}
    for method in METHODS:
        rows[method] = {}
        for column in COLUMNS:
            value = measured.get((method, column), notes.get((method, column)))
            if isinstance(value, float):
                rows[method][column] = Cell(value, value / forward)
            else:
                rows[method][column] = Cell(note=value)
    return ModelResult(name, b.spec.size, forward, rows)


# --- explorers -----------------------------------------------------------------------------------------

#: Images never shown before by a fresh explorer (which opens on "scene 0").
NEW_IMAGES = ["scene 1", "scene 2", "scene 3", "scene 4", "scene 5", "two objects 0", "two objects 1",
              "two objects 2"]
#: The same for the ImageNet model, which the explorers are timed on with photos (opening on the cat).
NEW_PHOTOS = ["photo: coffee", "photo: cat_and_coffee", "photo: rocket", "photo: motorcycle", "photo: grace_hopper",
              "photo: camera", "photo: astronaut"]
#: The explorers timed on EfficientNet-Lite0 too: those with a model control (the others work on scenes only).
PHOTO_EXPLORERS = ["FeatureMapExplorer", "FilterExplorer", "PredictionExplorer", "SaliencyExplorer", "CAMExplorer",
                   "GradCAMExplorer", "GuidedGradCAMExplorer", "ActivationMaxExplorer", "GraphExplorer",
                   "CompareExplorer"]
PHOTO_MODEL = "efficientnet_lite0"


def _option_values(control) -> list:
    return [o[1] if isinstance(o, tuple) else o for o in control.options]


def _panel_subsets(control) -> list:  # a few, and those shown at first (the methods of many passes are not)
    every = tuple(_option_values(control))
    return [every[:3], tuple(default_panels())]


@dataclass(frozen=True)
class Change:
    """One control change to time. ``values`` (a list, or a function of the control)
    are taken in turn, skipping the current value. ``forget`` names the explorer's
    caches emptied before each change (untimed), so that it computes what a first
    visit computes; changes that by design reuse a cache keep it. ``live``: the explorer works in
    a background thread, as in a notebook; the time is to its first picture."""

    label: str
    control: str
    values: list | Callable[[Any], list]
    forget: tuple[str, ...] = ()
    live: bool = False  # time to the first picture of a run in the background (as in a notebook)


OPTIONS = _option_values
OPACITY = [0.3, 0.7]

#: Explorer -> (extra keyword arguments, changes timed). The course model only.
EXPLORERS: dict[str, tuple[dict, list[Change]]] = {
    "FeatureMapExplorer": ({}, [
        Change("layer switch (maps cached per image)", "layer", OPTIONS),
        Change("new image (forward + maps)", "image", NEW_IMAGES, ("cache",)),
    ]),
    "FilterExplorer": ({}, [
        Change("filter switch", "out_channel", [1, 2, 3]),
        Change("layer switch", "layer", OPTIONS, ("weights",)),
    ]),
    "PredictionExplorer": ({}, [
        Change("new image", "image", NEW_IMAGES),
        Change("top-k change", "k", [2, 8]),
    ]),
    "SaliencyExplorer": ({}, [
        Change("class switch (new gradient)", "target", OPTIONS, ("grads", "gradients")),
        Change("method switch (new gradient)", "method", ["guided backprop", "deconvnet", "vanilla gradient"],
               ("grads", "gradients")),
        Change("opacity (redraw only)", "alpha", OPACITY),
        Change("new image (forward + gradient)", "image", NEW_IMAGES, ("inputs", "grads")),
    ]),
    "CAMExplorer": ({}, [
        Change("class switch (all classes kept)", "target", OPTIONS),
        Change("opacity (redraw only)", "alpha", OPACITY),
        Change("new image (forward)", "image", NEW_IMAGES, ("inputs",)),
    ]),
    "GradCAMExplorer": ({}, [
        Change("class switch (backward from kept forward)", "target", OPTIONS),
        Change("layer switch (backward from kept forward)", "layer", OPTIONS),
        Change("opacity (redraw only)", "alpha", OPACITY),
        Change("new image (forward)", "image", NEW_IMAGES, ("inputs",)),
    ]),
    "GuidedGradCAMExplorer": ({}, [
        Change("class switch (new maps)", "target", OPTIONS, ("results", "gradients")),
        Change("method switch (new map)", "method", ["Grad-CAM", "Guided Grad-CAM", "guided backprop"],
               ("results", "gradients")),
        Change("new image (forward + maps)", "image", NEW_IMAGES, ("inputs", "results")),
    ]),
    "ActivationMaxExplorer": ({"threaded": False}, [
        Change("channel switch (first live picture, as in a notebook)", "unit", [1, 2, 3], ("cache",), live=True),
        Change("channel switch (a whole run of 8 steps)", "unit", [1, 2, 3], ("cache",)),
    ]),
    "EvaluationExplorer": ({}, [
        Change("scene switch", "scene", [1, 2, 3]),
        Change("method switch (24 new gradient maps)", "method", ["vanilla gradient", "guided backprop", "deconvnet"],
               ("maps", "curves")),
    ]),
    "ShortcutExplorer": ({}, [
        Change("scene switch (forward + map)", "scene", [1, 2, 3]),
    ]),
    "GraphExplorer": ({}, [
        Change("operation highlighted (redraw only)", "op", OPTIONS),
    ]),
    "CompareExplorer": ({}, [
        Change("class switch (every panel recomputed)", "target", OPTIONS, ("results", "gradients")),
        Change("layer switch (layer panels recomputed)", "layer", OPTIONS, ("results",)),  # the class's gradients stay
        Change("panels shown (cached results)", "methods", _panel_subsets),
        Change("opacity (redraw only)", "alpha", OPACITY),
        Change("new image (every panel)", "image", NEW_IMAGES, ("inputs", "results")),
    ]),
}
OPEN = "open (first picture, one run)"


def explorer_units(s: Settings) -> int:
    """Progress-bar units of the explorer part: one per opening and per timed change, on each model."""
    return sum((1 + len(changes) * s.explorer_rounds) * (1 + (name in PHOTO_EXPLORERS))
               for name, (_, changes) in EXPLORERS.items())


def _construct(cls, extra: dict, model: str = "course"):
    params = inspect.signature(cls).parameters
    kwargs = {"models": [model]} if "models" in params else {}
    kwargs.update({k: v for k, v in extra.items() if k in params})
    return cls(**kwargs)


class _Cycle:
    """Hands out ``values`` in turn, never the control's current value."""

    def __init__(self, values):
        self.values, self.i = values, 0

    def next(self, explorer, control):
        values = self.values(explorer.controls[control]) if callable(self.values) else self.values
        for _ in range(len(values)):
            v = values[self.i % len(values)]
            self.i += 1
            if v != explorer.controls[control].value:
                return v
        raise ValueError(f"{type(explorer).__name__}.{control} offers no value other than the current one")


def _forget(explorer, caches: tuple[str, ...]) -> None:
    """Empty the named caches of the explorer (:meth:`~course_utils.widgets.base.Explorer.caches`);
    ``"gradients"`` are those the current image's :class:`~course_utils.methods.Explainer` keeps."""
    if "gradients" in caches:
        explorer.prepared().kept.forget()
        caches = tuple(c for c in caches if c != "gradients")
    kept = explorer.caches()
    missing = [c for c in caches if c not in kept]
    if missing:
        raise AttributeError(f"{type(explorer).__name__} has no cache {missing} (it has {sorted(kept)}): "
                             f"update EXPLORERS in {__file__}")
    for c in caches:
        kept[c].clear()

def _time_live(explorer, control: str, value) -> float:
    """Seconds from setting the control to the first new picture of the run it starts in a background
    thread (as in a notebook); the run is then waited for (its finished figure: one redraw in all)."""
    shown = threading.Event()

    def seen(_):
        shown.set()

    explorer.view.observe(seen, names="value")
    explorer.threaded = True
    try:
        start = time.perf_counter()
        explorer.controls[control].value = value
        if not shown.wait(60):
            raise RuntimeError(f"{type(explorer).__name__}: no picture within 60 s of setting {control!r}")
        elapsed = time.perf_counter() - start
        explorer.wait(60)
    finally:
        explorer.threaded = False
        explorer.view.unobserve(seen, names="value")
    return elapsed


def time_change(explorer, change: Change, s: Settings, tick, photos: bool = False) -> float:
    """Median seconds from setting the control to the new picture (after a warm-up)."""
    name = type(explorer).__name__
    values = _Cycle(NEW_PHOTOS if photos and change.values is NEW_IMAGES else change.values)
    times = []
    for round_ in range(s.explorer_rounds):
        _forget(explorer, change.forget)
        value = values.next(explorer, change.control)
        before = explorer.renders
        if change.live:
            elapsed = _time_live(explorer, change.control, value)
        else:
            start = time.perf_counter()
            explorer.controls[change.control].value = value
            elapsed = time.perf_counter() - start
        if explorer.renders != before + 1 or explorer.message.value:
            raise RuntimeError(f"{name}: setting {change.control!r} to {value!r} gave {explorer.renders - before} "
                               f"redraws (expected 1) and message {explorer.message.value!r}")
        if round_ >= s.warmup:
            times.append(elapsed)
        tick()
    return statistics.median(times)


def run_explorers(s: Settings, tick, model: str = "course") -> list[ExplorerRow]:
    """Each explorer on ``model``: its opening, then each change. On the ImageNet model
    (:data:`PHOTO_MODEL`) only those of :data:`PHOTO_EXPLORERS`, on photos."""
    widgets.cached_model(model)  # loaded once per kernel: not part of any explorer's opening
    photos, rows = model != "course", []
    for name, (extra, changes) in EXPLORERS.items():
        if photos and name not in PHOTO_EXPLORERS:
            continue
        cls = getattr(widgets, name, None)
        if cls is None:
            rows.append(ExplorerRow(name, OPEN, None, "not in this version of course_utils", model))
            for _ in range(1 + len(changes) * s.explorer_rounds):
                tick()
            continue
        start = time.perf_counter()
        explorer = _construct(cls, extra, model)
        rows.append(ExplorerRow(name, OPEN, time.perf_counter() - start, model=model))
        tick()
        if photos and "image" in explorer.controls:  # the first photo, before timing
            explorer.controls["image"].value = "photo: cat"
        if name == "ActivationMaxExplorer":  # the smallest run the slider offers, before timing
            explorer.controls["steps"].value = explorer.controls["steps"].min
        for change in changes:
            rows.append(ExplorerRow(name, change.label, time_change(explorer, change, s, tick, photos), model=model))
    return rows


# --- the whole report ------------------------------------------------------------------------------------


def run(models=("course", "efficientnet_lite0", "resnet50", "vgg16"), settings: Settings | None = None, *, peers: bool = True,
        explorers: bool = True, progress: bool = True) -> Report:
    """Measure everything and return the :class:`Report` (nothing is printed)."""
    from tqdm.auto import tqdm

    s = settings or Settings()
    unknown = [m for m in models if m not in MODEL_SPECS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose among {list(MODEL_SPECS)}")
    status = peer_status() if peers else {column: "not requested (--no-peers)" for column in PEERS}
    report = Report(machine_header(), status, s)
    total = sum(s.for_case(method).rounds for name in models for method, _ in plan(name, status)[1])
    total += explorer_units(s) if explorers else 0
    with tqdm(total=total, desc="benchmarks", unit="run", disable=not progress, file=sys.stderr) as bar:
        for name in models:
            bar.set_postfix_str(name)
            report.models.append(run_model(name, status, s, lambda: bar.update(1)))
        if explorers:
            bar.set_postfix_str("explorers")
            report.explorers = run_explorers(s, lambda: bar.update(1))
            bar.set_postfix_str(f"explorers, {PHOTO_MODEL}")
            report.explorers += run_explorers(s, lambda: bar.update(1), PHOTO_MODEL)
    return report


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """A markdown table whose columns line up in plain text too."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return [line(header), rule, *(line(r) for r in rows)]


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.1f}" if seconds < 1 else f"{seconds * 1000:.0f}"


def _legend(s: Settings) -> str:
    warmup = " after a warm-up" if s.warmup else " (no warm-up)"
    return (f"**ratio = time / forward-only time of the same model in this run** (1.00 = one forward pass; lower "
            f"is cheaper). Median of {s.reps} interleaved rounds{warmup}, the cases in a new order each round; CPU, "
            f"batch 1, eval mode, NumPy's BLAS and OpenCV on {os.environ.get('OPENBLAS_NUM_THREADS', 'all')} "
            "thread(s) (torch has the cores); the trained course model, EfficientNet-Lite0 (ImageNet weights), ResNet-50 and VGG-16 with random weights. SmoothGrad is per noisy sample "
            f"({s.smoothgrad_samples} in one batch), activation maximization per step ({s.optvis_steps}-step runs, "
            "Fourier image, jitter/scale/rotate). The methods of many passes (" + ", ".join(HEAVY) + ") are whole "
            f"calls, {s.heavy_reps} timed round{'s' if s.heavy_reps > 1 else ''}, {s.masked_batch} "
            f"images per batch for ours and the peers alike, at the Grad-CAM layer (every channel), "
            f"{s.ig_steps} Integrated Gradients steps (captum: its midpoint rule, as ours), occlusion windows of an "
            "eighth of the side with half that as stride; "
            f"{NOT_TIMED} on VGG-16. `ours ms` is the bare time. "
            f"{NO_SUCH_METHOD} = the library has no such method; {NOT_APPLICABLE} = the method cannot work on "
            "this model.")


def _layers(spec: ModelSpec) -> str:
    cam_ = f"CAM at `{spec.cam_layer}`." if spec.cam_layer else "no CAM (no global average pooling + one linear layer)."
    return (f"Grad-CAM at `{spec.last}`; feature maps and activation maximization at `{spec.middle}` "
            f"(channel {CHANNEL}); {cam_}")


def to_markdown(report: Report) -> str:
    """The report as markdown: a header, one table per model, the explorers' table."""
    h, s = report.header, report.settings
    peers = ", ".join(f"{column} {status}" if peer_ok(status) else f"{column}: {status}"
                      for column, status in report.peers.items())
    machine = (f"{h['date']} · torch {h['torch']} · {h['threads']} threads · {h['cpu']} · "
               f"load average {h['load']} at the start")
    out = ["# Performance report", "", machine, "", _legend(s), "", f"Peers: {peers}."]
    for r in report.models:
        out += ["", f"## {r.name} ({r.size}×{r.size}): forward only {_ms(r.forward_seconds)} ms", "",
                _layers(MODEL_SPECS[r.name]), ""]
        rows = [[method, cells[OURS].text(), _ms(cells[OURS].seconds), *(cells[c].text() for c in COLUMNS[1:])]
                for method, cells in r.rows.items()]
        out += _table(["method", "ours", "ours ms", *COLUMNS[1:]], rows, right=set(range(1, len(COLUMNS) + 2)))
    for model, what in [("course", "course model, scenes"), (PHOTO_MODEL, f"{PHOTO_MODEL}, photos")]:
        shown = [e for e in report.explorers if e.model == model]
        if not shown:
            continue
        title = (f"## Explorers ({what}): from a control's new value to the new picture "
                 f"(median of {s.explorer_reps}, ms)")
        out += ["", title, ""]
        rows = [[e.explorer, e.change, _ms(e.seconds) if e.seconds is not None else e.note] for e in shown]
        out += _table(["explorer", "change", "ms"], rows, right={2})
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODEL_SPECS), help="default: all four")
    parser.add_argument("--reps", type=int, help="timed rounds per case (default 7)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--no-peers", action="store_true", help="skip the peer libraries even if installed")
    parser.add_argument("--no-explorers", action="store_true", help="skip the explorers' latencies")
    parser.add_argument("--quick", action="store_true", help="course model, one round, tiny settings (for tests)")
    args = parser.parse_args(argv)
    s = Settings.quick() if args.quick else Settings()
    if args.reps is not None:
        if args.reps < 1:
            parser.error("--reps must be at least 1")
        s = dataclasses.replace(s, reps=args.reps, explorer_reps=args.reps)
    models = args.models or (["course"] if args.quick else list(MODEL_SPECS))
    text = to_markdown(run(models, s, peers=not args.no_peers, explorers=not args.no_explorers))
    print(text, end="")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
