"""Every method of the registry on every measure of lesson 09, in one table (lesson 11).

    >>> board = leaderboard("course")              # every method in METHODS: 20-30 s on one core
    >>> print(board.table())                       # methods as rows, sorted by the first measure
    >>> board.best("deletion AUC"), board.failing_sanity()

:func:`leaderboard` explains one model's inputs with each method of
:data:`~course_utils.methods.METHODS` and scores every map with the measures of
:mod:`~course_utils.evaluation` (:data:`METRICS`: lesson 09's, computed the same way).
What it explains:

* a model of the scenes (its classes are :data:`~course_utils.scenes.CLASSES`): lesson 09's
  held-out scenes, ``n_scenes`` single-object scenes of seed ``21 + seed`` and, for the class
  sensitivity, ``n_pairs`` two-object scenes of seed ``22 + seed``, each asked about both of its
  objects (seeds the course's models were never trained on; ``seed=0`` gives lesson 09's);
* any other model (an ImageNet classifier): the photos :data:`PHOTOS`, which carry no mask, so
  only the measures that ask the model itself apply (deletion, insertion, sanity).

Each map explains the model's own answer, its top class on that input (on lesson 09's scenes
the course model's answer is the true class every time); the two-object scenes ask about each
object's class in turn. The sanity check compares each map with the map, for the same class, of a
copy of the model whose every layer was re-initialised (``seed`` seeds the new weights, and
SmoothGrad's noise). The maps are computed as :func:`~course_utils.methods.explain` computes them,
with the options :data:`OPTIONS` (fewer samples and steps than the methods' defaults). The model
is never changed, nor the global random state.

What a board costs is mostly forward passes: 17 per deletion or insertion curve and image, and
the many passes of SmoothGrad, Integrated Gradients, Score-CAM and Occlusion, each on the scenes,
the two-object scenes and the randomized copy. On EfficientNet-Lite0 Score-CAM alone asks 1280
masked photos per photo (one per channel of ``head``): minutes on a CPU, so leave it out there
unless you can wait (``methods=[...]``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import evaluation as ev
from .hooks import model_guard
from .images import sample_photo
from .methods import METHODS, explain, method_layer
from .models import LoadedModel, load_model
from .saliency import progress_bar
from .scenes import CLASSES, make_scenes

__all__ = ["METRICS", "OPTIONS", "PHOTOS", "PIXELS_PER_BATCH", "SANITY_THRESHOLD", "STEPS", "Board", "Metric",
           "leaderboard", "shown"]


@dataclass(frozen=True)
class Metric:
    """One measure of the board: which way is better, whether it needs the objects' masks, what it is."""

    higher_is_better: bool
    needs_masks: bool
    about: str

    @property
    def arrow(self) -> str:
        """↑ when higher is better, ↓ when lower is."""
        return "↑" if self.higher_is_better else "↓"


#: A method fails the sanity check when its maps correlate at least this much with the randomized model's.
SANITY_THRESHOLD = 0.5
#: Steps of the deletion and insertion curves (lesson 09's 16: 1/16 of the pixels each).
STEPS = 16
#: The photos an ImageNet model's board explains (course_utils.images.sample_photo).
PHOTOS = ("cat", "coffee")
SCENE_SEED, PAIR_SEED = 21, 22  # lesson 09's held-out scenes and pairs (never trained on)

#: The measures, in the order the board shows them. ``cost`` is apart: ``Board.cost`` (not reproducible).
METRICS: dict[str, Metric] = {
    "pointing game": Metric(True, True, "share of the scenes whose map peaks on the object (evaluation.pointing_game, "
                                        "no tolerance; Zhang et al. 2016)"),
    "energy inside": Metric(True, True, "mean share of the map's positive mass inside the object's mask "
                                        "(evaluation.energy_inside)"),
    "deletion AUC": Metric(False, False, f"mean area under the deletion curve ({STEPS} steps): the class probability "
                                         "as the map's top pixels turn grey (Petsiuk et al. 2018)"),
    "insertion AUC": Metric(True, False, f"mean area under the insertion curve ({STEPS} steps): the class probability "
                                         "as the map's top pixels come back on grey (Petsiuk et al. 2018)"),
    "class sensitivity": Metric(True, True, "on two-object scenes asked about each object's class: the map's energy "
                                            "on the object asked about minus its energy on the other, mean "
                                            "(lesson 09, section 4)"),
    "sanity": Metric(False, False, "mean Spearman rank correlation between each map and the map of a copy of the "
                                   "model with every layer re-initialised (Adebayo et al. 2018); a method fails at "
                                   f"{SANITY_THRESHOLD} or more, a threshold that is the course's choice, not the "
                                   "paper's"),
}

