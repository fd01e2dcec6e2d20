"""The CIFAR ResNets of He et al. 2016 (ResNet-20 and its family, depth 6n + 2)."""
from __future__ import annotations

from dataclasses import dataclass

from typing import Any, Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import MODELS, ModelOptions, input_shape, num_classes, option


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers with an identity shortcut (He et al. 2016). Where the block halves the
    resolution and doubles the width, the shortcut is option A (stride-2 subsampling and zero-padded extra
    channels: no parameters, the paper's choice for CIFAR) or option B (1x1 conv + BatchNorm)."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.extra = planes - in_planes
        self.shortcut: Optional[nn.Module] = None
        if (stride != 1 or in_planes != planes) and shortcut == "B":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def _identity(self, x: Tensor) -> Tensor:
        if self.shortcut is not None:
            return self.shortcut(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra > 0:
            x = F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return x

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._identity(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. 2016 ("Deep residual learning for image recognition", Sec. 4.2):
    ``conv1`` 3x3@16 + BN, three stages ``layer1..3`` of n basic blocks with 16/32/64 channels (stride 2 at
    the start of stages 2 and 3), global average pooling and the linear head ``fc``; depth = 6n + 2
    (20, 32, 44, 56, 110 in the paper). ResNet-20 with option A has 19 convs + 1 fc and 0.27M parameters.
    Any input of at least 8x8 works (global pooling); the first conv takes the input's channel count."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 20, shortcut: str = "A") -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(int(input_shape[0]), 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes = 16
        stages = []
        for i, width in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(planes, width, stride, shortcut))
                planes = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


@dataclass
class ResNetOptions(ModelOptions):
    """``model=resnet20``: the depth (6n + 2) and the shortcut (A: zero-padding identity, B: 1x1 conv + BN)."""

    depth: int = 20
    shortcut: str = "A"


@MODELS.register("resnet20", paper="He et al. 2016, Deep residual learning for image recognition",
                 options=ResNetOptions)
def build_resnet20(cfg: Any) -> nn.Module:
    """CIFAR ResNet of depth 6n+2 (ResNet-20 by default). ``resnet20``: keys ``depth`` (6n+2, default 20), ``shortcut`` (A|B, default A); head ``fc``."""
    depth = option(cfg, "depth", 20)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise ConfigError("model.depth", depth, "6n+2 with n >= 1: 8, 14, 20, 32, 44, 56, 110, ...")
    shortcut = str(option(cfg, "shortcut", "A")).upper()
    if shortcut not in ("A", "B"):
        raise ConfigError("model.shortcut", option(cfg, "shortcut"), "A (zero-padding identity) or B (1x1 conv)")
    shape = input_shape(cfg)
    if min(shape[1:]) < 8:
        raise ConfigError("model.input_shape", list(shape), "a CIFAR ResNet needs at least 8x8 pixels")
    return CifarResNet(shape, num_classes(cfg), depth, shortcut)
