"""Synthetic scenes with ground truth: shapes on textured backgrounds.

Every scene is drawn from its own random generator, seeded by ``(seed, index)``,
so the same arguments always give byte-identical pixels, labels and masks, on
any machine, in any order. Each object comes with its pixel mask, which lets the
course *measure* how well an explanation points at the object.

>>> scene = make_scene(seed=0, index=3)
>>> scene.image.shape, scene.image.dtype, scene.names
((64, 64, 3), dtype('uint8'), ('cross',))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CLASSES", "SIGNATURES", "Scene", "SceneSet", "make_scene", "make_scenes"]

#: The shape classes, in the order of the course model's outputs.
CLASSES = ("circle", "square", "triangle", "star", "cross", "hexagon")

@dataclass(frozen=True)
class Scene:
    """One image with the class of each object and a boolean mask per object."""

    image: np.ndarray  # (H, W, 3) uint8, RGB
    labels: tuple[int, ...]  # class index of each object
    masks: np.ndarray  # (n_objects, H, W) bool; True where the object covers the pixel

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(CLASSES[i] for i in self.labels)

    @property
    def label(self) -> int:
        """The class of a single-object scene."""
        if len(self.labels) != 1:
            raise ValueError(f"this scene has {len(self.labels)} objects; use .labels")
        return self.labels[0]


@dataclass(frozen=True)
class SceneSet:
    """Many scenes stacked into arrays (one row per scene)."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N, n_objects) int64
    masks: np.ndarray  # (N, n_objects, H, W) bool
    backgrounds: np.ndarray | None = None  # (N,) signature class of each background (biased sets only)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Scene:
        return Scene(self.images[i], tuple(int(c) for c in self.labels[i]), self.masks[i])


# --- shapes as polygons -------------------------------------------------------


def _regular(n: int, radius: float, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _outline(name: str, r: float) -> np.ndarray | None:
    """Vertices (x, y) around the origin for a shape of outer radius ``r``; None for the circle (an ellipse)."""
    if name == "circle":
        return None
    if name == "square":
        return _regular(4, r, np.pi / 4)
    if name == "triangle":
        return _regular(3, r, -np.pi / 2)
    if name == "hexagon":
        return _regular(6, r)
    if name == "star":
        outer = _regular(5, r, -np.pi / 2)
        inner = _regular(5, 0.42 * r, -np.pi / 2 + np.pi / 5)
        return np.stack([outer, inner], axis=1).reshape(10, 2)
    if name == "cross":
        a, b = r, 0.36 * r  # arm length and half-width
        return np.array(
            [(b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a),
             (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b), (-b, -a)]
        )
    raise ValueError(f"unknown shape {name!r}; the shapes are {CLASSES}")


def _coverage(name: str, cx: float, cy: float, r: float, angle: float, size: int) -> np.ndarray:
    """Fraction of each pixel covered by the shape, (size, size) float in [0, 1]."""
    s = 4  # shapes are drawn 4x larger, then averaged down (smooth edges)
    canvas = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(canvas)
    verts = _outline(name, r * s)
    if verts is None:
        draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255)
    else:
        c, si = np.cos(angle), np.sin(angle)
        rotated = verts @ np.array([[c, si], [-si, c]])
        pts = rotated + np.array([cx * s, cy * s])
        draw.polygon([tuple(p) for p in pts.tolist()], fill=255)
    big = np.asarray(canvas, dtype=np.float32) / 255.0
    return big.reshape(size, s, size, s).mean(axis=(1, 3))


