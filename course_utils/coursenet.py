"""The course model: a small CNN that ends in global average pooling + one linear layer.

That ending is what Class Activation Mapping needs (Zhou et al. 2016, "Learning
Deep Features for Discriminative Localization"): the class score is a weighted
sum of the spatial means of the last feature maps, so the same weights applied
to the maps themselves show *where* the evidence is.

    input 3x64x64
    features.conv1  3->16, 3x3   bn1 relu1   pool1 -> 16x32x32
    features.conv2 16->32, 3x3   bn2 relu2   pool2 -> 32x16x16
    features.conv3 32->64, 3x3   bn3 relu3         -> 64x16x16
    features.conv4 64->64, 3x3   bn4 relu4         -> 64x16x16
    features.conv5 64->64, 3x3   bn5 relu5         -> 64x16x16   (the CAM layer)
    gap            global average pooling      -> 64
    fc             linear 64 -> 6 class logits
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.transforms.functional import resize

#: Mean and standard deviation used to normalise scenes for the course model.
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
INPUT_SIZE = 64


class CourseNet(nn.Module):
    """conv-batchnorm-relu blocks, then global average pooling and one linear layer."""

    def __init__(self, n_classes: int = 6, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, w, 3, padding=1),
                bn1=nn.BatchNorm2d(w),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(w, 2 * w, 3, padding=1),
                bn2=nn.BatchNorm2d(2 * w),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
                conv3=nn.Conv2d(2 * w, 4 * w, 3, padding=1),
                bn3=nn.BatchNorm2d(4 * w),
                relu3=nn.ReLU(),
                conv4=nn.Conv2d(4 * w, 4 * w, 3, padding=1),
                bn4=nn.BatchNorm2d(4 * w),
                relu4=nn.ReLU(),
                conv5=nn.Conv2d(4 * w, 4 * w, 3, padding=1),
                bn5=nn.BatchNorm2d(4 * w),
                relu5=nn.ReLU(),
            )
        )
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.features(x)  # (N, 64, 16, 16)
        pooled = self.gap(maps).flatten(1)  # (N, 64)
        return self.fc(pooled)  # (N, n_classes) logits


class CourseTransform:
    """Centre-crop to a square, resize to 64x64 if needed, scale to [0, 1], normalise."""

    def __init__(self, size: int = INPUT_SIZE):
        self.size = size
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _, h, w = img.shape  # (channels, height, width)
        if (h, w) != (self.size, self.size):
            s = min(h, w)
            top, left = (h - s) // 2, (w - s) // 2  # rows cut above, columns cut on the left
            img = img[:, top : top + s, left : left + s]
            img = resize(img, [self.size, self.size], antialias=True)
        return (img.float() / 255.0 - self.mean) / self.std