#: What the board passes to a method beside the registry's defaults: fewer samples and steps. Every
#: method of many passes (``Method.many_passes``) also gets batches of :data:`PIXELS_PER_BATCH` pixels
#: and no progress bar of its own, and Occlusion windows of an eighth of the side laid side by side
#: (stride = window: 64 per image).
OPTIONS: dict[str, dict] = {
    "SmoothGrad": {"samples": 8},  # lesson 09's 8 noisy copies; the seed is the board's
    "Ablation-CAM": {"batch_size": 256},  # 256 copies of the layer's output at a time, not of the image
    "Integrated Gradients": {"steps": 16},
}
#: Images per batch: this many pixels (32 scenes of 64², two photos of 224²). On a CPU a batch of 17
#: photos takes about 1.6 times as long per photo as a batch of two (measured on EfficientNet-Lite0,
#: one thread): the activations of a large batch no longer fit in the caches.
PIXELS_PER_BATCH = 2**17


@dataclass
class Board:
    """One model's leaderboard: every method's maps, their measures and their cost (see :func:`leaderboard`)."""

    model: str  # the model's name
    methods: list[str]  # registry order
    metrics: list[str]  # the measures that apply to this model, in METRICS' order
    scores: dict[str, dict[str, float]]  # method -> measure -> the mean over the scenes (photos)
    per_scene: dict[str, dict[str, torch.Tensor]]  # method -> measure -> the value on each scene (or two-object map)
    maps: dict[str, torch.Tensor]  # method -> its raw maps (N, h, w) on the single-object scenes / photos
    images: np.ndarray  # (N, H, W, 3) uint8: what the maps explain
    masks: np.ndarray | None  # (N, H, W) bool, the objects' masks; None for photos
    targets: list[int]  # the class each map explains
    labels: list[str]  # that class's name
    cost: dict[str, float]  # method -> its time over one forward pass of the same batch (changes from run to run)

    def _metric(self, metric: str) -> Metric:
        if metric not in self.metrics:
            apart = " (the cost is apart: board.cost, it changes from run to run)" if metric == "cost" else ""
            raise ValueError(f"no measure {metric!r} on {self.model}'s board{apart}; choose one of {self.metrics}")
        return METRICS[metric]

    def ranking(self, metric: str, digits: int = 3) -> list[str]:
        """The methods from the best to the worst on ``metric``. Values equal to ``digits`` decimals
        are a tie, kept in registry order: an order that another CPU's last bits cannot change."""
        sign = -1.0 if self._metric(metric).higher_is_better else 1.0
        return sorted(self.methods, key=lambda m: sign * round(self.scores[m][metric], digits))

    def best(self, metric: str) -> str:
        """The best method on ``metric`` (higher or lower is better as :data:`METRICS` says; of methods
        equal to 3 decimals, the first in the registry)."""
        return self.ranking(metric)[0]

    def failing_sanity(self) -> list[str]:
        """The methods whose maps survive the randomization: mean correlation >= :data:`SANITY_THRESHOLD`."""
        return [m for m in self.methods if self.scores[m]["sanity"] >= SANITY_THRESHOLD]

    def table(self, metrics: Sequence[str] | None = None, digits: int = 2) -> str:
        """A fixed-width table: one row per method, sorted by the first of ``metrics`` (default: all of
        the board's) as shown with ``digits`` decimals, the best first (ties in registry order); ↑ / ↓
        say which way is better."""
        metrics = list(self.metrics if metrics is None else [metrics] if isinstance(metrics, str) else metrics)
        if not metrics:
            raise ValueError(f"name at least one measure: {self.metrics}")
        heads = [f"{m} {self._metric(m).arrow}" for m in metrics]
        name_width = max(len("method"), *map(len, self.methods))
        widths = [max(len(h), digits + 3) for h in heads]
        lines = [f"{'method':{name_width}s}" + "".join(f"  {h:>{w}s}" for h, w in zip(heads, widths))]
        for method in self.ranking(metrics[0], digits):
            lines.append(f"{method:{name_width}s}" + "".join(
                f"  {shown(self.scores[method][m], digits):>{w}s}" for m, w in zip(metrics, widths)))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Board({self.model!r}: {len(self.methods)} methods × {len(self.metrics)} measures on "
                f"{len(self.images)} {'scenes' if self.masks is not None else 'photos'})")


