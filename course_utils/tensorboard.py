"""Write a model's graph and pictures for TensorBoard, and read them back.

TensorBoard reads *event files*: records of summaries (scalars, images, a
graph) that a ``SummaryWriter`` appends to a folder. This module writes them
(:func:`write_graph`, :func:`write_images`) and reads them back
(:func:`read_graph`, :func:`read_images`), so a lesson can show — and a test can
check — exactly what TensorBoard will display, without starting its server.

``SummaryWriter.add_graph`` records the graph by *tracing* the model with
TorchScript: it runs one forward pass and writes down every operation. The
model is traced in eval mode and handed back unchanged (``hooks.model_guard``).
"""

from __future__ import annotations

import re
import shutil
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .hooks import model_guard

__all__ = ["GraphNode", "binary", "layer_ops", "op_counts", "read_graph", "read_images", "write_graph", "write_images"]


@dataclass(frozen=True)
class GraphNode:
    """One node of a written graph."""

    name: str  # TensorBoard's node name, e.g. "CourseNet/Sequential[features]/Conv2d[conv1]/input.1"
    op: str  # the operation, e.g. "aten::_convolution", "prim::Constant", "IO Node"
    inputs: tuple[str, ...]
    shape: tuple[int, ...] | None  # the output's shape, when recorded

    @property
    def layer(self) -> str:
        """The dotted name of the module the node belongs to ("features.conv1"), or ""."""
        return ".".join(re.findall(r"\[([^\]]+)\]", self.name.rsplit("/", 1)[0]))


def binary() -> str:
    """The ``tensorboard`` program of this Python environment.

    The ``%tensorboard`` magic looks for it on the PATH, which misses a virtual
    environment that was not activated; set ``TENSORBOARD_BINARY`` to this.
    """
    here = Path(sys.executable).parent / ("tensorboard.exe" if sys.platform == "win32" else "tensorboard")
    found = str(here) if here.is_file() else shutil.which("tensorboard")
    if not found:
        raise FileNotFoundError("the tensorboard program is not installed here: pip install tensorboard")
    return found


def _writer(logdir):
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

    return SummaryWriter(log_dir=str(logdir))


def write_graph(model: nn.Module, example: torch.Tensor, logdir: str | Path) -> Path:
    """Trace ``model`` on ``example`` and write its graph into ``logdir``."""
    logdir = Path(logdir)
    with model_guard(model), warnings.catch_warnings():
        model.eval()  # trace the model as it predicts (batch norm must not update)
        # add_graph traces with TorchScript, which PyTorch now marks as deprecated.
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit\.trace")
        with _writer(logdir) as writer:
            writer.add_graph(model, example)
    return logdir


def write_images(logdir: str | Path, tag: str, images, step: int = 0) -> Path:
    """Write a batch of pictures as one image summary.

    ``images``: (N, H, W) greyscale or (N, H, W, 3) RGB, floats in [0, 1] or uint8.
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, 3), got shape {np.asarray(images).shape}")
    if arr.dtype != np.uint8 and (not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1):
        raise ValueError("float images must be finite and within [0, 1]; normalise them for display first")
    with _writer(logdir) as writer:
        writer.add_images(tag, arr, global_step=step, dataformats="NHWC")
    return Path(logdir)


def _event_files(logdir: str | Path) -> list[Path]:
    """The event files in ``logdir``, newest first (their names start with a timestamp)."""
    def written(p: Path):  # the name's timestamp (seconds), then the file's modification time
        stamp = re.match(r"events\.out\.tfevents\.(\d+)", p.name)
        return int(stamp.group(1)) if stamp else 0, p.stat().st_mtime_ns

    files = sorted(Path(logdir).glob("events.out.tfevents.*"), key=written, reverse=True)
    if not files:
        raise FileNotFoundError(f"no TensorBoard event files in {logdir}")
    return files


def _accumulator(path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"images": 0})  # 0: keep every image
    acc.Reload()
    return acc


def _shape(node) -> tuple[int, ...] | None:
    shapes = node.attr["_output_shapes"].list.shape if "_output_shapes" in node.attr else []
    return tuple(int(d.size) for d in shapes[0].dim) if shapes else None


def read_graph(logdir: str | Path) -> list[GraphNode]:
    """Every node of the newest graph written into ``logdir``, in the order it was written."""
    for path in _event_files(logdir):
        acc = _accumulator(path)
        if acc.Tags().get("graph"):
            return [GraphNode(n.name, n.op, tuple(n.input), _shape(n)) for n in acc.Graph().node]
    raise ValueError(f"the event files in {logdir} hold no graph; write one with write_graph")


def layer_ops(nodes: list[GraphNode]) -> list[GraphNode]:
    """The nodes that compute something (``aten::`` operations), without the
    constants and attribute look-ups TorchScript records around them."""
    return [n for n in nodes if n.op.startswith("aten::")]


def op_counts(nodes: list[GraphNode]) -> Counter:
    """How many nodes of each operation type."""
    return Counter(n.op for n in nodes)


def read_images(logdir: str | Path) -> dict[str, list[np.ndarray]]:
    """The image summaries in ``logdir``: tag -> the decoded (H, W, C) uint8 images,
    oldest first."""
    import io

    from PIL import Image

    out: dict[str, list[np.ndarray]] = {}
    for path in reversed(_event_files(logdir)):
        acc = _accumulator(path)
        for tag in acc.Tags().get("images", []):
            out.setdefault(tag, []).extend(
                np.asarray(Image.open(io.BytesIO(e.encoded_image_string))) for e in acc.Images(tag)
            )
    return out
