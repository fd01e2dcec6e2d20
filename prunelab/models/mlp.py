"""Multi-layer perceptrons; [300, 100] hidden units is LeNet-300-100."""
from __future__ import annotations

from dataclasses import dataclass, field

from collections import OrderedDict
from typing import Any, Sequence

from torch import nn

from ..errors import ConfigError
from .base import MODELS, ModelOptions, input_shape, num_classes, option


class MLP(nn.Sequential):
    """Multi-layer perceptron: flatten, then ``fc1 .. fcK`` (Linear + ReLU) for the hidden sizes, then the
    linear classifier ``head``. With hidden sizes [300, 100] on MNIST this is LeNet-300-100 (LeCun et al.
    1998), the fully connected baseline of the pruning literature (Han et al. 2015)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden_sizes: Sequence[int] = (256, 128)) -> None:
        layers: "OrderedDict[str, nn.Module]" = OrderedDict(flatten=nn.Flatten())
        width = 1
        for s in input_shape:
            width *= int(s)
        for i, h in enumerate(hidden_sizes, start=1):
            layers[f"fc{i}"] = nn.Linear(width, int(h))
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            width = int(h)
        layers["head"] = nn.Linear(width, num_classes)
        super().__init__(layers)


@dataclass
class MLPOptions(ModelOptions):
    """``model=mlp``: the hidden layers' widths."""

    hidden_sizes: list[int] = field(default_factory=lambda: [256, 128])


@MODELS.register("mlp", paper="LeCun et al. 1998; Han et al. 2015 (LeNet-300-100)", options=MLPOptions)
def build_mlp(cfg: Any) -> nn.Module:
    """Multi-layer perceptron, hidden_sizes [256, 128] by default ([300, 100]: LeNet-300-100, ``model=lenet300``).
    ``mlp``: keys ``hidden_sizes`` (list of positive ints, may be empty); head ``head``."""
    sizes = option(cfg, "hidden_sizes", [256, 128])
    try:
        sizes = [int(s) for s in sizes]
    except (TypeError, ValueError):
        raise ConfigError("model.hidden_sizes", sizes, "a list of positive integers") from None
    if any(s < 1 for s in sizes):
        raise ConfigError("model.hidden_sizes", sizes, "a list of positive integers")
    return MLP(input_shape(cfg), num_classes(cfg), sizes)