# --- backgrounds ----------------------------------------------------------------


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background in [0, 1]: a colour gradient, a texture and pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(0.15, 0.85, size=(2, 3)).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    t = (np.cos(theta) * xx + np.sin(theta) * yy + 1.0) / 2.0
    img = c0 + (c1 - c0) * t[..., None] * 0.6
    kind = rng.integers(3)
    if kind == 0:  # stripes
        freq, phi = rng.uniform(3, 9), rng.uniform(0, 2 * np.pi)
        u = np.cos(theta + 1.0) * xx + np.sin(theta + 1.0) * yy
        img = img + 0.08 * np.sin(2 * np.pi * freq * u + phi)[..., None]
    elif kind == 1:  # blotches: coarse noise upsampled
        coarse = rng.normal(0, 0.08, size=(8, 8, 3)).astype(np.float32)
        img = img + np.kron(coarse, np.ones((size // 8, size // 8, 1), np.float32))
    # kind 2: plain gradient
    img = img + rng.normal(0, rng.uniform(0.02, 0.08), size=img.shape).astype(np.float32)
    return img


#: Each class's "signature" background for the biased scenes of lesson 10: two colours
#: of a gradient (RGB in [0, 1]). A background drawn in a signature varies its texture
#: and shades, but its colours stay recognisably those of one class.
SIGNATURES = (
    ((0.80, 0.30, 0.25), (0.65, 0.20, 0.15)),  # circle: brick red
    ((0.30, 0.70, 0.30), (0.20, 0.55, 0.25)),  # square: grass green
    ((0.25, 0.40, 0.85), (0.15, 0.30, 0.65)),  # triangle: sky blue
    ((0.85, 0.80, 0.30), (0.70, 0.65, 0.20)),  # star: sand yellow
    ((0.60, 0.35, 0.75), (0.45, 0.25, 0.60)),  # cross: violet
    ((0.30, 0.75, 0.75), (0.20, 0.60, 0.60)),  # hexagon: teal
)


# --- scenes ---------------------------------------------------------------------


def make_scene(
    seed: int = 0,
    index: int = 0,
    *,
    size: int = 64,
    n_objects: int = 1,
    classes=None,
    background: int | None = None,
) -> Scene:
    """Draw one scene.

    Args:
        seed, index: together they fix every random choice; the same pair always
            gives the same scene. Use ``index`` to walk through a data set.
        size: side of the square image in pixels (a multiple of 8, at least 32).
        n_objects: 1 (training scenes) or 2 (two objects of different classes).
        classes: the class of each object, as names or indices; random if None.
        background: None for a random background, or a class index to draw the
            background in that class's signature colours (:data:`SIGNATURES`,
            the biased scenes of lesson 10). The object keeps its place, size and
            angle whatever the background (its colour can differ: a colour too
            close to the new background is drawn again).
    """
    if size % 8 or size < 32:
        raise ValueError(f"size must be a multiple of 8 and at least 32, got {size}")
    if n_objects not in (1, 2):
        raise ValueError(f"n_objects must be 1 or 2, got {n_objects}")
    chosen = []
    for c in () if classes is None else classes:
        if isinstance(c, str):
            if c not in CLASSES:
                raise ValueError(f"unknown shape {c!r}; the shapes are {CLASSES}")
            c = CLASSES.index(c)
        c = int(c)
        if not 0 <= c < len(CLASSES):
            raise ValueError(f"class index {c} is out of range 0..{len(CLASSES) - 1}")
        chosen.append(c)
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"the objects of one scene must be of different classes, got {classes}")
    if chosen and len(chosen) != n_objects:
        raise ValueError(f"{n_objects} object(s) but {len(chosen)} class(es) given: {classes}")

    rng = np.random.default_rng([int(seed), int(index), n_objects, size])
    labels = tuple(chosen) or tuple(int(c) for c in rng.choice(len(CLASSES), n_objects, replace=False))
    if background is None:
        img = _background(rng, size)
    else:
        if not (isinstance(background, (int, np.integer)) and 0 <= background < len(CLASSES)):
            raise ValueError(f"background is None or a class index 0..{len(CLASSES) - 1}, got {background!r}")
        # The signature's colours with a random texture. The texture takes as many numbers from ``rng`` as an
        # ordinary background (the shade has its own generator), so the objects are placed the same on any background.
        texture = _background(rng, size)
        texture = texture - texture.mean(axis=(0, 1), keepdims=True)  # deviation from its mean, recoloured below
        c0, c1 = (np.array(c, np.float32) for c in SIGNATURES[background])
        jitter = np.random.default_rng([int(seed), int(index), n_objects, size, 1]).uniform(-0.05, 0.05, size=3)
        yy = np.mgrid[0:size, 0:size][0].astype(np.float32)[..., None] / size
        img = c0 + (c1 - c0) * yy + jitter.astype(np.float32) + 0.5 * texture

    coverages: list[np.ndarray] = []
    occupied = np.zeros((size, size), bool)
    for label in labels:
        for attempt in range(400):
            lo, hi = (0.17, 0.34) if n_objects == 1 else (0.13, 0.22)
            # After each 100 misses (a big first object can leave no room) try smaller objects.
            r = rng.uniform(lo, hi) * size * (1 - 0.12 * (attempt // 100))
            cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
            angle = rng.uniform(0, 2 * np.pi)
            cov = _coverage(CLASSES[label], cx, cy, r, angle, size)
            # the shape grown by 2 pixels, so that objects keep a gap between them
            shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
            grown = np.logical_or.reduce([np.roll(cov > 0, shift, axis=(0, 1)) for shift in shifts])
            if not (grown & occupied).any():
                break
        else:  # pragma: no cover - never seen in 10,000 two-object scenes (seeds 0-19, indices 0-499)
            raise RuntimeError("could not place the objects without overlap")
        occupied |= grown
        mean = img.reshape(-1, 3).mean(axis=0)
        colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        while np.linalg.norm(colour - mean) <= 0.45:  # draw again until it stands out from the background
            colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        shade = 1.0 + 0.15 * (np.mgrid[0:size, 0:size][0] / size - 0.5)  # soft lighting
        img = img * (1 - cov[..., None]) + (colour * shade[..., None]) * cov[..., None]
        coverages.append(cov)

    img = img + rng.normal(0, 0.02, size=img.shape).astype(np.float32)
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    masks = np.stack([c >= 0.5 for c in coverages])
    return Scene(image, labels, masks)


def make_scenes(
    n: int,
    seed: int = 0,
    *,
    size: int = 64,
    n_objects: int = 1,
    start: int = 0,
    balanced: bool = True,
    bias: float | None = None,
) -> SceneSet:
    """Draw scenes ``start .. start + n - 1`` of a seed, stacked into arrays.

    With ``balanced=True`` (single-object scenes only) scene ``i`` is of class
    ``i % 6``, so every class appears equally often.

    ``bias`` (single-object scenes) draws every background in a class signature
    (:data:`SIGNATURES`): with probability ``bias`` the object's own class's, otherwise
    one of the six at random (``.backgrounds`` tells which). ``bias=0`` gives the same kinds of backgrounds with no
    link to the class; ``bias=0.95`` is a data set with a shortcut. ``None``: the
    ordinary random backgrounds.
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if bias is not None and (n_objects != 1 or not 0 <= bias <= 1):
        raise ValueError(f"bias is a probability in [0, 1], for single-object scenes; got {bias!r}")
    scenes, backgrounds = [], []
    for i in range(start, start + n):
        classes = (i % len(CLASSES),) if balanced and n_objects == 1 else None
        background = None
        if bias is not None:
            if classes is None:
                classes = (int(np.random.default_rng([int(seed), i, 7]).integers(len(CLASSES))),)
            pick = np.random.default_rng([int(seed), i, 11])
            own = pick.uniform() < bias
            background = classes[0] if own else int(pick.integers(len(CLASSES)))
        scenes.append(make_scene(seed, i, size=size, n_objects=n_objects, classes=classes, background=background))
        backgrounds.append(background)
    return SceneSet(
        np.stack([s.image for s in scenes]),
        np.array([s.labels for s in scenes], dtype=np.int64),
        np.stack([s.masks for s in scenes]),
        np.array(backgrounds, dtype=np.int64) if bias is not None else None,
    )
