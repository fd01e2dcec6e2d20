"""LeNet-5 (LeCun et al. 1998), adapted to the input size."""
from __future__ import annotations

from dataclasses import dataclass

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import MODELS, ModelOptions, input_shape, num_classes, option


def _out(size: int, kernel: int, padding: int) -> int:
    return size + 2 * padding - kernel + 1


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998, "Gradient-based learning applied to document recognition"), in its common
    modern form: ``conv1`` 6@5x5 -> pool 2 -> ``conv2`` 16@5x5 -> pool 2 -> ``fc1`` 120 -> ``fc2`` 84 ->
    ``fc3`` (head). ReLU and max pooling by default (the paper: tanh-like squashing and average subsampling,
    selectable with ``activation=tanh``, ``pool=avg``).

    Adaptation to the input size (each spatial dimension separately):
    - ``conv1`` is padded by 2 ("same") when the input is smaller than the paper's 32: a 28x28 MNIST image
      then follows the paper's 32x32 geometry (28 -> 14 -> 10 -> 5), 3x32x32 CIFAR is unpadded;
    - ``conv2`` is padded by 2 when its input is smaller than 5 (e.g. 8x8 digits: 8 -> 4 -> 4 -> 2);
    - ``fc1`` takes whatever ``16 x h x w`` remains (400 for 28x28 and 32x32, 64 for 8x8).
    Inputs need at least 4x4 pixels.
    """

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, activation: str = "relu", pool: str = "max"
    ) -> None:
        super().__init__()
        c, h, w = (int(s) for s in input_shape)
        pad1 = tuple(2 if s < 32 else 0 for s in (h, w))
        h1, w1 = _out(h, 5, pad1[0]) // 2, _out(w, 5, pad1[1]) // 2
        pad2 = tuple(2 if s < 5 else 0 for s in (h1, w1))
        h2, w2 = _out(h1, 5, pad2[0]) // 2, _out(w1, 5, pad2[1]) // 2
        if min(h1, w1, h2, w2) < 1:
            raise ConfigError("model.input_shape", list(input_shape), "LeNet-5 needs at least 4x4 pixels")
        self.conv1 = nn.Conv2d(c, 6, 5, padding=pad1)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=pad2)
        self.fc1 = nn.Linear(16 * h2 * w2, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.act: Callable[[Tensor], Tensor] = torch.relu if activation == "relu" else torch.tanh
        self.pool: Callable[[Tensor, int], Tensor] = F.max_pool2d if pool == "max" else F.avg_pool2d

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.act(self.conv1(x)), 2)
        x = self.pool(self.act(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)


@dataclass
class LeNet5Options(ModelOptions):
    """``model=lenet5``: the activation (relu | tanh) and the pooling (max | avg)."""

    activation: str = "relu"
    pool: str = "max"


@MODELS.register("lenet5", paper="LeCun et al. 1998, Gradient-based learning applied to document recognition",
                 options=LeNet5Options)
def build_lenet5(cfg: Any) -> nn.Module:
    """LeNet-5 conv net (2 conv + 3 fc layers). ``lenet5``: keys ``activation`` (relu|tanh, default relu), ``pool`` (max|avg, default max); head ``fc3``."""
    activation = option(cfg, "activation", "relu")
    if activation not in ("relu", "tanh"):
        raise ConfigError("model.activation", activation, "relu or tanh")
    pool = option(cfg, "pool", "max")
    if pool not in ("max", "avg"):
        raise ConfigError("model.pool", pool, "max or avg")
    return LeNet5(input_shape(cfg), num_classes(cfg), activation, pool)