def shown(value: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, and never "-0.00": a mean that is zero to the digits shown
    is printed as 0 whichever side of zero the last bits put it."""
    return f"{round(value, digits) + 0.0:.{digits}f}"


# --- the measures, on maps already computed ---------------------------------------------------


def _localization(maps: torch.Tensor, masks) -> dict[str, torch.Tensor]:
    """Pointing game (1.0 a hit, 0.0 a miss) and energy inside, per map."""
    return {"pointing game": ev.pointing_game(maps, masks).double(),
            "energy inside": ev.energy_inside(maps, masks).double()}


def _class_sensitivity(maps: torch.Tensor, own, other) -> torch.Tensor:
    """Per map: energy on the object asked about minus energy on the other object."""
    return ev.energy_inside(maps, own).double() - ev.energy_inside(maps, other).double()


def _sanity(maps: torch.Tensor, randomized: torch.Tensor) -> torch.Tensor:
    """Per map: Spearman's rank correlation with the randomized model's map (0 for a flat one)."""
    return torch.tensor([ev.spearman(a, b) for a, b in zip(maps, randomized)], dtype=torch.float64)


def _faithfulness(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, targets: list[int]) -> dict:
    """Deletion and insertion AUC per image (16 steps, grey baseline)."""
    out = {}
    for name, curve in (("deletion AUC", ev.deletion_curve), ("insertion AUC", ev.insertion_curve)):
        fractions, probs = curve(model, x, maps, targets, steps=STEPS, batch_size=_batch_size(x))
        out[name] = ev.auc(fractions.double(), probs.double())
    return out


# --- what is explained -------------------------------------------------------------------------


def _loaded(model) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str):
        return load_model(model)
    raise TypeError(f"model is a model's name (e.g. 'course') or a LoadedModel, got {type(model).__name__}")


def _applies(model: nn.Module, method: str) -> bool:
    try:
        method_layer(model, method)
    except ValueError:  # e.g. CAM on a network without global average pooling before its last layer
        return False
    return True


def _checked_methods(methods, model: nn.Module) -> list[str]:
    if methods is None:
        return [m for m in METHODS if _applies(model, m)]
    names = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {unknown}; choose among {list(METHODS)}" if unknown
                         else f"no method given; choose among {list(METHODS)}")
    return [m for m in METHODS if m in names]  # registry order, each once


def _top(model: nn.Module, x: torch.Tensor) -> list[int]:
    with model_guard(model, eval=True), torch.no_grad():
        return model(x).argmax(dim=1).tolist()


def _to_uint8(loaded: LoadedModel, x: torch.Tensor) -> np.ndarray:
    return np.round(loaded.to_display(x) * 255).astype(np.uint8)


def _every_layer(model: nn.Module) -> list[str]:
    """Every module that holds weights of its own, from the top (the last registered) down."""
    names = [n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def _randomized(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised: evaluation.cascading_randomization's last step."""
    twin = None
    for _, twin in ev.cascading_randomization(model, _every_layer(model), seed=seed):
        pass
    return twin


def _time_forward(model: nn.Module, x: torch.Tensor, repeats: int = 3) -> float:
    """The fastest of ``repeats`` plain forward passes (seconds)."""
    best = float("inf")
    with model_guard(model, eval=True), torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return best


def _explain(model: nn.Module, x: torch.Tensor, method: str, targets: list[int], seed: int) -> torch.Tensor:
    options = {"batch_size": _batch_size(x), "progress": False} if METHODS[method].many_passes else {}
    options.update(OPTIONS.get(method, {}))
    if method == "SmoothGrad":
        options["seed"] = seed
    if method == "Occlusion":  # windows of an eighth of the side, side by side: 64 per image
        options["window"] = options["stride"] = max(1, max(x.shape[-2:]) // 8)
    return explain(model, x, method, targets, **options)


def _batch_size(x: torch.Tensor) -> int:
    return max(1, PIXELS_PER_BATCH // (x.shape[-2] * x.shape[-1]))


def _checked_count(name: str, n) -> int:
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return n


# --- the board ---------------------------------------------------------------------------------


def leaderboard(model, methods=None, *, n_scenes: int = 12, n_pairs: int = 8, seed: int = 0,
                progress: bool = True) -> Board:
    """Every method in ``methods`` (names in METHODS; ``None``: all that apply to the model) on every
    measure of :data:`METRICS` that applies to ``model`` (a name in course_utils.models, or a LoadedModel).

    A model of the scenes is scored on ``n_scenes`` held-out scenes (and ``n_pairs`` two-object
    scenes for the class sensitivity), any other model on the :data:`PHOTOS` (no mask measures).
    ``seed`` chooses the scenes (0: lesson 09's), the randomized model's weights and SmoothGrad's
    noise. ``progress`` shows one bar over the methods. See the module's text for the details.
    """
    loaded = _loaded(model)
    names = _checked_methods(methods, loaded.model)
    n_scenes, n_pairs = _checked_count("n_scenes", n_scenes), _checked_count("n_pairs", n_pairs)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    net, scenes = loaded.model, list(loaded.categories) == list(CLASSES)
    if scenes:
        held_out = make_scenes(n_scenes, seed=SCENE_SEED + seed, size=loaded.input_size)
        x, masks = loaded.batch(list(held_out.images)), held_out.masks[:, 0].astype(bool)
        images = held_out.images
        pairs = make_scenes(n_pairs, seed=PAIR_SEED + seed, n_objects=2, size=loaded.input_size)
        xp = loaded.batch(list(pairs.images)).repeat(2, 1, 1, 1)  # every pair twice: asked about each object
        asked = pairs.labels[:, 0].tolist() + pairs.labels[:, 1].tolist()
        own = np.concatenate([pairs.masks[:, 0], pairs.masks[:, 1]])
        other = np.concatenate([pairs.masks[:, 1], pairs.masks[:, 0]])
    else:
        x, masks = loaded.batch([sample_photo(p) for p in PHOTOS]), None
        images = _to_uint8(loaded, x)
    metrics = [m for m in METRICS if scenes or not METRICS[m].needs_masks]
    targets = _top(net, x)
    twin = _randomized(net, seed)
    forward = _time_forward(net, x)

    scores, per_scene, maps, cost = {}, {}, {}, {}
    bar = progress_bar(len(names), progress, f"leaderboard: {loaded.name}", "method")
    try:
        for method in names:
            bar.set_postfix_str(method)
            start = time.perf_counter()
            maps[method] = _explain(net, x, method, targets, seed)
            cost[method] = (time.perf_counter() - start) / forward
            values = _faithfulness(net, x, maps[method], targets)
            values["sanity"] = _sanity(maps[method], _explain(twin, x, method, targets, seed))
            if scenes:
                values.update(_localization(maps[method], masks))
                values["class sensitivity"] = _class_sensitivity(_explain(net, xp, method, asked, seed), own, other)
            per_scene[method] = {m: values[m] for m in metrics}
            scores[method] = {m: float(values[m].mean()) for m in metrics}
            bar.update(1)
    finally:
        bar.close()
    return Board(loaded.name, names, metrics, scores, per_scene, maps,
                 images, masks, targets, [loaded.categories[t] for t in targets], cost)

